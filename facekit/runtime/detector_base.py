"""The base of facekit's PyTorch detectors (RetinaFace in facekit.runtime.detector, MTCNN in facekit.runtime.mtcnn):
loading from a model directory and the weights file's fingerprint. torch is imported by the models, not here: the
ONNX serving path imports this module without it."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from facekit.fileio import sha256_file

if TYPE_CHECKING:
    import torch


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
