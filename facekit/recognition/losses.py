"""Every loss of the face recognition literature, in one registry: `--loss NAME` picks one.

Three kinds, three contracts:
- "margin": a margin on cosine logits, no weights of its own (they live in the Partial FC layer, which computes
  cosine = normalize(x) @ normalize(W_sampled).T). `forward(cosine [B, C], labels [B]) -> logits [B, C]`, scaled;
  labels index the columns, -1 means "this row's class is not among these columns" (no margin, only the scale).
- "classifier": owns its weights. `forward(embeddings [B, D], labels [B]) -> scalar loss`.
- "metric": `forward(embeddings [B, D], labels [B]) -> scalar loss` over the pairs of the batch, which must hold
  several images per identity (train with `facekit.recognition.sampler.PKSampler`).

Modules whose margin anneals expose `set_step(step)`; the trainer calls it every step. Everything runs in float32
with autocast off, whatever the caller's precision.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import Tensor, nn

ParamValue = float | int | bool | str

_ACOS_EPS = 1e-7  # acos' is infinite at +-1
_DIST_EPS = 1e-12  # sqrt' is infinite at 0
_FAR = 4.0  # the largest squared distance between unit vectors


@dataclass(frozen=True)
class LossSpec:
    """A registered loss: its kind, its builder, its hyper-parameters with their defaults and a --help line."""

    kind: Literal["margin", "classifier", "metric"]
    build: Callable[..., nn.Module]
    defaults: dict[str, ParamValue]
    needs_pk_sampler: bool = False
    doc: str = ""


LOSSES: dict[str, LossSpec] = {}

_SIZES = ("embedding_size", "num_classes")


def register_loss(name: str, spec: LossSpec) -> None:
    """Add `spec` as `name`. `build` takes the hyper-parameters by keyword, plus `embedding_size` and/or
    `num_classes` when its signature names them."""
    if name in LOSSES:
        raise ValueError(f"loss {name!r} is already registered")
    accepted = inspect.signature(spec.build).parameters
    unknown = [key for key in spec.defaults if key not in accepted]
    if unknown:
        raise ValueError(f"loss {name!r}: builder does not take {', '.join(unknown)}")
    LOSSES[name] = spec


def create_loss(name: str, *, embedding_size: int, num_classes: int, **params: ParamValue) -> nn.Module:
    """Build loss `name` with its defaults overridden by `params`."""
    spec = LOSSES.get(name)
    if spec is None:
        raise ValueError(f"unknown loss {name!r}; known: {', '.join(sorted(LOSSES))}")
    unknown = sorted(set(params) - set(spec.defaults))
    if unknown:
        valid = ", ".join(spec.defaults) or "none"
        raise ValueError(f"loss {name!r} has no parameter {', '.join(unknown)}; valid: {valid}")
    sizes = {"embedding_size": embedding_size, "num_classes": num_classes}
    accepted = inspect.signature(spec.build).parameters
    return spec.build(**{k: v for k, v in sizes.items() if k in accepted}, **{**spec.defaults, **params})


def _float32(forward: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """Run `forward(self, x, labels)` on float32 `x` with autocast off: margins and distances need the bits."""

    @functools.wraps(forward)
    def run(self: nn.Module, x: Tensor, labels: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return forward(self, x.float(), labels)

    return run


def _check_integer_margin(m: int) -> None:
    if m != int(m) or m < 1:
        raise ValueError(f"the multiplicative margin m must be a positive integer, got {m}")


# --- margin functions on cosines: [N] -> [N] ---------------------------------------------------------------------


def angle(cos: Tensor) -> Tensor:
    """theta = acos(cos) in (0, pi), the input clamped to [-1 + eps, 1 - eps] so the gradient stays finite."""
    return torch.acos(cos.clamp(-1 + _ACOS_EPS, 1 - _ACOS_EPS))


def cosface_target(cos: Tensor, m: float) -> Tensor:
    """cos(theta) - m."""
    return cos - m


def arcface_target(cos: Tensor, m: float) -> Tensor:
    """cos(theta + m) while theta + m <= pi, else cos(theta) - m sin(m).

    Past pi, cos(theta + m) would rise again with theta; insightface's fallback (th = cos(pi - m), mm = m sin(m))
    keeps the target decreasing.
    """
    return torch.where(cos > math.cos(math.pi - m), torch.cos(angle(cos) + m), cos - m * math.sin(m))


def combined_target(cos: Tensor, m1: float, m2: float, m3: float) -> Tensor:
    """cos(m1 theta + m2) - m3 (insightface's combined margin; no fallback past pi, as there)."""
    return torch.cos(m1 * angle(cos) + m2) - m3


def angular_psi(cos: Tensor, m: int) -> Tensor:
    """psi(theta) = (-1)^k cos(m theta) - 2k for theta in [k pi / m, (k + 1) pi / m]: SphereFace and L-Softmax's
    multiplicative margin, monotonically decreasing from 1 at theta = 0 to 1 - 2m at theta = pi."""
    theta = angle(cos)
    k = torch.floor(theta * m / math.pi).clamp(max=m - 1)
    sign = 1 - 2 * torch.remainder(k, 2)
    return sign * torch.cos(m * theta) - 2 * k


def anneal_lambda(step: int, *, base: float, gamma: float, power: float, lambda_min: float) -> float:
    """SphereFace / L-Softmax annealing weight: max(lambda_min, base (1 + gamma step)^-power)."""
    return max(lambda_min, base * (1 + gamma * step) ** -power)


def _with_target(cosine: Tensor, labels: Tensor, target: Callable[[Tensor], Tensor]) -> Tensor:
    """`cosine` [B, C] with target() applied to each row's label column; rows labelled -1 come back unchanged."""
    index = labels.clamp(min=0).unsqueeze(1)
    picked = cosine.gather(1, index)
    return cosine.scatter(1, index, torch.where(labels.unsqueeze(1) >= 0, target(picked), picked))


# --- kind "margin" ------------------------------------------------------------------------------------------------


class NormFace(nn.Module):
    """s cos(theta): softmax on scaled cosines, no margin (Wang et al., "NormFace", ACM MM 2017).

    forward(cosine [B, C], labels [B]) -> logits [B, C]. Subclasses change only the label column, via `target`.
    """

    def __init__(self, *, s: float = 64.0) -> None:
        super().__init__()
        self.s = s

    def target(self, cos: Tensor) -> Tensor:
        """The label column's cosines [N] -> their new values [N] (before the scale)."""
        return cos

    @_float32
    def forward(self, cosine: Tensor, labels: Tensor) -> Tensor:
        return self.s * _with_target(cosine, labels, self.target)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in vars(self).items() if not k.startswith("_") and k != "training")


