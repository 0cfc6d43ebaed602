"""ONNX Runtime sessions as facekit's ONNX detectors and recognizers open and run them: the provider choice and
what ONNX Runtime raises, as one-line DataFormatErrors naming the file."""

from __future__ import annotations

import logging
import os

import numpy as np

from facekit.errors import DataFormatError

log = logging.getLogger(__name__)


def create_session(path: str | os.PathLike, device: str = "cpu", options=None):  # onnxruntime.InferenceSession
    """An ONNX Runtime session on the CUDA provider when asked for and present, else the CPU (with a warning).
    `options`: an onnxruntime.SessionOptions (threads, spinning, ...), None for ONNX Runtime's defaults."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        else:
            log.warning("onnxruntime has no CUDA provider here: running %s on the CPU", path)
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise DataFormatError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0][:200]})") from None


def run_session(session, feeds: dict[str, np.ndarray], path: str | os.PathLike) -> list[np.ndarray]:
    """session.run(None, feeds), with what ONNX Runtime raises on a model that cannot run as one line."""
    try:
        return session.run(None, feeds)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise DataFormatError(f"{path}: ONNX Runtime cannot run it ({str(exc).splitlines()[0][:200]})") from None


def dims(shape: list) -> str:
    """An ONNX shape as the messages show it: [batch, 3, 112, 112] (symbolic dims by name, unnamed ones as ?)."""
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
