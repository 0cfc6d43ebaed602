"""A detection layout made by pasting ORL faces (../shared/data/faces/orl) onto varied backgrounds.

Boxes and 5 landmarks of each ORL photo come from the published SCRFD-500M model (run once on the photo);
pasting is a known scale and offset, so the labels of every scene follow exactly. Not collected by pytest.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from facekit.data.labels import ImageLabels, write_labels
from facekit.runtime.detector import DetectSettings
from facekit.runtime.onnx_detector import OnnxDetector


def label_orl(shared_data: Path, people: range) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(BGR photo, box [4], landmarks [5, 2]) for the first photos of `people` with exactly one SCRFD face."""
    detector = OnnxDetector(shared_data / "weights/scrfd_500m_kps/scrfd_500m_bnkps.onnx")
    out = []
    for person in people:
        for k in (1, 2, 3, 4):
            photo = cv2.imread(str(shared_data / f"faces/orl/s{person}/{k}.pgm"))
            big = cv2.resize(photo, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
            faces = [f for f in detector.detect(big, DetectSettings(threshold=0.5)) if f.landmarks is not None]
            if len(faces) == 1:
                out.append((photo, faces[0].box / 3, faces[0].landmarks / 3))
    return out


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Gradient, shapes and noise: no faces."""
    base = np.linspace(rng.uniform(0, 255, 3), rng.uniform(0, 255, 3), size, dtype=np.float32)
    image = np.ascontiguousarray(np.broadcast_to(base[:, None, :], (size, size, 3))).astype(np.uint8)
    for _ in range(int(rng.integers(3, 9))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = (int(v) for v in rng.integers(0, size, 2))
        if rng.random() < 0.5:
            cv2.circle(image, (x, y), int(rng.integers(8, size // 4)), colour, -1)
        else:
            cv2.rectangle(
                image, (x, y), (x + int(rng.integers(10, size // 3)), y + int(rng.integers(10, size // 3))), colour, -1
            )
    noise = rng.normal(0, 8, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def make_scene(rng: np.random.Generator, faces: list, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A size x size scene with 1-3 non-overlapping pasted faces: (image, boxes [F, 4], landmarks [F, 5, 2])."""
    image = background(rng, size)
    boxes, points, taken = [], [], []
    for _ in range(int(rng.integers(1, 4))):
        photo, box, marks = faces[int(rng.integers(len(faces)))]
        scale = rng.uniform(0.5, 2.2)
        h, w = round(photo.shape[0] * scale), round(photo.shape[1] * scale)
        if h >= size or w >= size:
            continue
        x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
        if any(x < bx + bw and bx < x + w and y < by + bh and by < y + h for bx, by, bw, bh in taken):
            continue
        taken.append((x, y, w, h))
        tint = rng.uniform(0.7, 1.3, 3)
        image[y : y + h, x : x + w] = np.clip(cv2.resize(photo, (w, h)) * tint, 0, 255).astype(np.uint8)
        offset = np.array([x, y], np.float32)
        boxes.append(np.concatenate([box[:2] * scale + offset, box[2:] * scale + offset]))
        points.append(marks * scale + offset)
    return image, np.array(boxes, np.float32).reshape(-1, 4), np.array(points, np.float32).reshape(-1, 5, 2)


def write_layout(root: Path, faces: list, counts: dict[str, int], size: int, seed: int) -> Path:
    """detection_train_data/{split}/images/orl/NNN.jpg + label.txt for each split in `counts`."""
    rng = np.random.default_rng(seed)
    for split, count in counts.items():
        labels = []
        for i in range(count):
            image, boxes, points = make_scene(rng, faces, size)
            name = f"orl/{i:03d}.jpg"
            (root / split / "images/orl").mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / split / "images" / name), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
            labels.append(ImageLabels(name, boxes, points, np.ones(len(boxes), bool), np.ones(len(boxes), np.float32)))
        write_labels(root / split / "label.txt", labels)
    return root
