"""Augmentation of aligned training crops, by hand with OpenCV and numpy: every random draw comes from the generator
it is given (the trainer seeds one per (seed, epoch, sample)), so a crop's changes are the same in any DataLoader
worker and after any restart. (torchvision's wheels do not import beside the pinned CPU torch, and albumentations
draws from global generators.)

The changes, in the order they run, each off at 0:
  flip    mirror image, with probability `flip`
  crop    random scale and shift: zoom by up to +-`crop`, move by up to +-`crop` of the side (reflected border)
  rotate  random rotation by up to +-`rotate` degrees, in the same warp (crops aligned by a weak detector's landmarks
          are turned and shifted: train with what the aligner gets wrong)
  color   brightness, contrast and saturation each scaled by a factor in [1 - color, 1 + color]
  grey    greyscale, with probability `grey`
  blur    Gaussian blur (sigma 0.5-1.5 px), with probability `blur`
  lowres  down to 1/4-3/4 of the side and back up (a low-resolution face), with probability `lowres`
  erase   a rectangle of 2-20 % of the crop filled with noise (random erasing), with probability `erase`
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np


@dataclass(frozen=True)
class Augment:
    """Strengths of the changes above; the defaults suit real photos (mild geometry, in-the-wild colour and focus).
    The trainer's `--aug-*` options read their defaults from here."""

    flip: float = 0.5
    crop: float = 0.08
    color: float = 0.3
    grey: float = 0.1
    blur: float = 0.1
    lowres: float = 0.15
    erase: float = 0.2
    rotate: float = 0.0  # degrees

    def __post_init__(self) -> None:
        for f in fields(self):
            value, top = getattr(self, f.name), 180.0 if f.name == "rotate" else 1.0
            if not 0.0 <= value <= top:
                raise ValueError(f"augmentation {f.name} must lie in [0, {top:g}], got {value}")

    @property
    def active(self) -> bool:
        return any(asdict(self).values())

    def describe(self) -> str:
        """`flip 0.5, crop 0.08, ...` (the changes that are on) or `none`."""
        on = [f"{k} {v:g}" for k, v in asdict(self).items() if v]
        return ", ".join(on) or "none"


def augment(image: np.ndarray, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """uint8 BGR [H, W, 3] -> uint8 BGR [H, W, 3] with `aug`'s random changes, every draw from `rng`."""
    h, w = image.shape[:2]
    if rng.random() < aug.flip:
        image = image[:, ::-1]
    if aug.crop or aug.rotate:
        scale = 1 + rng.uniform(-aug.crop, aug.crop)
        dx, dy = rng.uniform(-aug.crop, aug.crop, 2) * (w, h)
        angle = rng.uniform(-aug.rotate, aug.rotate) if aug.rotate else 0.0  # no draw when off: old keys stay
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        matrix[:, 2] += (dx, dy)
        image = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if aug.color:
        brightness, contrast, saturation = 1 + rng.uniform(-aug.color, aug.color, 3)
        x = image.astype(np.float32) * brightness
        x = (x - x.mean()) * contrast + x.mean()
        grey = cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY).astype(np.float32)
        x = (x - grey[..., None]) * saturation + grey[..., None]
        image = np.clip(x + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < aug.grey:
        image = cv2.cvtColor(cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    if rng.random() < aug.blur:
        image = cv2.GaussianBlur(np.ascontiguousarray(image), (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < aug.lowres:
        factor = rng.uniform(0.25, 0.75)
        small = cv2.resize(
            np.ascontiguousarray(image), (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA
        )
        image = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < aug.erase:
        area = rng.uniform(0.02, 0.2) * h * w
        aspect = np.exp(rng.uniform(np.log(0.3), np.log(3.3)))
        eh, ew = min(h, round(np.sqrt(area * aspect))), min(w, round(np.sqrt(area / aspect)))
        y, x0 = rng.integers(0, h - eh + 1), rng.integers(0, w - ew + 1)
        image = np.array(image)
        image[y : y + eh, x0 : x0 + ew] = rng.integers(0, 256, (eh, ew, 3), dtype=np.uint8)
    return np.ascontiguousarray(image)
