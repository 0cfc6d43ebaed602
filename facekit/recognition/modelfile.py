"""A recognizer's model directory as training writes it (model.pt + config.yaml), below the runtime that loads it."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from facekit.recognition.config import RecognizerConfig


def save_recognizer(
    out_dir: str | os.PathLike, backbone: torch.nn.Module, config: RecognizerConfig, meta: dict | None = None
) -> Path:
    """Write a recognizer model directory (model.pt + config.yaml); returns the model.pt path."""
    from facekit.modeldir import save_model

    return save_model(out_dir, kind="recognizer", config=config.as_dict(), state_dict=backbone.state_dict(), meta=meta)
