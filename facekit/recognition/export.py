"""Export a recognizer to ONNX in insightface's ArcFaceONNX convention (data_layouts/onnx_models.md).

The graph takes "input.1": NCHW float32 RGB `(pixel - 127.5) / 127.5` crops [batch, 3, S, S] (S: the config's
input_size; dynamic batch) and returns one output, "embedding" [batch, D], not L2-normalised (like insightface's
w600k_r50.onnx), so `insightface.model_zoo.get_model(path)` loads it as ArcFaceONNX with its default (127.5, 127.5)
pre-processing.

insightface aligns every face onto ArcFace's template (face_align.norm_crop: scaled by S / 112, or by S / 128 and
shifted 8 S / 128 px right), so a recognizer trained on other crops (dlib's 150x150 chips) would be fed the wrong
faces. `insightface=True` wraps such a recognizer in CanvasInput: the graph takes insightface's 256x256 crop and
resamples it onto the recognizer's own template and size, so insightface routes and aligns for it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facekit import strict_json
from facekit.align import ARCFACE_SIZE, ARCFACE_TEMPLATE, similarity_transform, template
from facekit.norms import ARCFACE, Normalization
from facekit.onnx_export import export_onnx, weights_digest
from facekit.recognition.config import (  # defined torch-free there, for the ONNX serving path
    CALIBRATION_KEY,
    FINGERPRINT_KEY,
    TEMPLATE_KEY,
    THRESHOLD_KEY,
    WEIGHTS_KEY,
    RecognizerConfig,
)
from facekit.recognition.config import ONNX_FILE as ONNX_FILE  # where the export is found: re-exported


class ArcfaceInput(nn.Module):
    """A backbone trained on another normalisation, wrapped to take ArcFace input: x = (rgb - 127.5) / 127.5."""

    def __init__(self, backbone: nn.Module, norm: Normalization) -> None:
        super().__init__()
        self.backbone = backbone
        mean = torch.tensor(norm.mean, dtype=torch.float32)
        std = torch.tensor(norm.std, dtype=torch.float32)
        self.register_buffer("order", torch.tensor([0, 1, 2] if norm.rgb else [2, 1, 0]), persistent=False)
        self.register_buffer("scale", (ARCFACE.std[0] / std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", ((ARCFACE.mean[0] - mean) / std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ArcFace-normalised RGB [B, 3, S, S] -> embeddings [B, D]."""
        return self.backbone(x.index_select(1, self.order) * self.scale + self.shift)


INSIGHTFACE_CANVAS = 256  # a size insightface routes (a multiple of 16) whose crop holds a dlib chip at full detail


def insightface_template(size: int) -> np.ndarray | None:
    """The 5 points insightface's norm_crop warps faces onto at `size` (float32 [5, 2]); None for sizes it refuses."""
    if size % ARCFACE_SIZE == 0:
        return template(size)
    if size % 128 == 0:
        ratio = size / 128
        return (ARCFACE_TEMPLATE * ratio + np.array([8 * ratio, 0], np.float32)).astype(np.float32)
    return None


def needs_canvas(config: RecognizerConfig) -> bool:
    """Whether insightface, left to itself, would crop faces otherwise than `config`'s recognizer was trained on."""
    own = insightface_template(config.input_size)
    return own is None or config.input_size % 16 or not np.allclose(own, config.template, atol=1e-3)


class CanvasInput(nn.Module):
    """A recognizer behind a fixed bilinear resampling: insightface's ArcFace-normalised INSIGHTFACE_CANVAS crops
    [B, 3, 256, 256] -> the recognizer's own crops (template `points` [5, 2] at `size`) -> embeddings [B, D]. The
    grid maps each crop pixel through the similarity from the recognizer's template to insightface's."""

    def __init__(self, model: nn.Module, size: int, points: np.ndarray) -> None:
        super().__init__()
        self.model = model
        matrix = similarity_transform(points, insightface_template(INSIGHTFACE_CANVAS)).astype(np.float64)
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
        canvas = np.stack([xs, ys, np.ones_like(xs)], -1) @ matrix.T  # [S, S, 2] canvas pixels (x, y)
        grid = 2 * canvas / (INSIGHTFACE_CANVAS - 1) - 1  # pixel centres, as align_corners=True reads them
        self.register_buffer("grid", torch.from_numpy(grid).float()[None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = self.grid.expand(x.shape[0], -1, -1, -1)
        return self.model(F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True))


def export_arcface_onnx(
    backbone: nn.Module,
    config: RecognizerConfig,
    path: str | os.PathLike,
    opset: int = 17,
    *,
    fingerprint: str | None = None,
    insightface: bool = False,
) -> Path:
    """Write `path` (one self-contained .onnx, dynamic batch), atomically. The backbone is put in eval mode.

    metadata_props carry what the runtime needs beyond insightface's convention: "facekit_fingerprint" (the
    fingerprint of the model.pt this graph was exported from, so a gallery accepts both forms of one model) with
    "facekit_weights_sha256" (the digest of this graph's weights that the claim holds for), "facekit_threshold" (the
    calibrated cosine threshold) and "facekit_calibration" (its provenance, JSON), when known, and always
    "facekit_template" (config.template, JSON: the input size is the graph's). With `insightface`, a recognizer that
    needs_canvas() is wrapped in CanvasInput (opset 16 and up: GridSample); its template is then insightface's."""
    model = backbone.eval() if config.norm == ARCFACE else ArcfaceInput(backbone.eval(), config.norm)
    size, points = config.input_size, np.asarray(config.template, np.float32)
    if insightface and needs_canvas(config):
        if opset < 16:
            raise ValueError(f"resampling insightface's crops needs GridSample: opset 16 or more, not {opset}")
        model, size = CanvasInput(model, size, points), INSIGHTFACE_CANVAS
        points = insightface_template(size)
    example = torch.zeros(2, 3, size, size)
    dynamic = {"input.1": {0: "batch"}, "embedding": {0: "batch"}}
    metadata = {TEMPLATE_KEY: strict_json.dumps([[round(float(v), 4) for v in p] for p in points])}
    if fingerprint:
        metadata[FINGERPRINT_KEY] = fingerprint
    metadata.update(threshold_metadata(config.threshold, config.calibration))
    digest_key = WEIGHTS_KEY if fingerprint else None  # binds the claim to this graph's weights
    return export_onnx(
        model,
        example,
        path,
        output_names=["embedding"],
        dynamic_axes=dynamic,
        opset=opset,
        metadata=metadata,
        digest_key=digest_key,
    )


def threshold_metadata(threshold: float | None, calibration: dict | None) -> dict[str, str]:
    """The metadata_props entries of a threshold and its calibration (those that are not None)."""
    metadata = {} if threshold is None else {THRESHOLD_KEY: repr(float(threshold))}
    if calibration is not None:
        metadata[CALIBRATION_KEY] = strict_json.dumps(calibration, sort_keys=True)
    return metadata


def rewrite_metadata(source: str | os.PathLike, target: str | os.PathLike, updates: dict[str, str]) -> None:
    """Write the .onnx `source` to `target` with its metadata_props updated by `updates` (the graph unchanged). A
    fingerprint claim among `updates` is bound to the weights it is made for (WEIGHTS_KEY)."""
    import onnx

    graph = onnx.load(str(source))
    props = {p.key: p.value for p in graph.metadata_props} | updates
    if FINGERPRINT_KEY in updates:
        props[WEIGHTS_KEY] = weights_digest(graph)
    onnx.helper.set_model_props(graph, props)
    onnx.save(graph, str(target))
