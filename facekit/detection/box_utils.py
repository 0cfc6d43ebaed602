"""Prior boxes, IoU matching, box and landmark coding: pure tensor functions (NMS, in numpy: detection.overlap).

Conventions: corner boxes are (x1, y1, x2, y2); centre boxes (cx, cy, w, h); priors are centre boxes normalised by
the image size; variances are (centre, size) = (0.1, 0.2) as in RetinaFace.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def prior_boxes(image_size: tuple[int, int], min_sizes: Sequence[Sequence[int]], steps: Sequence[int]) -> torch.Tensor:
    """RetinaFace anchors for an image of (height, width): [N, 4] normalised (cx, cy, w, h).

    Per level k: a ceil(H/step) x ceil(W/step) grid, rows y then columns x then anchors; centre
    ((x + 0.5) * step, (y + 0.5) * step); one square anchor per entry of min_sizes[k]. No clipping.
    """
    height, width = image_size
    levels = []
    for sizes, step in zip(min_sizes, steps, strict=True):
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        cy = (torch.arange(rows, dtype=torch.float32) + 0.5) * step / height
        cx = (torch.arange(cols, dtype=torch.float32) + 0.5) * step / width
        gy, gx = torch.meshgrid(cy, cx, indexing="ij")  # [rows, cols]
        anchors = len(sizes)
        wh = torch.tensor([[s / width, s / height] for s in sizes], dtype=torch.float32)  # [A, 2]
        centres = torch.stack([gx, gy], -1)[:, :, None, :].expand(rows, cols, anchors, 2)
        sizes_grid = wh[None, None].expand(rows, cols, anchors, 2)
        levels.append(torch.cat([centres, sizes_grid], -1).reshape(-1, 4))
    return torch.cat(levels)


def point_form(boxes: torch.Tensor) -> torch.Tensor:
    """[N, 4] (cx, cy, w, h) -> [N, 4] (x1, y1, x2, y2)."""
    return torch.cat([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], 1)


def center_size(boxes: torch.Tensor) -> torch.Tensor:
    """[N, 4] (x1, y1, x2, y2) -> [N, 4] (cx, cy, w, h)."""
    return torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], 1)


def box_iou(a: torch.Tensor, b: torch.Tensor, *, smaller: bool = False) -> torch.Tensor:
    """IoU of corner boxes a [A, 4] and b [B, 4]: [A, B]. smaller: the intersection over the smaller box's area
    instead (MTCNN's "Min" overlap: 1 for a box inside another)."""
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    if smaller:
        return inter / torch.min(area_a[:, None], area_b[None, :]).clamp(min=1e-12)
    union = area_a[:, None] + area_b[None, :] - inter
    return inter / union.clamp(min=1e-12)


def encode(matched: torch.Tensor, priors: torch.Tensor, variances: Sequence[float]) -> torch.Tensor:
    """Corner boxes [N, 4] matched to priors [N, 4] (cx, cy, w, h) -> regression targets [N, 4]."""
    centre = ((matched[:, :2] + matched[:, 2:]) / 2 - priors[:, :2]) / (variances[0] * priors[:, 2:])
    size = torch.log((matched[:, 2:] - matched[:, :2]).clamp(min=1e-6) / priors[:, 2:]) / variances[1]
    return torch.cat([centre, size], 1)


def decode(loc: torch.Tensor, priors: torch.Tensor, variances: Sequence[float]) -> torch.Tensor:
    """Regressions [..., N, 4] against priors [N, 4] -> corner boxes [..., N, 4] (normalised)."""
    centre = priors[:, :2] + loc[..., :2] * variances[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[..., 2:] * variances[1])
    return torch.cat([centre - size / 2, centre + size / 2], -1)


def encode_landmarks(matched: torch.Tensor, priors: torch.Tensor, variances: Sequence[float]) -> torch.Tensor:
    """Landmarks [N, 5, 2] matched to priors [N, 4] -> targets [N, 10]."""
    offsets = (matched - priors[:, None, :2]) / (variances[0] * priors[:, None, 2:])
    return offsets.reshape(len(matched), -1)


def decode_landmarks(pre: torch.Tensor, priors: torch.Tensor, variances: Sequence[float]) -> torch.Tensor:
    """Regressions [..., N, 10] -> landmarks [..., N, 5, 2] (normalised)."""
    pre = pre.reshape(*pre.shape[:-1], 5, 2)
    return priors[:, None, :2] + pre * variances[0] * priors[:, None, 2:]


def match(
    truths: torch.Tensor,
    landmarks: torch.Tensor,
    landmark_mask: torch.Tensor,
    priors: torch.Tensor,
    *,
    threshold: float = 0.35,
    variances: Sequence[float] = (0.1, 0.2),
    min_best_overlap: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Assign ground truth to priors (RetinaFace's rule).

    truths: [F, 4] normalised corners; landmarks: [F, 5, 2] normalised; landmark_mask: bool [F]; priors: [N, 4].
    Each prior takes the face it overlaps most, and is positive when that IoU >= threshold; each face whose best
    prior overlaps it by at least `min_best_overlap` also claims that prior. Returns box targets [N, 4], labels
    int64 [N] (1 face, 0 background), landmark targets [N, 10] and landmark weights bool [N].
    """
    n = len(priors)
    if len(truths) == 0:
        zeros = torch.zeros(n, 4)
        return zeros, torch.zeros(n, dtype=torch.long), torch.zeros(n, 10), torch.zeros(n, dtype=torch.bool)
    overlaps = box_iou(truths, point_form(priors))  # [F, N]
    best_prior_overlap, best_prior = overlaps.max(1)  # [F]
    best_truth_overlap, best_truth = overlaps.max(0)  # [N]
    claim = best_prior_overlap >= min_best_overlap
    faces = torch.nonzero(claim).squeeze(1)
    best_truth_overlap[best_prior[faces]] = 2.0
    best_truth[best_prior[faces]] = faces
    if not claim.any():
        best_truth_overlap.zero_()
    labels = (best_truth_overlap >= threshold).long()
    loc = encode(truths[best_truth], priors, variances)
    landm = encode_landmarks(landmarks[best_truth], priors, variances)
    landm_weight = landmark_mask[best_truth] & labels.bool()
    return loc, labels, landm, landm_weight
