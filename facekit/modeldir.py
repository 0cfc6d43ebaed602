"""Self-describing model directories: `model.pt` holds the weights and the config that builds them.

model.pt = {"format": "facekit-model", "kind": "detector" | "recognizer", "facekit_version": str,
            "config": dict, "state_dict": {name: tensor}, "meta": dict}
`config.yaml` beside it is the same config, for people. Both are written atomically; loading never unpickles
anything but tensors and plain containers (`torch.load(weights_only=True)`).
"""

from __future__ import annotations

import io
import os
import pickle
import re
from pathlib import Path

from facekit import __version__
from facekit.errors import DataFormatError, MissingDataError
from facekit.fileio import atomic_write

MODEL_FILE = "model.pt"
ONNX_FILES = {"detector": "detector.onnx", "recognizer": "recognizer.onnx"}  # a model directory's export, by kind


def save_model(
    out_dir: str | os.PathLike, *, kind: str, config: dict, state_dict: dict, meta: dict | None = None
) -> Path:
    """Write `out_dir/model.pt` and `out_dir/config.yaml`; returns the model.pt path."""
    import torch
    import yaml

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": "facekit-model",
        "kind": kind,
        "facekit_version": __version__,
        "config": config,
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "meta": meta or {},
    }
    with atomic_write(out / MODEL_FILE, "wb") as f:
        torch.save(payload, f)
    with atomic_write(out / "config.yaml") as f:
        yaml.safe_dump({"kind": kind, "facekit_version": __version__, **config}, f, sort_keys=False)
    return out / MODEL_FILE


def save_torch_file(payload: dict, path: str | os.PathLike) -> None:
    """torch.save(payload) to `path` (written in place: the caller makes it atomic)."""
    import torch

    with open(path, "wb") as f:
        torch.save(payload, f)


def read_torch_file(path: str | os.PathLike, data: bytes | None = None) -> object:
    """torch.load(weights_only=True) of a file, or of the model.pt inside a folder, with one-line errors. `data`: the
    file's bytes, read already (a member of an archive; `path` then only names it in messages)."""
    import torch

    p = Path(path)
    file = p / MODEL_FILE if data is None and p.is_dir() else p
    if data is None and not file.is_file():
        raise MissingDataError(f"{p}: no such file" + (f" (expected {MODEL_FILE} in the folder)" if p.is_dir() else ""))
    try:
        return torch.load(file if data is None else io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # the weights-only unpickler met a global: never retry without it
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise DataFormatError(
            f"{file}: refused: it holds Python objects{what}, not only tensors and plain containers; facekit never "
            "runs code from a model file"
        ) from None
    except Exception as exc:  # torch raises many types on a bad file
        message = str(exc).splitlines()[0] if str(exc) else ""
        raise DataFormatError(f"{file}: not a readable PyTorch file ({type(exc).__name__}: {message})") from None


def is_facekit_model(obj: object) -> bool:
    return isinstance(obj, dict) and obj.get("format") == "facekit-model"


def load_model(path: str | os.PathLike, kind: str, payload: object = None) -> dict:
    """Read a facekit model (a model directory or its model.pt) of the given kind (`payload`: already read)."""
    file = Path(path)
    payload = read_torch_file(file) if payload is None else payload
    if not is_facekit_model(payload):
        raise DataFormatError(f"{file}: not a facekit model (no 'format: facekit-model' entry)")
    if payload.get("kind") != kind:
        raise DataFormatError(f"{file}: a facekit {payload.get('kind')} model, expected a {kind}")
    return payload


def apply_state_dict(model, state: dict, source: str | os.PathLike, mismatch: str) -> None:
    """Load `state` into `model` strictly; a mismatch is one DataFormatError line, `<source>: weights <mismatch>:`
    followed by the counts of missing and unexpected keys and the first wrong shape."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    resized = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    problems = [f"{len(missing)} missing (first {missing[0]!r})"] if missing else []
    problems += [f"{len(unexpected)} unexpected (first {unexpected[0]!r})"] if unexpected else []
    problems += [
        f"{k!r} is {list(state[k].shape)} in the file, {list(expected[k].shape)} in the model" for k in resized[:1]
    ]
    if problems:
        raise DataFormatError(f"{os.fspath(source)}: weights {mismatch}: {'; '.join(problems)}")
    model.load_state_dict(state, strict=True)
