"""Face recognition at inference time: facekit recognizers (PyTorch, or their ONNX export) and insightface
ArcFaceONNX-convention files (e.g. buffalo_l's w600k_r50.onnx) behind one interface: aligned BGR crops in,
L2-normalised embeddings out."""

from __future__ import annotations

import json
import os
from contextlib import ExitStack
from dataclasses import replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from facekit.errors import DataFormatError, MissingDataError
from facekit.fileio import atomic_path, atomic_write, sha256_file
from facekit.norms import ARCFACE, Normalization
from facekit.recognition.calibration import Calibration
from facekit.recognition.config import RecognizerConfig
from facekit.recognition.export import CALIBRATION_KEY, FINGERPRINT_KEY, THRESHOLD_KEY

BACKENDS = ("auto", "torch", "onnx")
# MXNet-converted insightface recognizers normalise inside the graph and take raw RGB pixels
RAW_RGB = Normalization("raw_rgb", (0.0,) * 3, (1.0,) * 3, rgb=True)
FINGERPRINT_META = "fingerprint"  # model.pt meta: the fingerprint a recalibrated model keeps


class Recognizer:
    """Batching, flip averaging and L2 normalisation around a network `_run`: [B, 3, S, S] float32 -> [B, D]."""

    path: Path  # the weights file
    name: str
    input_size: int
    embedding_size: int
    norm: Normalization
    threshold: float | None = None  # calibrated cosine threshold for "same person", when the model knows one
    calibration: dict | None = None  # where the threshold came from (a Calibration dict), when recorded
    batch_size: int = 64

    def _run(self, blob: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def embed(self, crops_bgr: np.ndarray, flip: bool = False) -> np.ndarray:
        """Aligned BGR uint8 crops [N, S, S, 3] -> L2-normalised float32 embeddings [N, D]. With `flip`, the
        embeddings of each crop and of its mirror image are averaged before normalising."""
        crops = np.asarray(crops_bgr)
        size = self.input_size
        if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[1:] != (size, size, 3):
            raise ValueError(f"expected uint8 crops [N, {size}, {size}, 3], got {crops.dtype} {list(crops.shape)}")
        out = np.empty((len(crops), self.embedding_size), np.float32)
        for start in range(0, len(crops), self.batch_size):
            blob = np.stack([self.norm(crop) for crop in crops[start : start + self.batch_size]])
            features = self._run(blob)
            if flip:
                features = features + self._run(np.ascontiguousarray(blob[..., ::-1]))
            out[start : start + len(blob)] = features
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    @cached_property
    def fingerprint(self) -> str:
        """sha256 (hex) of the weights file as first written (store_calibration keeps it): galleries record it to
        refuse embeddings from another model."""
        return sha256_file(self.path)


class TorchRecognizer(Recognizer):
    """A facekit recognizer model directory (or its model.pt) run by PyTorch."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu") -> None:
        from facekit.modeldir import MODEL_FILE, apply_state_dict, load_model
        from facekit.recognition.backbones import create_backbone

        p = Path(path)
        self.path = p / MODEL_FILE if p.is_dir() else p
        payload = load_model(p, "recognizer")
        self.config = RecognizerConfig.from_dict(payload["config"])
        model = create_backbone(self.config.backbone, embedding_size=self.config.embedding_size)
        apply_state_dict(model, payload["state_dict"], self.path, f"do not fit {type(model).__name__}")
        self.model = model.to(device).eval()
        self.device = device
        self.name = f"facekit {self.config.backbone} (PyTorch)"
        self.input_size = self.config.input_size
        self.embedding_size = self.config.embedding_size
        self.norm = self.config.norm
        self.threshold, self.calibration = self.config.threshold, self.config.calibration
        if FINGERPRINT_META in payload.get("meta", {}):
            self.fingerprint = payload["meta"][FINGERPRINT_META]

    @torch.inference_mode()
    def _run(self, blob: np.ndarray) -> np.ndarray:
        return self.model(torch.from_numpy(blob).to(self.device)).float().cpu().numpy()


class OnnxRecognizer(Recognizer):
    """An ArcFaceONNX-convention .onnx (FORMATS.md section 4) run by ONNX Runtime: one NCHW input of a fixed
    square size, one embedding output; a fixed batch size (often 1 in older packs) is run crop by crop."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu") -> None:
        from facekit.runtime.onnx_detector import create_session

        self.path = Path(path)
        if not self.path.is_file():
            raise MissingDataError(f"{self.path}: no such file")
        self.session = create_session(self.path, device)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = inputs[0].shape
        if len(inputs) != 1 or len(outputs) != 1 or len(shape) != 4 or shape[1] != 3:
            raise DataFormatError(
                f"{self.path}: not an ArcFaceONNX recognizer (needs one [N, 3, S, S] input and one output; "
                f"has {len(inputs)} inputs {shape} and {len(outputs)} outputs)"
            )
        if not (isinstance(shape[2], int) and shape[2] == shape[3]):
            raise DataFormatError(f"{self.path}: input size {shape[2:]} is not a fixed square")
        self.input_name = inputs[0].name
        self.input_size = shape[2]
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        self.norm = insightface_input_norm(self.path)
        self.name = f"ONNX {self.path.name}"
        meta = self.session.get_modelmeta().custom_metadata_map  # facekit exports: see recognition/export.py
        if FINGERPRINT_KEY in meta:
            self.fingerprint = meta[FINGERPRINT_KEY]
        if THRESHOLD_KEY in meta:
            self.threshold = float(meta[THRESHOLD_KEY])
        if CALIBRATION_KEY in meta:
            try:
                self.calibration = json.loads(meta[CALIBRATION_KEY])
            except json.JSONDecodeError as exc:
                raise DataFormatError(f"{self.path}: metadata {CALIBRATION_KEY} is not JSON ({exc})") from None
        dim = outputs[0].shape[-1]
        probe = np.zeros((1, 3, self.input_size, self.input_size), np.float32)
        self.embedding_size = dim if isinstance(dim, int) else self._run(probe).shape[1]

    def _run(self, blob: np.ndarray) -> np.ndarray:
        if self.fixed_batch is None:
            return self.session.run(None, {self.input_name: blob})[0].reshape(len(blob), -1)
        step = self.fixed_batch
        padded = np.concatenate([blob, np.zeros((-len(blob) % step, *blob.shape[1:]), blob.dtype)])
        out = [self.session.run(None, {self.input_name: padded[i : i + step]})[0] for i in range(0, len(padded), step)]
        return np.concatenate(out).reshape(len(padded), -1)[: len(blob)]


