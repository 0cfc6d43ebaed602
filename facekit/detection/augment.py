"""Training augmentation for RetinaFace (after Pytorch_Retinaface's data_augment.py): a random square crop that
keeps whole faces, photometric distortion, a mirror that swaps left/right landmarks, resize to the training size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from facekit.data.datasets import DetectionSample
from facekit.norms import Normalization

CROP_SCALES = (0.3, 0.45, 0.6, 0.8, 1.0)
# mirrored image: left eye <-> right eye, left mouth corner <-> right mouth corner
MIRROR_ORDER = [1, 0, 2, 4, 3]


@dataclass
class Target:
    """Training target in normalised [0, 1] coordinates of the network input.

    boxes: float32 [F, 4] corners; landmarks: float32 [F, 5, 2]; landmark_mask: bool [F].
    """

    boxes: torch.Tensor
    landmarks: torch.Tensor
    landmark_mask: torch.Tensor


def random_crop(
    image: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray, mask: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """A square crop (side = scale x short side) containing at least one whole face; faces whose centre falls
    outside are dropped. Returns (image, boxes, landmarks, mask, cropped); uncropped after 250 failed tries."""
    height, width = image.shape[:2]
    for _ in range(250 if len(boxes) else 0):
        side = int(rng.choice(CROP_SCALES) * min(width, height))
        left = int(rng.integers(width - side)) if width > side else 0
        top = int(rng.integers(height - side)) if height > side else 0
        roi = np.array([left, top, left + side, top + side], np.float32)
        inside = (boxes[:, :2] >= roi[:2]).all(1) & (boxes[:, 2:] <= roi[2:]).all(1)
        if not inside.any():
            continue
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        keep = ((centres > roi[:2]) & (centres < roi[2:])).all(1)
        b = boxes[keep].copy()
        b[:, :2] = np.maximum(b[:, :2], roi[:2]) - roi[:2]
        b[:, 2:] = np.minimum(b[:, 2:], roi[2:]) - roi[:2]
        points = np.clip(landmarks[keep] - roi[:2], 0, side)
        return image[top : top + side, left : left + side], b, points, mask[keep], True
    return image, boxes, landmarks, mask, False


def distort(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast, saturation and hue changes (each with probability 1/2)."""
    import cv2

    out = image.astype(np.float32)
    if rng.random() < 0.5:
        out += rng.uniform(-32, 32)
    contrast_first = rng.random() < 0.5
    if contrast_first and rng.random() < 0.5:
        out *= rng.uniform(0.5, 1.5)
    out = np.clip(out, 0, 255).astype(np.uint8)
    hsv = cv2.cvtColor(out, cv2.COLOR_BGR2HSV).astype(np.int32)
    if rng.random() < 0.5:
        hsv[:, :, 1] = np.clip(hsv[:, :, 1] * rng.uniform(0.5, 1.5), 0, 255)
    if rng.random() < 0.5:
        hsv[:, :, 0] = (hsv[:, :, 0] + int(rng.integers(-18, 19))) % 180
    out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)
    if not contrast_first and rng.random() < 0.5:
        out = np.clip(out.astype(np.float32) * rng.uniform(0.5, 1.5), 0, 255).astype(np.uint8)
    return out


def mirror(image: np.ndarray, boxes: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flip left-right; boxes [F, 4] and landmarks [F, 5, 2] follow, and the left/right points swap names."""
    width = image.shape[1]
    boxes = boxes.copy()
    boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
    points = landmarks[:, MIRROR_ORDER].copy()
    points[:, :, 0] = width - points[:, :, 0]
    return image[:, ::-1], boxes, points


def pad_to_square(image: np.ndarray, fill: tuple[float, float, float]) -> np.ndarray:
    """Pad bottom/right to a square with the `fill` colour (the normalisation mean: zero after normalising)."""
    height, width = image.shape[:2]
    side = max(height, width)
    out = np.empty((side, side, 3), np.uint8)
    out[:] = np.asarray(fill, np.float32).round().astype(np.uint8)
    out[:height, :width] = image
    return out


class TrainTransform:
    """DetectionSample -> (float32 [3, S, S] normalised image, Target). Randomness from a per-call generator."""

    def __init__(self, size: int, norm: Normalization, *, seed: int = 0) -> None:
        self.size = size
        self.norm = norm
        self.seed = seed

    def __call__(self, sample: DetectionSample, rng: np.random.Generator) -> tuple[torch.Tensor, Target]:
        import cv2

        image, boxes, points, mask = sample.image, sample.boxes, sample.landmarks, sample.landmark_mask
        image, boxes, points, mask, cropped = random_crop(image, boxes, points, mask, rng)
        image = distort(image, rng)
        if rng.random() < 0.5:
            image, boxes, points = mirror(image, boxes, points)
        if not cropped:
            bgr_mean = self.norm.mean[::-1] if self.norm.rgb else self.norm.mean
            image = pad_to_square(image, bgr_mean)
        side = image.shape[0]
        methods = [cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA, cv2.INTER_NEAREST, cv2.INTER_LANCZOS4]
        image = cv2.resize(image, (self.size, self.size), interpolation=methods[int(rng.integers(len(methods)))])
        scale = 1.0 / side
        target = Target(
            torch.from_numpy((boxes * scale).astype(np.float32)),
            torch.from_numpy((points * scale).astype(np.float32)),
            torch.from_numpy(mask.astype(bool)),
        )
        return torch.from_numpy(self.norm(image)), target
