"""SCRFD-layout ONNX detectors (facekit's detector.onnx exports and insightface's SCRFD / det_10g files) run
by ONNX Runtime. Layout: data_layouts/onnx_models.md."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

import numpy as np

from facekit.detection.faces import DetectSettings, Face, postprocess, resize_for_detection
from facekit.errors import DataFormatError, ModelError
from facekit.fileio import sha256_file
from facekit.norms import SCRFD
from facekit.runtime.onnx import create_session, dims, run_session

# outputs -> (strides, anchors per location, has key points)
_LAYOUTS = {
    6: ((8, 16, 32), 2, False),
    9: ((8, 16, 32), 2, True),
    10: ((8, 16, 32, 64, 128), 1, False),
    15: ((8, 16, 32, 64, 128), 1, True),
}
# what the outputs hold, in file order (every stride's scores, then boxes, then key points): values per anchor
_WIDTHS = (("scores", 1), ("boxes", 4), ("key points", 10))


class OnnxDetector:
    """Runs a SCRFD-layout detector. Dynamic-size models see the photo scaled to `max_size` and padded to a
    multiple of the largest stride; fixed-size models see it letterboxed into their input size."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu", session_options=None) -> None:
        self.path = Path(path)
        self.session = create_session(path, device, session_options)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(outputs) not in _LAYOUTS:
            raise DataFormatError(f"{path}: {len(outputs)} outputs; a SCRFD-layout detector has 6, 9, 10 or 15")
        self.strides, self.anchors, self.has_points = _LAYOUTS[len(outputs)]
        shape = inputs[0].shape or []
        if len(inputs) != 1 or len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise DataFormatError(
                f"{path}: {len(inputs)} input(s), the first {dims(shape)}; a SCRFD-layout detector takes one "
                "[1, 3, H, W] image"
            )
        self.input_name = inputs[0].name
        self.fixed_size = (shape[3], shape[2]) if all(isinstance(v, int) for v in shape[2:]) else None
        self.output_names = [output.name for output in outputs]
        for i, output in enumerate(outputs):
            self._check_declared(i, output.shape or [])
        self.name = f"ONNX {self.path.name}"
        self._centres: dict[tuple[int, int, int], np.ndarray] = {}

    def _kind(self, i: int) -> tuple[str, int, int]:
        """Output i's (what it holds, values per anchor, stride)."""
        kind, width = _WIDTHS[i // len(self.strides)]
        return kind, width, self.strides[i % len(self.strides)]

    def _check_declared(self, i: int, shape: list) -> None:
        """The shape the file declares for output i: [N, C] or [1, N, C] with C values per anchor (symbolic dims
        pass; an empty shape says nothing, and the runs are checked all the same)."""
        kind, width, stride = self._kind(i)
        fixed = [d if isinstance(d, int) else None for d in shape]
        batched = len(shape) == 3 and fixed[0] not in (1, None)
        if shape and (len(shape) not in (2, 3) or fixed[-1] not in (width, None) or batched):
            raise DataFormatError(
                f"{self.path}: output {i + 1} ({self.output_names[i]}) has shape {dims(shape)}; a SCRFD-layout "
                f"detector with {len(self.output_names)} outputs gives the {kind} of stride {stride} there: "
                f"[N, {width}] or [1, N, {width}]"
            )

    def _outputs(self, blob: np.ndarray) -> list[np.ndarray]:
        """The session's outputs for `blob` [1, 3, H, W] as [N, C] arrays, each checked against the layout: N =
        anchors at every position of its stride, all values finite."""
        height, width = blob.shape[2:]
        outs = run_session(self.session, {self.input_name: blob}, self.path)
        checked = []
        for i, out in enumerate(outs):
            kind, values, stride = self._kind(i)
            rows = (height // stride) * (width // stride) * self.anchors
            got = out[0] if out.ndim == 3 and len(out) == 1 else out
            if got.shape != (rows, values):
                raise ModelError(
                    f"{self.path}: output {i + 1} ({self.output_names[i]}) has shape {list(out.shape)} for a "
                    f"{width}x{height} input; the {kind} of stride {stride} are [{rows}, {values}] there "
                    f"({width // stride}x{height // stride} positions x {self.anchors} anchors)"
                )
            if not np.isfinite(got).all():
                raise ModelError(
                    f"{self.path}: output {i + 1} ({self.output_names[i]}) holds NaN or infinite {kind}; the model is "
                    "broken (damaged weights or a numeric overflow)"
                )
            checked.append(got)
        return checked

    @cached_property
    def fingerprint(self) -> str:
        """sha256 (hex) of the .onnx file."""
        return sha256_file(self.path)

    def _input(self, image: np.ndarray, max_size: int | None) -> tuple[np.ndarray, float]:
        import cv2

        if self.fixed_size is None:
            resized, scale = resize_for_detection(image, max_size)
            h, w = resized.shape[:2]
            step = self.strides[-1]  # every stride's grid then covers the canvas exactly
            canvas_w, canvas_h = -(-w // step) * step, -(-h // step) * step
        else:
            canvas_w, canvas_h = self.fixed_size
            scale = min(canvas_w / image.shape[1], canvas_h / image.shape[0])
            size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
            resized = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        canvas = np.zeros((canvas_h, canvas_w, 3), np.uint8)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        return SCRFD(canvas)[None], scale

    def _anchor_centres(self, height: int, width: int, stride: int) -> np.ndarray:
        key = (height, width, stride)
        if key not in self._centres:
            ys, xs = np.mgrid[:height, :width]
            centres = np.stack([xs, ys], -1).reshape(-1, 1, 2).astype(np.float32) * stride
            self._centres[key] = np.repeat(centres, self.anchors, 1).reshape(-1, 2)
        return self._centres[key]

    def detect(self, image: np.ndarray, settings: DetectSettings = DetectSettings()) -> list[Face]:
        """Faces in a BGR uint8 [H, W, 3] image, strongest first."""
        blob, scale = self._input(image, settings.max_size)
        outs = self._outputs(blob)
        levels = len(self.strides)
        boxes, scores, points = [], [], []
        for i, stride in enumerate(self.strides):
            keep = np.flatnonzero(outs[i][:, 0] > settings.threshold)  # decode only the candidates
            centres = self._anchor_centres(blob.shape[2] // stride, blob.shape[3] // stride, stride)[keep]
            dist = outs[levels + i][keep] * stride
            boxes.append(np.concatenate([centres - dist[:, :2], centres + dist[:, 2:]], 1))
            scores.append(outs[i][keep, 0])
            if self.has_points:
                points.append(centres[:, None] + outs[2 * levels + i][keep].reshape(-1, 5, 2) * stride)
        return postprocess(
            np.concatenate(boxes),
            np.concatenate(scores),
            np.concatenate(points) if self.has_points else None,
            settings,
            scale,
        )