class CosFace(NormFace):
    """s (cos(theta) - m): additive cosine margin (Wang et al., "CosFace", CVPR 2018; Wang et al., "Additive Margin
    Softmax", 2018)."""

    def __init__(self, *, s: float = 64.0, m: float = 0.4) -> None:
        super().__init__(s=s)
        self.m = m

    def target(self, cos: Tensor) -> Tensor:
        return cosface_target(cos, self.m)


class ArcFace(NormFace):
    """s cos(theta + m): additive angular margin (Deng et al., "ArcFace", CVPR 2019).

    Where theta + m > pi the target becomes s (cos(theta) - m sin(m)), insightface's fallback.
    """

    def __init__(self, *, s: float = 64.0, m: float = 0.5) -> None:
        super().__init__(s=s)
        self.m = m

    def target(self, cos: Tensor) -> Tensor:
        return arcface_target(cos, self.m)


class CombinedMargin(NormFace):
    """s (cos(m1 theta + m2) - m3): SphereFace's, ArcFace's and CosFace's margins in one formula (Deng et al.,
    "ArcFace", CVPR 2019, section 3.2; insightface's defaults m1 = 1, m2 = 0.3, m3 = 0.2)."""

    def __init__(self, *, s: float = 64.0, m1: float = 1.0, m2: float = 0.3, m3: float = 0.2) -> None:
        super().__init__(s=s)
        self.m1, self.m2, self.m3 = m1, m2, m3

    def target(self, cos: Tensor) -> Tensor:
        return combined_target(cos, self.m1, self.m2, self.m3)


