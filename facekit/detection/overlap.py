"""Box overlap in numpy, for everything outside the training loss: NMS at inference, matching detections to ground
truth in evaluation, comparing two detectors' boxes. No torch, so the ONNX serving path can use it. (Training
matches anchors with facekit.detection.box_utils.box_iou, on the device, in torch.)"""

from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray, *, smaller: bool = False) -> np.ndarray:
    """IoU of corner boxes (x1, y1, x2, y2) a [A, 4] and b [B, 4]: float64 [A, B]. smaller: the intersection over the
    smaller box's area instead (MTCNN's "Min" overlap: 1 for a box inside another)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    if smaller:
        return inter / np.maximum(np.minimum(area_a[:, None], area_b[None, :]), 1e-12)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, *, smaller: bool = False) -> np.ndarray:
    """Greedy non-maximum suppression: int64 indices [K] of the kept boxes (corners [N, 4]), by decreasing score (ties:
    the lower index first). smaller: overlap over the smaller box's area (box_iou's `smaller`). Callers cap N with a
    top-k first: the overlap matrix is [N, N]."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    if len(order) == 0:
        return order.astype(np.int64)
    over = box_iou(np.asarray(boxes)[order], np.asarray(boxes)[order], smaller=smaller) > iou_threshold
    suppressed = np.zeros(len(order), bool)
    keep = []
    for i in range(len(order)):
        if not suppressed[i]:
            keep.append(i)
            suppressed |= over[i]
    return order[keep].astype(np.int64)
