"""Export a RetinaFace detector to ONNX in insightface's SCRFD layout (data_layouts/onnx_models.md).

The graph takes NCHW float32 RGB `(pixel - 127.5) / 128` of any height and width (batch 1) and returns 9
outputs: scores [N_s, 1], boxes [N_s, 4] and key points [N_s, 10] for strides 8, 16, 32 (all scores first, then
all boxes, then all key points). Rows run y, x, anchor; boxes are (left, top, right, bottom) distances from the
anchor centre (x * stride, y * stride) divided by the stride, key points (dx, dy) x 5 likewise. The detector's own
normalisation and prior decoding happen inside the graph, so `insightface.model_zoo.get_model` loads it as SCRFD.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from facekit.detection.config import DetectorConfig
from facekit.detection.model import RetinaFace
from facekit.norms import SCRFD
from facekit.onnx_export import export_onnx

OUTPUT_NAMES = [f"{kind}_{stride}" for kind in ("score", "bbox", "kps") for stride in (8, 16, 32)]


class ScrfdLayout(nn.Module):
    """RetinaFace wrapped to take SCRFD's input and give SCRFD's 9 outputs."""

    def __init__(self, model: RetinaFace, config: DetectorConfig) -> None:
        super().__init__()
        if len(config.steps) != 3:
            raise ValueError("the SCRFD 9-output layout needs exactly 3 strides")
        self.model = model
        self.config = config
        norm = config.norm
        # SCRFD input x = (rgb - 127.5) / 128  ->  our input ((rgb or bgr) - mean) / std, as one affine map
        order = [0, 1, 2] if norm.rgb else [2, 1, 0]
        mean = torch.tensor(norm.mean, dtype=torch.float32)
        std = torch.tensor(norm.std, dtype=torch.float32)
        self.register_buffer("order", torch.tensor(order), persistent=False)
        self.register_buffer("scale", (SCRFD.std[0] / std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", ((SCRFD.mean[0] - mean) / std).view(1, 3, 1, 1), persistent=False)
        for k, sizes in enumerate(config.min_sizes):  # anchor sides in pixels, per level
            self.register_buffer(f"sizes{k}", torch.tensor(sizes, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        z = x.index_select(1, self.order) * self.scale + self.shift
        m = self.model
        p1, p2, p3 = m.fpn(m.body(z))
        features = [m.ssh1(p1), m.ssh2(p2), m.ssh3(p3)]
        v0, v1 = self.config.variances
        scores, boxes, points = [], [], []
        for k, f in enumerate(features):
            stride = float(self.config.steps[k])
            loc = m.BboxHead[k](f)[0]  # [H*W*A, 4]
            logits = m.ClassHead[k](f)[0]  # [H*W*A, 2]
            landm = m.LandmarkHead[k](f)[0]  # [H*W*A, 10]
            sizes = getattr(self, f"sizes{k}")  # [A]
            ys = torch.arange(f.shape[2], dtype=torch.float32)
            xs = torch.arange(f.shape[3], dtype=torch.float32)
            gy, gx = torch.meshgrid(ys, xs, indexing="ij")
            grid = torch.stack([gx, gy], -1).reshape(-1, 1, 2) * stride  # SCRFD anchor centres [H*W, 1, 2]
            anchors = len(self.config.min_sizes[k])
            centre0 = (grid + stride / 2).expand(-1, anchors, 2).reshape(-1, 2)  # RetinaFace prior centres
            wh = sizes.view(1, anchors, 1).expand(grid.shape[0], anchors, 2).reshape(-1, 2)
            grid = grid.expand(-1, anchors, 2).reshape(-1, 2)
            centre = centre0 + loc[:, :2] * v0 * wh
            half = wh * torch.exp(loc[:, 2:] * v1) / 2
            boxes.append(torch.cat([grid - (centre - half), (centre + half) - grid], 1) / stride)
            kps = centre0[:, None] + landm.view(-1, 5, 2) * v0 * wh[:, None]
            points.append(((kps - grid[:, None]) / stride).reshape(-1, 10))
            scores.append(logits.softmax(-1)[:, 1:2])
        return (*scores, *boxes, *points)


def export_scrfd_onnx(model: RetinaFace, config: DetectorConfig, path: str | os.PathLike, opset: int = 17) -> Path:
    """Write `path` (one self-contained .onnx, dynamic height and width), atomically."""
    dynamic = {"input.1": {2: "height", 3: "width"}, **{name: {0: f"n_{name}"} for name in OUTPUT_NAMES}}
    return export_onnx(
        ScrfdLayout(model.eval(), config),
        torch.zeros(1, 3, 128, 160),
        path,
        output_names=OUTPUT_NAMES,
        dynamic_axes=dynamic,
        opset=opset,
    )
