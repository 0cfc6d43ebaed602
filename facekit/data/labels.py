"""detection_train_data/: RetinaFace `label.txt` files (WIDER FACE with 5 landmarks) and SCRFD's labelv2 variant.

retinaface: `# <path>` opens an image (path relative to `<split>/images/`); each following line is one face:
  4 numbers `x y w h` (val), or 20: `x y w h lx0 ly0 f0 ... lx4 ly4 f4 score` (landmark flag 0 visible, 1
  occluded, `-1 -1 -1` = no landmark); test files hold only `# path` lines.
labelv2 (SCRFD): `# <path> <width> <height>` then `x1 y1 x2 y2` with optionally 15 landmark numbers after.
All boxes are converted to corners (x1, y1, x2, y2) in pixels. Parsing checks what needs no image (counts, finite
numbers, box sizes); face_problems checks each face against its image's size once that is read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from facekit.errors import DataFormatError, MissingDataError, where

LabelStyle = Literal["retinaface", "labelv2"]
LABEL_FILE = "label.txt"  # beside images/ in each split of detection_train_data
NUM_LANDMARKS = 5
LANDMARK_NAMES = ("left eye", "right eye", "nose tip", "left mouth corner", "right mouth corner")
FLOAT32_MAX = float(np.finfo(np.float32).max)
# How far a box or landmark may lie outside its image, as a fraction of the image's width (x) or height (y). Real
# labels poke out by a few pixels (WIDER FACE boxes at the border; SCRFD-500M's landmarks of a face cut by the border,
# by ~5% of the face's width); a tenth of the photo means labels of another image or another scale, or garbage.
OUTSIDE_TOLERANCE = 0.1


@dataclass
class ImageLabels:
    """One image and its faces.

    boxes: float32 [F, 4] corners (x1, y1, x2, y2); landmarks: float32 [F, 5, 2] (NaN-free, -1 where missing);
    landmark_mask: bool [F] (all five points known); scores: float32 [F] (quality/blur, 1.0 when absent).
    """

    path: str
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    landmarks: np.ndarray = field(default_factory=lambda: np.full((0, NUM_LANDMARKS, 2), -1, np.float32))
    landmark_mask: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    size: tuple[int, int] | None = None  # (width, height), labelv2 only
    line: int = 0
    face_lines: tuple[int, ...] = ()  # the label.txt line of each face, when read from one

    @property
    def num_faces(self) -> int:
        return len(self.boxes)


def _parse_face(
    numbers: list[float], style: LabelStyle, context: str, image: str
) -> tuple[list[float], list[float], bool, float]:
    """(box corners, 10 landmark coords, has landmarks, score) of one face line of `image`."""
    n = len(numbers)
    if style == "retinaface":
        if n not in (4, 20):
            raise DataFormatError(
                f"{context}: expected 4 or 20 numbers (x y w h [5 x (lx ly flag)] score) after '# {image}', got {n}"
            )
        x, y, w, h = numbers[:4]
        if w < 0 or h < 0:
            raise DataFormatError(f"{context}: negative box size w={w:g} h={h:g} in a face of '# {image}'")
        box = [x, y, x + w, y + h]
        points, score = (numbers[4:19], numbers[19]) if n == 20 else ([-1.0] * 15, 1.0)
    else:
        if n not in (4, 5, 19, 20):
            raise DataFormatError(
                f"{context}: expected 4, 5, 19 or 20 numbers (x1 y1 x2 y2 [5 x (lx ly flag)]) "
                f"after '# {image}', got {n}"
            )
        box = numbers[:4]
        if box[2] < box[0] or box[3] < box[1]:
            raise DataFormatError(
                f"{context}: box corners reversed ({box[0]:g},{box[1]:g}) ({box[2]:g},{box[3]:g}) in '# {image}'"
            )
        points, score = (numbers[4:19] if n >= 19 else [-1.0] * 15), 1.0
    coords = [v for i, v in enumerate(points) if i % 3 != 2]
    has = all(v >= 0 for v in coords)
    if not has:
        coords = [-1.0] * 10
    return box, coords, has, score


def _image_labels(
    path: str, size: tuple[int, int] | None, line: int, faces: list, face_lines: list[int]
) -> ImageLabels:
    count = len(faces)
    return ImageLabels(
        path=path,
        boxes=np.asarray([f[0] for f in faces], np.float32).reshape(count, 4),
        landmarks=np.asarray([f[1] for f in faces], np.float32).reshape(count, NUM_LANDMARKS, 2),
        landmark_mask=np.asarray([f[2] for f in faces], bool).reshape(count),
        scores=np.asarray([f[3] for f in faces], np.float32).reshape(count),
        size=size,
        line=line,
        face_lines=tuple(face_lines),
    )


def read_labels(path: str | os.PathLike) -> tuple[LabelStyle, list[ImageLabels]]:
    """Parse a label.txt; the style is decided by its first `#` line (`# path w h` = labelv2)."""
    style: LabelStyle | None = None
    images: list[ImageLabels] = []
    current: tuple[str, tuple[int, int] | None, int] | None = None
    faces: list = []
    face_lines: list[int] = []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise MissingDataError(f"{path}: no such label file") from None
    except UnicodeDecodeError:
        raise DataFormatError(f"{path}: not UTF-8 text") from None
    for line_no, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text:
            continue
        context = where(path, line_no)
        if text.startswith("#"):
            if current is not None:
                images.append(_image_labels(*current, faces, face_lines))
            fields = text[1:].split()
            if not fields:
                raise DataFormatError(f"{context}: '#' line without an image path")
            line_style: LabelStyle = (
                "labelv2" if len(fields) == 3 and all(v.isdigit() for v in fields[1:]) else "retinaface"
            )
            if style is None:
                style = line_style
            elif line_style != style:
                raise DataFormatError(f"{context}: {line_style} image line in a {style} label file")
            if style == "labelv2":
                current = (fields[0], (int(fields[1]), int(fields[2])), line_no)
            else:
                current = (text[1:].strip(), None, line_no)
            faces, face_lines = [], []
            continue
        if current is None:
            raise DataFormatError(f"{context}: face line before the first '# <image path>' line")
        try:
            numbers = [float(v) for v in text.split()]
        except ValueError:
            raise DataFormatError(f"{context}: expected numbers after '# {current[0]}', got {text[:60]!r}") from None
        if not all(np.isfinite(numbers)):
            raise DataFormatError(f"{context}: non-finite number in {text[:60]!r}")
        if max(map(abs, numbers)) > FLOAT32_MAX:
            raise DataFormatError(f"{context}: number beyond float32's range (3.4e38) in {text[:60]!r}")
        faces.append(_parse_face(numbers, style or "retinaface", context, current[0]))
        face_lines.append(line_no)
    if current is not None:
        images.append(_image_labels(*current, faces, face_lines))
    return style or "retinaface", images


def face_problems(label_path: str | os.PathLike, labels: ImageLabels, size: tuple[int, int]) -> list[str]:
    """One message per face of `labels` whose box or landmarks lie outside its image of `size` (width, height) by
    more than OUTSIDE_TOLERANCE of the image's width or height: the check eval-detect and inspect share."""
    width, height = size
    low = np.array([-OUTSIDE_TOLERANCE * width, -OUTSIDE_TOLERANCE * height])
    high = np.array([width, height]) - low
    image = f"the {width}x{height} image '{labels.path}'"
    outside_image = f"outside {image} by more than {OUTSIDE_TOLERANCE:.0%} of its width or height"
    problems = []
    for i, (box, points, has) in enumerate(zip(labels.boxes, labels.landmarks, labels.landmark_mask)):
        context = where(label_path, labels.face_lines[i] if labels.face_lines else labels.line)
        corners = box.reshape(2, 2)
        if not ((corners >= low) & (corners <= high)).all():
            numbers = ", ".join(f"{v:g}" for v in box)
            problems.append(f"{context}: face box (x1, y1, x2, y2) = ({numbers}) lies {outside_image}")
            continue
        outside = ~((points >= low) & (points <= high)).all(1) if has else np.zeros(NUM_LANDMARKS, bool)
        if outside.any():
            k = int(np.argmax(outside))
            x, y = points[k]
            problems.append(f"{context}: {LANDMARK_NAMES[k]} ({x:g}, {y:g}) lies {outside_image}")
    return problems


