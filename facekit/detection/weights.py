"""Building detectors and loading their weights: facekit model directories, Pytorch_Retinaface checkpoints and
the ImageNet MobileNet-0.25 backbone that RetinaFace training starts from."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from facekit.detection.config import DetectorConfig
from facekit.detection.model import RetinaFace
from facekit.errors import DataFormatError
from facekit.modeldir import apply_state_dict, is_facekit_model, load_model, read_torch_file, save_model

DETECTOR_MISMATCH = "do not fit this detector"
_BODY_TELLS = {"body.stage1.0.0.weight": "mobilenet0.25", "body.conv1.weight": "resnet50"}


def build_detector(config: DetectorConfig) -> RetinaFace:
    return RetinaFace(config.body, anchors=config.anchors)


def load_detector(path: str | os.PathLike, payload: dict | None = None) -> tuple[RetinaFace, DetectorConfig]:
    """A facekit RetinaFace model directory (or its model.pt; `payload`: that file, already read) -> model in eval
    mode and its config."""
    payload = load_model(path, "detector", payload)
    architecture = payload["config"].get("architecture", "retinaface")
    if architecture != "retinaface":
        raise DataFormatError(f"{path}: a facekit {architecture} detector, not a RetinaFace")
    config = DetectorConfig.from_dict(payload["config"])
    model = build_detector(config)
    apply_state_dict(model, payload["state_dict"], Path(path), DETECTOR_MISMATCH)
    return model.eval(), config


def _state_dict(obj: object, file: Path) -> dict[str, torch.Tensor]:
    """The tensors of a plain or `{'state_dict': ...}` checkpoint, `module.` prefixes stripped."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DataFormatError(f"{file}: expected a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def read_pytorch_retinaface(file: str | os.PathLike, body: str | None = None) -> tuple[dict, DetectorConfig]:
    """State dict and config of a biubug6/Pytorch_Retinaface checkpoint (`module.` prefix stripped).

    Such files do not say their body; the parameter names do (`body.stage1` MobileNet, `body.conv1` ResNet-50).
    """
    file = Path(file)
    state = _state_dict(read_torch_file(file), file)
    if body is None:
        found = [b for key, b in _BODY_TELLS.items() if key in state]
        if len(found) != 1:
            raise DataFormatError(f"{file}: not a Pytorch_Retinaface checkpoint (no body.stage1 / body.conv1 weights)")
        body = found[0]
    state = {k: v for k, v in state.items() if not k.startswith("body.fc.")}
    return state, DetectorConfig.for_body(body)


def import_pytorch_retinaface(file: str | os.PathLike, out_dir: str | os.PathLike, body: str | None = None) -> Path:
    """Make a facekit detector model directory from a Pytorch_Retinaface checkpoint."""
    state, config = read_pytorch_retinaface(file, body)
    model = build_detector(config)
    apply_state_dict(model, state, Path(file), DETECTOR_MISMATCH)
    return save_model(
        out_dir,
        kind="detector",
        config=config.as_dict(),
        state_dict=model.state_dict(),
        meta={"imported_from": str(file), "source_format": "pytorch_retinaface"},
    )


def load_pretrained(model: RetinaFace, path: str | os.PathLike) -> str:
    """Initialise `model` from a facekit detector, a Pytorch_Retinaface checkpoint, or an ImageNet backbone file
    (keys `stage1...` / `conv1...`, optionally `module.`-prefixed). Returns what was loaded, for the log."""
    p = Path(path)
    obj = read_torch_file(p)
    if is_facekit_model(obj):
        apply_state_dict(model, load_model(p, "detector", obj)["state_dict"], p, DETECTOR_MISMATCH)
        return "facekit detector"
    state = _state_dict(obj, p)
    if any(k.startswith("body.") for k in state):
        state = {k: v for k, v in state.items() if not k.startswith("body.fc.")}
        apply_state_dict(model, state, p, DETECTOR_MISMATCH)
        return "Pytorch_Retinaface detector"
    body_state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    apply_state_dict(model.body, body_state, p, "fit neither the detector nor its backbone")
    return "ImageNet backbone"
