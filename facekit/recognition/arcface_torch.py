"""Import an insightface/arcface_torch backbone (`backbone.pth`) as a facekit recognizer directory."""

from __future__ import annotations

import os
from pathlib import Path

from facekit.errors import DataFormatError


def import_arcface_torch(path: str | os.PathLike, out_dir: str | os.PathLike, backbone: str = "iresnet50") -> Path:
    """Make a facekit recognizer directory (model.pt, config.yaml, recognizer.onnx) from an arcface_torch
    backbone.pth (or its training checkpoint) of the registered `backbone`; returns the model.pt path. The
    embedding size is that of the file's last BatchNorm (arcface_torch's `features`); keys that do not fit the
    backbone are one line naming the file."""
    import torch

    from facekit.modeldir import read_torch_file
    from facekit.recognition.backbones import create_backbone, load_backbone_weights
    from facekit.recognition.config import RecognizerConfig
    from facekit.recognition.modelfile import save_recognizer

    file = Path(path)
    obj = read_torch_file(file)
    state = obj.get("state_dict_backbone", obj) if isinstance(obj, dict) else obj
    sizes = [
        v.shape[0] for k, v in (state.items() if isinstance(state, dict) else [])
        if str(k).endswith("running_mean") and isinstance(v, torch.Tensor)
    ]  # fmt: skip
    if not sizes:
        raise DataFormatError(f"{file}: expected an arcface_torch backbone state dict (BatchNorm layers), found none")
    config = RecognizerConfig(backbone=backbone, embedding_size=int(sizes[-1]))
    model = create_backbone(backbone, embedding_size=config.embedding_size)
    load_backbone_weights(model, file)
    meta = {"imported_from": str(file), "source_format": "arcface_torch"}
    return save_recognizer(out_dir, model, config, meta, onnx=True)
