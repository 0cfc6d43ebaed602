"""Face recognition at inference time: facekit recognizers (PyTorch, or their ONNX export) and insightface
ArcFaceONNX-convention files (e.g. buffalo_l's w600k_r50.onnx) behind one interface: aligned BGR crops in,
L2-normalised embeddings out."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facekit import strict_json
from facekit.errors import DataFormatError, MissingDataError, ModelError
from facekit.fileio import atomic_path, atomic_write, sha256_file
from facekit.norms import ARCFACE, Normalization
from facekit.recognition.calibration import Calibration
from facekit.recognition.config import (
    CALIBRATION_KEY,
    FINGERPRINT_KEY,
    ONNX_FILE,
    TEMPLATE_KEY,
    THRESHOLD_KEY,
    WEIGHTS_KEY,
    RecognizerConfig,
)

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)
BACKENDS = ("auto", "torch", "onnx")
# MXNet-converted insightface recognizers normalise inside the graph and take raw RGB pixels
RAW_RGB = Normalization("raw_rgb", (0.0,) * 3, (1.0,) * 3, rgb=True)
FINGERPRINT_META = "fingerprint"  # model.pt meta: the fingerprint a recalibrated model keeps
WEIGHTS_META = "weights_sha256"  # model.pt meta: payload_digest() of the model that fingerprint claim holds for
MIN_NORM = 1e-6  # a raw embedding shorter than this says nothing about the face


class Recognizer:
    """Batching, flip averaging and L2 normalisation around a network `_run`: [B, 3, S, S] float32 -> [B, D]."""

    path: Path  # the weights file
    name: str
    input_size: int
    template: np.ndarray  # float32 [5, 2]: the 5 points (crop pixels) faces are warped onto for this recognizer
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
            out[start : start + len(blob)] = features / self._lengths(features)
        return out

    def _lengths(self, features: np.ndarray) -> np.ndarray:
        """The L2 norms [B, 1] of raw embeddings [B, D]. Crops are finite pixels, so a NaN, infinite or zero-length
        embedding means a broken model (damaged weights, a numeric overflow): a one-line error naming it."""
        lengths = np.linalg.norm(features.astype(np.float64), axis=1, keepdims=True)
        for bad, what in ((~np.isfinite(lengths), "NaN or infinite"), (lengths < MIN_NORM, "zero-length")):
            if bad.any():
                raise ModelError(
                    f"{self.path}: the recognizer made {what} embeddings for {int(bad.sum())} of a batch of "
                    f"{len(features)} face crops; the model is broken (damaged weights or a numeric overflow)"
                )
        return lengths

    @cached_property
    def fingerprint(self) -> str:
        """What galleries record to refuse embeddings from another model: sha256 (hex) of the weights file, or the
        fingerprint the file's metadata claims (of the file as first written, kept by store_calibration; of the
        model.pt an ONNX export was made from) when the weights are those the claim was recorded for."""
        return sha256_file(self.path)


class TorchRecognizer(Recognizer):
    """A facekit recognizer model directory (or its model.pt) run by PyTorch."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu") -> None:
        from facekit.align import check_template
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
        try:
            self.template = check_template(self.config.template, self.input_size)
        except ValueError as exc:
            raise DataFormatError(f"{self.path}: config template is {exc}") from None
        self.embedding_size = self.config.embedding_size
        self.norm = self.config.norm
        self.threshold, self.calibration = self.config.threshold, self.config.calibration
        claim = torch_claim(self.path, payload)
        if claim:
            self.fingerprint = claim

    def _run(self, blob: np.ndarray) -> np.ndarray:
        import torch  # loaded already with the model (facekit.modeldir): a lookup

        with torch.inference_mode():
            return self.model(torch.from_numpy(blob).to(self.device)).float().cpu().numpy()


