"""Face detection at inference time: a facekit RetinaFace run by PyTorch, returning faces in image pixels."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch

from facekit.detection.box_utils import decode, decode_landmarks, nms, prior_boxes
from facekit.detection.config import DetectorConfig
from facekit.fileio import sha256_file


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
    boxes: torch.Tensor, scores: torch.Tensor, landmarks: torch.Tensor | None, settings: DetectSettings, scale: float
) -> list[Face]:
    """Pixel-space candidates (boxes [N, 4], scores [N], landmarks [N, 5, 2]) -> faces after threshold, top-k, NMS."""
    keep = scores > settings.threshold
    boxes, scores = boxes[keep], scores[keep]
    landmarks = landmarks[keep] if landmarks is not None else None
    order = scores.argsort(descending=True)[: settings.top_k]
    boxes, scores = boxes[order], scores[order]
    landmarks = landmarks[order] if landmarks is not None else None
    kept = nms(boxes, scores, settings.nms)[: settings.max_faces]
    return [
        Face(
            (boxes[i] / scale).numpy(),
            float(scores[i]),
            None if landmarks is None else (landmarks[i] / scale).numpy(),
        )
        for i in kept
    ]


class TorchDetectorBase:
    """What facekit's PyTorch detectors share: the model on its device, its config, the weights file it was read from
    and that file's fingerprint. A subclass says how its model is read from model.pt (`read`) and how it detects."""

    name: str

    def __init__(self, model: torch.nn.Module, config: Any, device: str = "cpu", path: Path | None = None) -> None:
        self.model = model.to(device).eval()
        self.config = config
        self.device = device
        self.path = path  # the weights file, when loaded from one

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu", payload: dict | None = None) -> Self:
        """From a facekit model directory or its model.pt (`payload`: that file, already read)."""
        from facekit.modeldir import MODEL_FILE

        file = Path(path) / MODEL_FILE if Path(path).is_dir() else Path(path)
        model, config = cls.read(path, file, payload)
        return cls(model, config, device, file)

    @staticmethod
    def read(path: str | os.PathLike, file: Path, payload: dict | None) -> tuple[torch.nn.Module, Any]:
        """The model and config of the directory or model.pt `path` (`file`: its model.pt; `payload`: that file,
        already read, or None)."""
        raise NotImplementedError

    @cached_property
    def fingerprint(self) -> str:
        """sha256 (hex) of the weights file ("" for a model built in memory)."""
        return sha256_file(self.path) if self.path else ""


class TorchDetector(TorchDetectorBase):
    """A facekit RetinaFace (PyTorch) detector."""

    config: DetectorConfig

    @property
    def name(self) -> str:
        return f"facekit RetinaFace {self.config.body} (PyTorch)"

    @staticmethod
    def read(path: str | os.PathLike, file: Path, payload: dict | None) -> tuple[torch.nn.Module, DetectorConfig]:
        from facekit.detection.weights import load_detector

        return load_detector(path, payload)

    @torch.inference_mode()
    def detect(self, image: np.ndarray, settings: DetectSettings = DetectSettings()) -> list[Face]:
        """Faces in a BGR uint8 [H, W, 3] image, strongest first."""
        resized, scale = resize_for_detection(image, settings.max_size)
        h, w = resized.shape[:2]
        x = torch.from_numpy(self.config.norm(resized))[None].to(self.device)
        loc, logits, landm = self.model(x)
        scores = logits[0].softmax(-1)[:, 1]
        keep = scores > settings.threshold  # decode only the candidates
        priors = prior_boxes((h, w), self.config.min_sizes, self.config.steps).to(self.device)[keep]
        size = torch.tensor([w, h], dtype=torch.float32, device=self.device)
        boxes = decode(loc[0, keep], priors, self.config.variances) * size.repeat(2)
        points = decode_landmarks(landm[0, keep], priors, self.config.variances) * size
        scores = scores[keep]
        return postprocess(boxes.cpu(), scores.cpu(), points.cpu(), settings, scale)


def load_face_detector(path: str | os.PathLike, device: str = "cpu", backend: str = "auto"):  # noqa: ANN201
    """A detector from a facekit model directory / model.pt (PyTorch: RetinaFace, or MTCNN where its config says
    `architecture: mtcnn`) or a SCRFD-layout .onnx (ONNX Runtime).

    backend "onnx" on a model directory runs its detector.onnx; "auto" prefers PyTorch for directories.
    """
    from facekit.modeldir import load_model
    from facekit.runtime.onnx_detector import OnnxDetector

    p = Path(path)
    if p.suffix == ".onnx":
        return OnnxDetector(p, device)
    if backend == "onnx":
        return OnnxDetector(p / "detector.onnx" if p.is_dir() else p.with_name("detector.onnx"), device)
    payload = load_model(p, "detector")
    if payload["config"].get("architecture") == "mtcnn":
        from facekit.runtime.mtcnn import MtcnnDetector

        return MtcnnDetector.load(p, device, payload)
    return TorchDetector.load(p, device, payload)
