"""Face detection at inference time: a facekit RetinaFace run by PyTorch, returning faces in image pixels, and the
loader that picks a detector for a model file. Face and DetectSettings live in facekit.detection.faces. torch is
imported only for PyTorch models: an .onnx detector loads and runs without it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facekit.detection.faces import DetectSettings, Face
from facekit.runtime.detector_base import TorchDetectorBase

if TYPE_CHECKING:
    import torch

    from facekit.detection.config import DetectorConfig


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

    def detect(self, image: np.ndarray, settings: DetectSettings = DetectSettings()) -> list[Face]:
        """Faces in a BGR uint8 [H, W, 3] image, strongest first."""
        from facekit.detection.net import detect_retinaface

        return detect_retinaface(self.model, self.config, image, settings, self.device)


def load_face_detector(path: str | os.PathLike, device: str = "cpu", backend: str = "auto", session_options=None):
    """A detector from a facekit model directory / model.pt (PyTorch: RetinaFace, or MTCNN where its config says
    `architecture: mtcnn`) or a SCRFD-layout .onnx (ONNX Runtime).

    backend "onnx" on a model directory runs its detector.onnx; "auto" prefers PyTorch for directories.
    `session_options`: an onnxruntime.SessionOptions for ONNX models (None: ONNX Runtime's defaults).
    """
    from facekit.modeldir import ONNX_FILES, load_model
    from facekit.runtime.onnx_detector import OnnxDetector

    p = Path(path)
    if p.suffix == ".onnx":
        return OnnxDetector(p, device, session_options)
    if backend == "onnx":
        onnx_file = ONNX_FILES["detector"]
        return OnnxDetector(p / onnx_file if p.is_dir() else p.with_name(onnx_file), device, session_options)
    payload = load_model(p, "detector")
    if payload["config"].get("architecture") == "mtcnn":
        from facekit.runtime.mtcnn import MtcnnDetector

        return MtcnnDetector.load(p, device, payload)
    return TorchDetector.load(p, device, payload)