class OnnxRecognizer(Recognizer):
    """An ArcFaceONNX-convention .onnx (data_layouts/onnx_models.md) run by ONNX Runtime: one NCHW input of a fixed
    square size, one embedding output; a fixed batch size (often 1 in older packs) is run crop by crop."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu", session_options=None) -> None:
        import onnx

        from facekit.runtime.onnx import create_session, dims

        self.path = Path(path)
        if not self.path.is_file():
            raise MissingDataError(f"{self.path}: no such file")
        self.session = create_session(self.path, device, session_options)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = inputs[0].shape
        if len(inputs) != 1 or len(outputs) != 1 or len(shape) != 4 or shape[1] != 3:
            raise DataFormatError(
                f"{self.path}: not an ArcFaceONNX recognizer (needs one [N, 3, S, S] input and one output; "
                f"has {len(inputs)} inputs {shape} and {len(outputs)} outputs)"
            )
        if not (isinstance(shape[2], int) and shape[2] == shape[3]):
            raise DataFormatError(f"{self.path}: input size {shape[2:]} is not a fixed square")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.input_size = shape[2]
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        declared = outputs[0].shape or []  # [] when the file does not say: the runs are checked all the same
        if declared and (len(declared) != 2 or any(isinstance(d, int) and d < 1 for d in declared)):
            raise DataFormatError(
                f"{self.path}: output {self.output_name} has shape {dims(declared)}; a recognizer's output is "
                "[N, D], one D-d embedding per crop"
            )
        model = onnx.load(str(self.path), load_external_data=False)  # the weights only if a claim needs them
        self.norm = insightface_input_norm(model)
        self.name = f"ONNX {self.path.name}"
        meta = {p.key: p.value for p in model.metadata_props}  # facekit exports: see recognition/export.py
        claim = onnx_claim(self.path, model)
        if claim:
            self.fingerprint = claim
        del model  # its weights: the session holds its own copy
        if THRESHOLD_KEY in meta:
            self.threshold = float(meta[THRESHOLD_KEY])
        if CALIBRATION_KEY in meta:
            try:
                self.calibration = json.loads(meta[CALIBRATION_KEY])
            except json.JSONDecodeError as exc:
                raise DataFormatError(f"{self.path}: metadata {CALIBRATION_KEY} is not JSON ({exc})") from None
        self.template = self._template(meta.get(TEMPLATE_KEY))
        dim = declared[-1] if declared else None
        self.embedding_size = dim if isinstance(dim, int) else None
        if self.embedding_size is None:
            probe = np.zeros((1, 3, self.input_size, self.input_size), np.float32)
            self.embedding_size = self._run(probe).shape[1]

    def _template(self, text: str | None) -> np.ndarray:
        """The template a facekit export's metadata records (JSON [5, 2], input pixels), else ArcFace's scaled to the
        input size (insightface's packs, other ArcFaceONNX files)."""
        from facekit.align import check_template, template

        if text is None:
            return template(self.input_size)
        try:
            return check_template(json.loads(text), self.input_size)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{self.path}: metadata {TEMPLATE_KEY} is not JSON ({exc})") from None
        except ValueError as exc:
            raise DataFormatError(f"{self.path}: metadata {TEMPLATE_KEY} is {exc}") from None

    def _run(self, blob: np.ndarray) -> np.ndarray:
        step = self.fixed_batch or len(blob)
        pad = -len(blob) % step
        padded = np.concatenate([blob, np.zeros((pad, *blob.shape[1:]), blob.dtype)]) if pad else blob
        return np.concatenate([self._run_once(padded[i : i + step]) for i in range(0, len(padded), step)])[: len(blob)]

    def _run_once(self, blob: np.ndarray) -> np.ndarray:
        """One session run, its output checked: [B, D] for B crops (what the file declares may be symbolic)."""
        from facekit.runtime.onnx import run_session

        (out,) = run_session(self.session, {self.input_name: blob}, self.path)
        if out.ndim != 2 or out.shape[0] != len(blob) or out.shape[1] != (self.embedding_size or out.shape[1]):
            raise ModelError(
                f"{self.path}: output {self.output_name} has shape {list(out.shape)} for a batch of {len(blob)} "
                f"crops; a recognizer's output is [{len(blob)}, {self.embedding_size or 'D'}], one embedding per crop"
            )
        return out.astype(np.float32, copy=False)


def insightface_input_norm(model: onnx.ModelProto) -> Normalization:
    """The input insightface's ArcFaceONNX feeds an onnx.ModelProto: raw RGB pixels when a node among the graph's
    first 8 is named Sub/_minus* and another Mul/_mul* (MXNet conversions that normalise inside), else ArcFace's
    (pixel - 127.5) / 127.5. facekit's exports name nodes "/scope/Op", so they always get the latter."""
    names = [node.name for node in model.graph.node[:8]]
    subtracts = any(n.startswith(("Sub", "_minus")) for n in names)
    multiplies = any(n.startswith(("Mul", "_mul")) for n in names)
    return RAW_RGB if subtracts and multiplies else ARCFACE


def onnx_claim(path: Path, model: onnx.ModelProto) -> str | None:
    """The fingerprint the metadata of onnx.ModelProto `model` (read from `path`) claims, when its weights are
    those the claim was recorded for; else None (the file's own sha256 stands)."""
    from onnx.external_data_helper import load_external_data_for_model

    from facekit.onnx_export import weights_digest

    def digest() -> str:
        load_external_data_for_model(model, str(path.parent))  # weights kept in other files, if any
        return weights_digest(model)

    meta = {p.key: p.value for p in model.metadata_props}
    if FINGERPRINT_KEY not in meta:
        return None
    return _checked_claim(path, meta[FINGERPRINT_KEY], meta.get(WEIGHTS_KEY), digest)


def torch_claim(path: Path, payload: dict) -> str | None:
    """The fingerprint model.pt `payload` (read from `path`) keeps in its meta after a recalibration, when its
    tensors and config are those the claim was recorded for; else None (the file's own sha256 stands)."""
    meta = payload.get("meta", {})
    if FINGERPRINT_META not in meta:
        return None
    return _checked_claim(path, meta[FINGERPRINT_META], meta.get(WEIGHTS_META), lambda: payload_digest(payload))


def payload_digest(payload: dict) -> str:
    """sha256 (hex) of what makes a model.pt's embeddings: its config apart from the threshold and its calibration,
    and its tensors (names, dtypes, shapes, bytes)."""
    import torch

    digest = hashlib.sha256()
    config = {k: v for k, v in payload["config"].items() if k not in ("threshold", "calibration")}
    digest.update(strict_json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(payload["state_dict"].items()):
        digest.update(f"\n{name} {tensor.dtype} {list(tensor.shape)}\n".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _checked_claim(path: Path, claim: str, recorded: str | None, actual: Callable[[], str]) -> str | None:
    """`claim` when the weights digest recorded with it is `actual()`, the weights' own; else None, with a warning."""
    if not recorded:
        log.warning(
            "%s: its metadata claims fingerprint %s without a digest of the weights to check it against (written by "
            "facekit before it recorded one): ignored; galleries built with the claim need build-db again",
            path, claim[:12],
        )  # fmt: skip
        return None
    digest = actual()
    if digest != recorded:
        log.warning(
            "%s: its weights (digest %s) are not those its metadata describes (%s): changed after it was written? "
            "its fingerprint claim %s is ignored; galleries know it by the file's own sha256",
            path, digest[:12], recorded[:12], claim[:12],
        )  # fmt: skip
        return None
    return claim


def load_face_recognizer(
    path: str | os.PathLike, device: str = "cpu", backend: str = "auto", session_options=None
) -> Recognizer:
    """A recognizer from a facekit model directory / model.pt (PyTorch) or an ArcFaceONNX-convention .onnx.

    backend "onnx" on a model directory runs its recognizer.onnx; "auto" prefers PyTorch for directories.
    `session_options`: an onnxruntime.SessionOptions for ONNX models (None: ONNX Runtime's defaults).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
    p = Path(path)
    if p.suffix == ".onnx":
        if backend == "torch":
            raise ValueError(f"{p}: an .onnx file runs on the onnx backend, not torch")
        return OnnxRecognizer(p, device, session_options)
    if backend == "onnx":
        return OnnxRecognizer(p / ONNX_FILE if p.is_dir() else p.with_name(ONNX_FILE), device, session_options)
    return TorchRecognizer(p, device)


def store_calibration(path: str | os.PathLike, calibration: Calibration) -> list[Path]:
    """Make `calibration` the threshold of the recognizer at `path`: a model directory (or its model.pt) gets it in
    its config (model.pt, config.yaml) and in the metadata of its recognizer.onnx when there is one; a bare .onnx
    in its metadata. Every file is written to a temporary file first and all are renamed into place once all are
    written. The fingerprint galleries know the model by is kept (recorded on the first rewrite, with a digest of
    the weights it holds for), since the embeddings do not change. Returns the files rewritten."""
    import yaml

    from facekit.modeldir import MODEL_FILE, load_model, save_torch_file
    from facekit.recognition.export import rewrite_metadata, threshold_metadata

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
            fingerprint = torch_claim(model_file, payload) or sha256_file(model_file)
            payload["config"] = config.as_dict()
            claim = {FINGERPRINT_META: fingerprint, WEIGHTS_META: payload_digest(payload)}
            payload["meta"] = {**payload.get("meta", {}), **claim}
            save_torch_file(payload, stack.enter_context(atomic_path(model_file)))
            header = {"kind": payload["kind"], "facekit_version": payload["facekit_version"]}
            yaml_file = stack.enter_context(atomic_write(model_file.with_name("config.yaml")))
            yaml.safe_dump({**header, **config.as_dict()}, yaml_file, sort_keys=False)
            written += [model_file, model_file.with_name("config.yaml")]
        if onnx_file.is_file():
            import onnx

            model = onnx.load(str(onnx_file), load_external_data=False)
            kept = {FINGERPRINT_KEY: onnx_claim(onnx_file, model) or sha256_file(onnx_file)}
            rewrite_metadata(onnx_file, stack.enter_context(atomic_path(onnx_file)), {**metadata, **kept})
            written.append(onnx_file)
        elif p.suffix == ".onnx":
            raise MissingDataError(f"{p}: no such file")
    return written