class SphereFace(NormFace):
    """s (lambda cos(theta) + psi(theta)) / (1 + lambda): multiplicative angular margin, annealed (Liu et al.,
    "SphereFace", CVPR 2017).

    psi(theta) = (-1)^k cos(m theta) - 2k on [k pi / m, (k + 1) pi / m]; lambda = max(lambda_min,
    base (1 + gamma step)^-power) falls from `base` (plain cosine) to `lambda_min` as `set_step` advances.
    The paper scales by the feature norm ||x||; on Partial FC's cosines a fixed scale s stands in for it (64, as
    for the other margins, so that changing --loss changes only the margin).
    """

    def __init__(
        self,
        *,
        s: float = 64.0,
        m: int = 4,
        base: float = 1000.0,
        gamma: float = 0.12,
        power: float = 1.0,
        lambda_min: float = 5.0,
    ) -> None:
        super().__init__(s=s)
        _check_integer_margin(m)
        self.m, self.base, self.gamma, self.power, self.lambda_min = int(m), base, gamma, power, lambda_min
        self.step = 0

    def set_step(self, step: int) -> None:
        self.step = step

    @property
    def lam(self) -> float:
        return anneal_lambda(self.step, base=self.base, gamma=self.gamma, power=self.power, lambda_min=self.lambda_min)

    def target(self, cos: Tensor) -> Tensor:
        lam = self.lam
        return (lam * cos + angular_psi(cos, self.m)) / (1 + lam)


# --- kind "classifier" --------------------------------------------------------------------------------------------