def resolve_images(label_path: str | os.PathLike, images: list[ImageLabels]) -> list[Path]:
    """Absolute image paths under `<split>/images/`; raises one error listing how many are missing."""
    root = Path(label_path).parent / "images"
    paths = [root / im.path for im in images]
    missing = [(im, p) for im, p in zip(images, paths) if not p.is_file()]
    if missing:
        first = ", ".join(f"{im.path} (line {im.line})" for im, _ in missing[:3])
        raise MissingDataError(f"{label_path}: {len(missing)} of {len(images)} images missing under {root}: {first}")
    return paths


def write_labels(path: str | os.PathLike, images: Iterable[ImageLabels], *, style: LabelStyle = "retinaface") -> None:
    """Write a label.txt atomically (20 numbers per face in retinaface style; missing landmarks as -1)."""
    from facekit.fileio import atomic_write

    with atomic_write(path) as f:
        for im in images:
            if style == "labelv2":
                if im.size is None:
                    raise ValueError(f"{im.path}: labelv2 needs the image size")
                f.write(f"# {im.path} {im.size[0]} {im.size[1]}\n")
            else:
                f.write(f"# {im.path}\n")
            for box, points, has, score in zip(im.boxes, im.landmarks, im.landmark_mask, im.scores):
                x1, y1, x2, y2 = (float(v) for v in box)
                head = [x1, y1, x2 - x1, y2 - y1] if style == "retinaface" else [x1, y1, x2, y2]
                marks = [v for p in points for v in (float(p[0]), float(p[1]), 0.0)] if has else [-1.0] * 15
                tail = [float(score)] if style == "retinaface" else []
                f.write(" ".join(f"{v:.3f}" for v in head + marks + tail) + "\n")
