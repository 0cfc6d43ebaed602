"""Metric losses (kind "metric"): `forward(embeddings [B, D], labels [B]) -> scalar` over the pairs of the batch,
which must hold several images per identity (train with `facekit.recognition.sampler.PKSampler`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facekit.recognition.losses.base import DIST_EPS, float32

_FAR = 4.0  # the largest squared distance between unit vectors


def squared_distances(x: Tensor) -> Tensor:
    """Squared L2 distances [B, B] between the rows of x [B, D], clamped at 0."""
    sq = x.pow(2).sum(1)
    return (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * x @ x.T).clamp(min=0)


def distances(x: Tensor) -> Tensor:
    """L2 distances [B, B] between the rows of x [B, D]; the gradient stays finite at 0."""
    return squared_distances(x).clamp(min=DIST_EPS).sqrt()


def pair_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """(positive, negative) pair masks [B, B] of labels [B]; the diagonal is in neither."""
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)


class ContrastiveLoss(nn.Module):
    """Contrastive loss over all pairs of the batch (Hadsell, Chopra and LeCun, "Dimensionality Reduction by Learning
    an Invariant Mapping", CVPR 2006). forward(embeddings [B, D], labels [B]) -> scalar.

    On L2-normalised embeddings, d = ||x_i - x_j|| in [0, 2]: mean over pairs of d^2 / 2 (same identity) or
    max(0, margin - d)^2 / 2 (different identities).
    """

    def __init__(self, *, margin: float = 0.5) -> None:
        super().__init__()
        self.margin = margin

    @float32
    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        x = F.normalize(embeddings)
        pos, neg = pair_masks(labels)
        sq = squared_distances(x)
        loss = 0.5 * torch.where(pos, sq, F.relu(self.margin - sq.clamp(min=DIST_EPS).sqrt()).pow(2))
        return _masked_mean(loss, pos | neg)


TRIPLET_MINING = ("batch_hard", "semi_hard")


class TripletLoss(nn.Module):
    """Triplet loss max(0, d(a, p) - d(a, n) + margin) on squared L2 distances of L2-normalised embeddings
    (Schroff et al., "FaceNet", CVPR 2015). forward(embeddings [B, D], labels [B]) -> scalar.

    mining "batch_hard": per anchor, its farthest positive and nearest negative (Hermans et al., "In Defense of the
    Triplet Loss", 2017); "semi_hard": per anchor-positive pair, the nearest negative farther than the positive
    (FaceNet), else the farthest negative (memory B^3). soft_margin: softplus(d(a, p) - d(a, n)) instead of the
    hinge (Hermans).
    """

    def __init__(self, *, margin: float = 0.2, mining: str = "batch_hard", soft_margin: bool = False) -> None:
        super().__init__()
        if mining not in TRIPLET_MINING:
            raise ValueError(f"unknown triplet mining {mining!r}; valid: {', '.join(TRIPLET_MINING)}")
        self.margin, self.mining, self.soft_margin = margin, mining, soft_margin

    def hinge(self, gap: Tensor) -> Tensor:
        """gap = d(a, p) - d(a, n) -> per-triplet loss."""
        return F.softplus(gap) if self.soft_margin else F.relu(gap + self.margin)

    @float32
    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        d = squared_distances(F.normalize(embeddings))
        pos, neg = pair_masks(labels)
        if self.mining == "batch_hard":
            d_ap = d.masked_fill(~pos, 0).amax(1)  # [B]
            d_an = d.masked_fill(~neg, _FAR).amin(1)
            valid = pos.any(1) & neg.any(1)
            return _masked_mean(self.hinge(d_ap - d_an), valid)
        d_an = d.unsqueeze(1).expand(-1, len(d), -1)  # [anchor, positive, negative]
        farther = neg.unsqueeze(1) & (d_an > d.unsqueeze(2))
        semi_hard = d_an.masked_fill(~farther, _FAR).amin(2)  # [B, B]
        easiest = d.masked_fill(~neg, 0).amax(1, keepdim=True)  # [B, 1]
        chosen = torch.where(farther.any(2), semi_hard, easiest)
        valid = pos & neg.any(1, keepdim=True)
        return _masked_mean(self.hinge(d - chosen), valid)


class LiftedStructureLoss(nn.Module):
    """Smooth lifted structured loss (Oh Song et al., "Deep Metric Learning via Lifted Structured Feature
    Embedding", CVPR 2016). forward(embeddings [B, D], labels [B]) -> scalar.

    On L2 distances D of L2-normalised embeddings, for each positive pair (i, j):
    J_ij = log(sum_{k in N_i} exp(margin - D_ik) + sum_{l in N_j} exp(margin - D_jl)) + D_ij, and
    L = 1 / (2 |P|) sum max(0, J_ij)^2, the log-sum-exps computed stably.
    """

    def __init__(self, *, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = margin

    @float32
    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        d = distances(F.normalize(embeddings))
        pos, neg = pair_masks(labels)
        lowest = torch.finfo(d.dtype).min  # not -inf: logaddexp(-inf, -inf) has a NaN gradient
        negatives = (self.margin - d).masked_fill(~neg, lowest).logsumexp(1)  # [B]
        j = torch.logaddexp(negatives.unsqueeze(1), negatives.unsqueeze(0)) + d
        return 0.5 * _masked_mean(F.relu(j).pow(2), pos)


def distance_weighted_negatives(
    d: Tensor, negative: Tensor, num: int, *, dim: int, cutoff: float, nonzero_loss_cutoff: float
) -> Tensor:
    """Sample `num` negatives per anchor [B, num] with probability 1 / q(d) (Wu et al. 2017).

    d: L2 distances [B, B] of unit vectors in `dim` dimensions, whose density is q(d) ~ d^(dim - 2)
    (1 - d^2 / 4)^((dim - 3) / 2); d is clipped below at `cutoff`, negatives at `nonzero_loss_cutoff` or farther
    (no loss) are never drawn. A row with nothing to draw samples its negatives uniformly.
    """
    dc = d.clamp(min=cutoff)
    log_weight = (2 - dim) * dc.log() - (dim - 3) / 2 * (1 - dc.pow(2) / 4).clamp(min=DIST_EPS).log()
    allowed = negative & (d < nonzero_loss_cutoff)
    weight = log_weight.masked_fill(~allowed, -math.inf).softmax(1)
    uniform = torch.where(negative.any(1, keepdim=True), negative.float(), torch.ones_like(d))
    return torch.multinomial(torch.where(allowed.any(1, keepdim=True), weight, uniform), num, replacement=True)


class MarginLoss(nn.Module):
    """Margin loss with distance-weighted sampling (Wu et al., "Sampling Matters in Deep Embedding Learning",
    ICCV 2017). forward(embeddings [B, D], labels [B]) -> scalar.

    On L2 distances of L2-normalised embeddings, each anchor-positive pair gives max(0, alpha + D_ap - beta) and one
    negative, drawn by `distance_weighted_negatives`, gives max(0, alpha + beta - D_an); the sum is divided by the
    number of nonzero terms. beta (init 1.2) is learnt, one per class (`per_class_beta`, the paper's beta_class) or
    one in all: it is a parameter, so put this module's parameters in the optimiser (the reference code gives beta
    its own learning rate, 0.1).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        alpha: float = 0.2,
        beta: float = 1.2,
        per_class_beta: bool = True,
        cutoff: float = 0.5,
        nonzero_loss_cutoff: float = 1.4,
    ) -> None:
        super().__init__()
        self.alpha, self.cutoff, self.nonzero_loss_cutoff = alpha, cutoff, nonzero_loss_cutoff
        self.per_class_beta = per_class_beta
        self.beta = nn.Parameter(torch.full((num_classes if per_class_beta else 1,), float(beta)))

    @float32
    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        d = distances(F.normalize(embeddings))
        pos, neg = pair_masks(labels)
        beta = (self.beta[labels] if self.per_class_beta else self.beta.expand(len(labels))).unsqueeze(1)  # [B, 1]
        num_pos = pos.sum(1, keepdim=True)  # [B, 1]: each anchor draws as many negatives as it has positives
        with torch.no_grad():
            drawn = distance_weighted_negatives(
                d,
                neg,
                max(int(num_pos.max()), 1),
                dim=embeddings.shape[1],
                cutoff=self.cutoff,
                nonzero_loss_cutoff=self.nonzero_loss_cutoff,
            )
            slots = torch.arange(drawn.shape[1], device=d.device) < num_pos  # [B, num]
            slots &= neg.any(1, keepdim=True)
        pos_loss = F.relu(self.alpha + d - beta) * pos
        neg_loss = F.relu(self.alpha + beta - d.gather(1, drawn)) * slots
        terms = (pos_loss > 0).sum() + (neg_loss > 0).sum()
        return (pos_loss.sum() + neg_loss.sum()) / terms.clamp(min=1)