class SoftmaxLoss(nn.Module):
    """Cross-entropy over a linear layer with bias: the plain softmax baseline (e.g. Taigman et al., "DeepFace",
    CVPR 2014). forward(embeddings [B, D], labels [B]) -> scalar."""

    def __init__(self, *, embedding_size: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(embedding_size, num_classes)

    @_float32
    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(self.fc(embeddings), labels)


class CenterLoss(SoftmaxLoss):
    """Softmax + lambda_c / 2 mean ||x_i - c_{y_i}||^2 (Wen et al., "A Discriminative Feature Learning Approach for
    Deep Face Recognition", ECCV 2016). forward(embeddings [B, D], labels [B]) -> scalar.

    The centres [C, D] are a buffer, not parameters: in training mode each forward applies the paper's rule
    (Algorithm 1) after computing the loss, c_j -= alpha sum_{i: y_i = j} (c_j - x_i) / (1 + n_j), summed over all
    processes when torch.distributed is initialised so that every rank keeps the same centres.
    """

    def __init__(self, *, embedding_size: int, num_classes: int, lambda_c: float = 0.003, alpha: float = 0.5) -> None:
        super().__init__(embedding_size=embedding_size, num_classes=num_classes)
        self.lambda_c, self.alpha = lambda_c, alpha
        self.register_buffer("centers", torch.zeros(num_classes, embedding_size))

    @_float32
    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        softmax = F.cross_entropy(self.fc(embeddings), labels)
        center = 0.5 * (embeddings - self.centers[labels]).pow(2).sum(1).mean()
        if self.training:
            self.update_centers(embeddings.detach(), labels)
        return softmax + self.lambda_c * center

    @torch.no_grad()
    def update_centers(self, embeddings: Tensor, labels: Tensor) -> None:
        """The paper's centre update from a batch: embeddings [B, D], labels [B]."""
        delta = torch.zeros_like(self.centers).index_add_(0, labels, self.centers[labels] - embeddings)
        counts = torch.zeros_like(self.centers[:, 0]).index_add_(0, labels, torch.ones_like(embeddings[:, 0]))
        if torch_dist.is_available() and torch_dist.is_initialized():
            torch_dist.all_reduce(delta)
            torch_dist.all_reduce(counts)
        self.centers -= self.alpha * delta / (1 + counts.unsqueeze(1))


class LSoftmax(nn.Module):
    """Large-Margin Softmax (Liu et al., "Large-Margin Softmax Loss for Convolutional Neural Networks", ICML 2016).
    forward(embeddings [B, D], labels [B]) -> scalar.

    Logits ||W_j|| ||x|| cos(theta_j), no bias; the label column becomes ||W_y|| ||x|| (lambda cos(theta) +
    psi(theta)) / (1 + lambda) with psi as in SphereFace (integer m) and lambda annealed by `set_step` with the
    official code's schedule (base 1000, gamma 2.5e-5, power 35, lambda_min 0).
    """

    def __init__(
        self,
        *,
        embedding_size: int,
        num_classes: int,
        m: int = 2,
        base: float = 1000.0,
        gamma: float = 0.000025,
        power: float = 35.0,
        lambda_min: float = 0.0,
    ) -> None:
        super().__init__()
        _check_integer_margin(m)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.xavier_uniform_(self.weight)
        self.m, self.base, self.gamma, self.power, self.lambda_min = int(m), base, gamma, power, lambda_min
        self.step = 0

    def set_step(self, step: int) -> None:
        self.step = step

    @property
    def lam(self) -> float:
        return anneal_lambda(self.step, base=self.base, gamma=self.gamma, power=self.power, lambda_min=self.lambda_min)

    @_float32
    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        logits = F.linear(embeddings, self.weight)  # [B, C]
        index = labels.unsqueeze(1)
        norm = embeddings.norm(dim=1, keepdim=True) * self.weight.norm(dim=1)[index]  # [B, 1]
        cos = logits.gather(1, index) / norm.clamp(min=_DIST_EPS)
        lam = self.lam
        target = norm * (lam * cos + angular_psi(cos, self.m)) / (1 + lam)
        return F.cross_entropy(logits.scatter(1, index, target), labels)


# --- kind "metric" ------------------------------------------------------------------------------------------------


def squared_distances(x: Tensor) -> Tensor:
    """Squared L2 distances [B, B] between the rows of x [B, D], clamped at 0."""
    sq = x.pow(2).sum(1)
    return (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * x @ x.T).clamp(min=0)


def distances(x: Tensor) -> Tensor:
    """L2 distances [B, B] between the rows of x [B, D]; the gradient stays finite at 0."""
    return squared_distances(x).clamp(min=_DIST_EPS).sqrt()


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

    @_float32
    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        x = F.normalize(embeddings)
        pos, neg = pair_masks(labels)
        sq = squared_distances(x)
        loss = 0.5 * torch.where(pos, sq, F.relu(self.margin - sq.clamp(min=_DIST_EPS).sqrt()).pow(2))
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

    @_float32
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

    @_float32
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
    log_weight = (2 - dim) * dc.log() - (dim - 3) / 2 * (1 - dc.pow(2) / 4).clamp(min=_DIST_EPS).log()
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

    @_float32
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


# --- the registry ---------------------------------------------------------------------------------------------------

register_loss("normface", LossSpec("margin", NormFace, {"s": 64.0}, doc="NormFace: s cos(theta), no margin"))
register_loss(
    "cosface", LossSpec("margin", CosFace, {"s": 64.0, "m": 0.4}, doc="CosFace / AM-Softmax: s (cos(theta) - m)")
)
register_loss(
    "arcface", LossSpec("margin", ArcFace, {"s": 64.0, "m": 0.5}, doc="ArcFace: s cos(theta + m), additive angle")
)
register_loss(
    "sphereface",
    LossSpec(
        "margin",
        SphereFace,
        {"s": 64.0, "m": 4, "base": 1000.0, "gamma": 0.12, "power": 1.0, "lambda_min": 5.0},
        doc="SphereFace: s psi(m theta), multiplicative angle, annealed",
    ),
)
register_loss(
    "combined",
    LossSpec(
        "margin",
        CombinedMargin,
        {"s": 64.0, "m1": 1.0, "m2": 0.3, "m3": 0.2},
        doc="combined margin: s (cos(m1 theta + m2) - m3)",
    ),
)
register_loss("softmax", LossSpec("classifier", SoftmaxLoss, {}, doc="softmax: linear layer + cross-entropy"))
register_loss(
    "lsoftmax",
    LossSpec(
        "classifier",
        LSoftmax,
        {"m": 2, "base": 1000.0, "gamma": 0.000025, "power": 35.0, "lambda_min": 0.0},
        doc="L-Softmax: ||W|| ||x|| psi(m theta), annealed",
    ),
)
register_loss(
    "center",
    LossSpec(
        "classifier", CenterLoss, {"lambda_c": 0.003, "alpha": 0.5}, doc="softmax + center loss (centres kept by rule)"
    ),
)
register_loss(
    "contrastive",
    LossSpec(
        "metric",
        ContrastiveLoss,
        {"margin": 0.5},
        needs_pk_sampler=True,
        doc="contrastive: all pairs, hinge on distance",
    ),
)
register_loss(
    "triplet",
    LossSpec(
        "metric",
        TripletLoss,
        {"margin": 0.2, "mining": "batch_hard", "soft_margin": False},
        needs_pk_sampler=True,
        doc="triplet (FaceNet): batch_hard or semi_hard mining, optional soft margin",
    ),
)
register_loss(
    "lifted",
    LossSpec(
        "metric", LiftedStructureLoss, {"margin": 1.0}, needs_pk_sampler=True, doc="lifted structured loss (smooth)"
    ),
)
register_loss(
    "margin_loss",
    LossSpec(
        "metric",
        MarginLoss,
        {"alpha": 0.2, "beta": 1.2, "per_class_beta": True, "cutoff": 0.5, "nonzero_loss_cutoff": 1.4},
        needs_pk_sampler=True,
        doc="margin loss with distance-weighted sampling (learnt beta)",
    ),
)