def insightface_input_norm(path: str | os.PathLike) -> Normalization:
    """The input insightface's ArcFaceONNX feeds a file: raw RGB pixels when a node among the graph's first 8 is
    named Sub/_minus* and another Mul/_mul* (MXNet conversions that normalise inside), else ArcFace's
    (pixel - 127.5) / 127.5. facekit's exports name nodes "/scope/Op", so they always get the latter."""
    import onnx

    names = [node.name for node in onnx.load(str(path), load_external_data=False).graph.node[:8]]
    subtracts = any(n.startswith(("Sub", "_minus")) for n in names)
    multiplies = any(n.startswith(("Mul", "_mul")) for n in names)
    return RAW_RGB if subtracts and multiplies else ARCFACE


def load_face_recognizer(path: str | os.PathLike, device: str = "cpu", backend: str = "auto") -> Recognizer:
    """A recognizer from a facekit model directory / model.pt (PyTorch) or an ArcFaceONNX-convention .onnx.

    backend "onnx" on a model directory runs its recognizer.onnx; "auto" prefers PyTorch for directories.
    """
    from facekit.recognition.export import ONNX_FILE

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    p = Path(path)
    if p.suffix == ".onnx":
        if backend == "torch":
            raise ValueError(f"{p}: an .onnx file runs on the onnx backend, not torch")
        return OnnxRecognizer(p, device)
    if backend == "onnx":
        return OnnxRecognizer(p / ONNX_FILE if p.is_dir() else p.with_name(ONNX_FILE), device)
    return TorchRecognizer(p, device)


def save_recognizer(
    out_dir: str | os.PathLike, backbone: torch.nn.Module, config: RecognizerConfig, meta: dict | None = None
) -> Path:
    """Write a recognizer model directory (model.pt + config.yaml); returns the model.pt path."""
    from facekit.modeldir import save_model

    return save_model(out_dir, kind="recognizer", config=config.as_dict(), state_dict=backbone.state_dict(), meta=meta)


def store_calibration(path: str | os.PathLike, calibration: Calibration) -> list[Path]:
    """Make `calibration` the threshold of the recognizer at `path`: a model directory (or its model.pt) gets it in
    its config (model.pt, config.yaml) and in the metadata of its recognizer.onnx when there is one; a bare .onnx
    in its metadata. Every file is written to a temporary file first and all are renamed into place once all are
    written. The fingerprint galleries know the model by is kept (recorded on the first rewrite), since the
    embeddings do not change. Returns the files rewritten."""
    import yaml

    from facekit.modeldir import MODEL_FILE, load_model
    from facekit.recognition.export import ONNX_FILE, rewrite_metadata, threshold_metadata

    p = Path(path)
    onnx_file = p if p.suffix == ".onnx" else (p if p.is_dir() else p.parent) / ONNX_FILE
    metadata = threshold_metadata(calibration.threshold, calibration.as_dict())
    written = []
    with ExitStack() as stack:  # every temporary file replaces its target only when the block ends without error
        if p.suffix != ".onnx":
            model_file = p / MODEL_FILE if p.is_dir() else p
            payload = load_model(model_file, "recognizer")
            config = RecognizerConfig.from_dict(payload["config"])
            config = replace(config, threshold=calibration.threshold, calibration=calibration.as_dict())
            meta = payload.get("meta", {})
            payload["meta"] = {**meta, FINGERPRINT_META: meta.get(FINGERPRINT_META) or sha256_file(model_file)}
            payload["config"] = config.as_dict()
            with open(stack.enter_context(atomic_path(model_file)), "wb") as f:
                torch.save(payload, f)
            header = {"kind": payload["kind"], "facekit_version": payload["facekit_version"]}
            yaml_file = stack.enter_context(atomic_write(model_file.with_name("config.yaml")))
            yaml.safe_dump({**header, **config.as_dict()}, yaml_file, sort_keys=False)
            written += [model_file, model_file.with_name("config.yaml")]
        if onnx_file.is_file():
            import onnx

            props = {m.key: m.value for m in onnx.load(str(onnx_file), load_external_data=False).metadata_props}
            kept = {FINGERPRINT_KEY: props.get(FINGERPRINT_KEY) or sha256_file(onnx_file)}
            rewrite_metadata(onnx_file, stack.enter_context(atomic_path(onnx_file)), {**metadata, **kept})
            written.append(onnx_file)
        elif p.suffix == ".onnx":
            raise MissingDataError(f"{p}: no such file")
    return written
