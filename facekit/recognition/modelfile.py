"""A recognizer's model directory as training and the importers write it (model.pt + config.yaml, and
recognizer.onnx on request), below the runtime that loads it."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from facekit.recognition.config import RecognizerConfig


def save_recognizer(
    out_dir: str | os.PathLike,
    backbone: torch.nn.Module,
    config: RecognizerConfig,
    meta: dict | None = None,
    *,
    onnx: bool = False,
) -> Path:
    """Write a recognizer model directory (model.pt + config.yaml; with `onnx`, also recognizer.onnx carrying the
    model.pt's fingerprint; the export puts the backbone in eval mode); returns the model.pt path."""
    from facekit.modeldir import save_model

    model_file = save_model(
        out_dir, kind="recognizer", config=config.as_dict(), state_dict=backbone.state_dict(), meta=meta
    )
    if onnx:
        from facekit.fileio import sha256_file
        from facekit.recognition.export import ONNX_FILE, export_arcface_onnx

        export_arcface_onnx(backbone, config, Path(out_dir) / ONNX_FILE, fingerprint=sha256_file(model_file))
    return model_file
