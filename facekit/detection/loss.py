"""RetinaFace's MultiBox loss: smooth-L1 boxes, cross-entropy classes with hard negative mining, smooth-L1
landmarks for the positive anchors of faces that have landmarks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from facekit.detection.box_utils import match


class MultiBoxLoss(nn.Module):
    """Loss parts (box, class, landmark), each averaged over the positives that take part in it.

    overlap: IoU for a positive anchor; neg_pos: hard negatives kept per positive; weights: (box, class, landmark).
    """

    def __init__(
        self,
        *,
        overlap: float = 0.35,
        neg_pos: int = 7,
        variances: Sequence[float] = (0.1, 0.2),
        weights: tuple[float, float, float] = (2.0, 1.0, 1.0),
    ) -> None:
        super().__init__()
        self.overlap = overlap
        self.neg_pos = neg_pos
        self.variances = tuple(variances)
        self.weights = weights

    def targets(self, targets: list, priors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Match every image's faces to the priors: loc [B, N, 4], labels [B, N], landm [B, N, 10], landm_w [B, N]."""
        parts = [
            match(t.boxes, t.landmarks, t.landmark_mask, priors, threshold=self.overlap, variances=self.variances)
            for t in targets
        ]
        return tuple(torch.stack(p) for p in zip(*parts, strict=True))

    def forward(
        self, predictions: tuple[torch.Tensor, torch.Tensor, torch.Tensor], priors: torch.Tensor, targets: list
    ) -> dict[str, torch.Tensor]:
        """predictions: (loc [B, N, 4], logits [B, N, 2], landmarks [B, N, 10]); priors [N, 4]; targets: B Targets.

        Returns {"loss", "box", "class", "landmark"}; loss = weighted sum.
        """
        loc_p, logits, landm_p = predictions
        with torch.no_grad():
            loc_t, labels, landm_t, landm_w = (t.to(loc_p.device) for t in self.targets(targets, priors.cpu()))
        pos = labels > 0  # [B, N]
        num_pos = pos.sum(1, keepdim=True)
        n = num_pos.sum().clamp(min=1).float()
        box = F.smooth_l1_loss(loc_p[pos].float(), loc_t[pos], reduction="sum") / n
        landmark = F.smooth_l1_loss(landm_p[landm_w].float(), landm_t[landm_w], reduction="sum") / landm_w.sum().clamp(
            min=1
        )
        with torch.no_grad():  # hard negative mining on the background loss
            background = torch.logsumexp(logits.float(), -1) - logits[..., 0].float()
            background[pos] = 0
            rank = background.argsort(1, descending=True).argsort(1)
            neg = rank < (self.neg_pos * num_pos).clamp(max=pos.shape[1] - 1)
        chosen = pos | neg
        cls = F.cross_entropy(logits[chosen].float(), labels[chosen], reduction="sum") / n
        w_box, w_cls, w_landm = self.weights
        return {"loss": w_box * box + w_cls * cls + w_landm * landmark, "box": box, "class": cls, "landmark": landmark}
