"""What every detector returns and is tuned by: the detected `Face`, `DetectSettings` and the shared pre- and
post-processing (scale the photo down, threshold + top-k + NMS), in numpy: the ONNX serving path runs without torch.
Training validates with these and facekit.runtime serves with them, so they live here, below both. A RetinaFace
network run as a detector is in facekit.detection.net (PyTorch)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facekit.detection.overlap import nms


@dataclass
class Face:
    """box: (x1, y1, x2, y2) pixels; landmarks: [5, 2] pixels (left eye, right eye, nose, mouth left, mouth right)."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray | None

    def as_dict(self) -> dict:
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 5),
            "landmarks": None
            if self.landmarks is None
            else [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
        }


@dataclass(frozen=True)
class DetectSettings:
    """threshold: minimum face probability; nms: IoU above which the weaker box goes; max_size: longest image side
    the network sees (larger photos are scaled down, never up; None = original size); top_k: candidates kept for NMS."""

    threshold: float = 0.5
    nms: float = 0.4
    max_size: int | None = 1280
    top_k: int = 5000
    max_faces: int = 750


def resize_for_detection(image: np.ndarray, max_size: int | None) -> tuple[np.ndarray, float]:
    """Scale so that the longest side is at most max_size: (image, scale applied)."""
    import cv2

    h, w = image.shape[:2]
    scale = 1.0 if max_size is None or max(h, w) <= max_size else max_size / max(h, w)
    if scale == 1.0:
        return image, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # a 2 x 30000 strip keeps a row
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def postprocess(
    boxes: np.ndarray, scores: np.ndarray, landmarks: np.ndarray | None, settings: DetectSettings, scale: float
) -> list[Face]:
    """Pixel-space candidates (boxes [N, 4], scores [N], landmarks [N, 5, 2]) -> faces after threshold, top-k, NMS."""
    keep = scores > settings.threshold
    boxes, scores = boxes[keep], scores[keep]
    landmarks = landmarks[keep] if landmarks is not None else None
    order = np.argsort(-scores, kind="stable")[: settings.top_k]
    boxes, scores = boxes[order], scores[order]
    landmarks = landmarks[order] if landmarks is not None else None
    kept = nms(boxes, scores, settings.nms)[: settings.max_faces]
    return [Face(boxes[i] / scale, float(scores[i]), None if landmarks is None else landmarks[i] / scale) for i in kept]
