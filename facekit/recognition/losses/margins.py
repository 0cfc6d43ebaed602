"""Margins on cosine logits (kind "margin"): the margin functions, [N] cosines -> [N] targets, and the heads that
apply one to each row's label column. A head owns no weights (they live in the Partial FC layer, which computes
cosine = normalize(x) @ normalize(W_sampled).T): `forward(cosine [B, C], labels [B], norms [B] | None) -> logits
[B, C]`, scaled; labels index the columns, -1 means "this row's class is not among these columns" (no margin, only
the scale); norms are the embeddings' L2 norms, which only the feature-norm heads (adaptive.py) read."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from facekit.recognition.losses.base import ACOS_EPS, float32


def check_integer_margin(m: int) -> None:
    """Refuse a multiplicative margin m that is not a positive integer (SphereFace, L-Softmax)."""
    if m != int(m) or m < 1:
        raise ValueError(f"the multiplicative margin m must be a positive integer, got {m}")


# --- margin functions on cosines: [N] -> [N] ---------------------------------------------------------------------


def angle(cos: Tensor) -> Tensor:
    """theta = acos(cos) in (0, pi), the input clamped to [-1 + eps, 1 - eps] so the gradient stays finite."""
    return torch.acos(cos.clamp(-1 + ACOS_EPS, 1 - ACOS_EPS))


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


class Annealed:
    """The annealed weight lambda of SphereFace and L-Softmax: lambda = anneal_lambda(step) as `set_step` advances
    (the trainer calls it each step), with an integer margin m."""

    def _anneal(self, m: int, base: float, gamma: float, power: float, lambda_min: float) -> None:
        check_integer_margin(m)
        self.m, self.base, self.gamma, self.power, self.lambda_min = int(m), base, gamma, power, lambda_min
        self.step = 0

    def set_step(self, step: int) -> None:
        self.step = step

    @property
    def lam(self) -> float:
        return anneal_lambda(self.step, base=self.base, gamma=self.gamma, power=self.power, lambda_min=self.lambda_min)


def with_target(
    cosine: Tensor, labels: Tensor, target: Callable[[Tensor], Tensor], into: Tensor | None = None
) -> Tensor:
    """`into` [B, C] (default `cosine`) with each row's label column replaced by target() of its cosine ([B, 1] ->
    [B, 1], so per-row margins broadcast); rows labelled -1 keep `into`'s value."""
    into = cosine if into is None else into
    index = labels.clamp(min=0).unsqueeze(1)
    picked = cosine.gather(1, index)
    return into.scatter(1, index, torch.where(labels.unsqueeze(1) >= 0, target(picked), into.gather(1, index)))


# --- the heads: cosine [B, C], labels [B] -> logits [B, C] -----------------------------------------------------


class NormFace(nn.Module):
    """s cos(theta): softmax on scaled cosines, no margin (Wang et al., "NormFace", ACM MM 2017).

    forward(cosine [B, C], labels [B], norms [B] | None) -> logits [B, C]. Subclasses change only the label column,
    via `target`.
    """

    def __init__(self, *, s: float = 64.0) -> None:
        super().__init__()
        self.s = s

    def target(self, cos: Tensor) -> Tensor:
        """The label column's cosines [N] -> their new values [N] (before the scale)."""
        return cos

    @float32
    def forward(self, cosine: Tensor, labels: Tensor, norms: Tensor | None = None) -> Tensor:
        return self.s * with_target(cosine, labels, self.target)

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


class SphereFace(NormFace, Annealed):
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
        self._anneal(m, base, gamma, power, lambda_min)

    def target(self, cos: Tensor) -> Tensor:
        lam = self.lam
        return (lam * cos + angular_psi(cos, self.m)) / (1 + lam)


def am_softmax(*, s: float = 30.0, m: float = 0.35) -> CosFace:
    """AM-Softmax (Wang et al., "Additive Margin Softmax for Face Verification", 2018): CosFace's formula with the
    paper's defaults s = 30, m = 0.35."""
    return CosFace(s=s, m=m)


class SubCenterArcFace(ArcFace):
    """Sub-center ArcFace (Deng et al., ECCV 2020): K centres per class, a class's cosine the largest of its K.

    The K centres live in the Partial FC layer (`centres_per_class` = k, which the trainer reads from here), so
    this head sees the pooled cosines [B, C] and applies ArcFace's margin. The paper's optional second stage (drop
    the non-dominant sub-centres and their noisy images) is not done.
    """

    def __init__(self, *, s: float = 64.0, m: float = 0.5, k: int = 3) -> None:
        super().__init__(s=s, m=m)
        if k != int(k) or k < 1:
            raise ValueError(f"k, the sub-centres per class, must be a positive integer, got {k}")
        self.centres_per_class = int(k)


class ElasticFace(NormFace):
    """ElasticFace (Boutros et al., CVPRW 2022): each row's margin drawn from N(m, std^2) at every step.

    kind "arc": s cos(theta + m_i) (ElasticFace-Arc, m 0.5, no fallback past pi, as upstream); kind "cos":
    s (cos(theta) - m_i) (ElasticFace-Cos, m 0.35). std 0.05, the paper's. The draws come from torch's global
    generator, one per row of the (global) batch, so every rank draws the same margins.
    """

    def __init__(self, *, kind: str, s: float, m: float, std: float) -> None:
        super().__init__(s=s)
        if kind not in ("arc", "cos"):
            raise ValueError(f"ElasticFace's kind is arc or cos, not {kind!r}")
        self.m, self.std, self.kind = m, std, kind

    @float32
    def forward(self, cosine: Tensor, labels: Tensor, norms: Tensor | None = None) -> Tensor:
        margin = torch.normal(mean=self.m, std=self.std, size=(len(labels), 1), device=cosine.device)
        if self.kind == "arc":
            return self.s * with_target(cosine, labels, lambda cos: torch.cos(angle(cos) + margin))
        return self.s * with_target(cosine, labels, lambda cos: cos - margin)


def elasticface_arc(*, s: float = 64.0, m: float = 0.5, std: float = 0.05) -> ElasticFace:
    """ElasticFace-Arc with the paper's defaults."""
    return ElasticFace(kind="arc", s=s, m=m, std=std)


def elasticface_cos(*, s: float = 64.0, m: float = 0.35, std: float = 0.05) -> ElasticFace:
    """ElasticFace-Cos with the paper's defaults."""
    return ElasticFace(kind="cos", s=s, m=m, std=std)


class CircleLoss(NormFace):
    """Circle loss, class-level form (Sun et al., CVPR 2020): gamma [a_p (cos - delta_p)] on the label column and
    gamma [a_n (cos - delta_n)] elsewhere, with a_p = relu(1 + m - cos) and a_n = relu(cos + m) held constant (no
    gradient), delta_p = 1 - m, delta_n = m; the paper's face settings m = 0.25, gamma = 256."""

    def __init__(self, *, m: float = 0.25, gamma: float = 256.0) -> None:
        super().__init__(s=gamma)
        self.m = m

    @float32
    def forward(self, cosine: Tensor, labels: Tensor, norms: Tensor | None = None) -> Tensor:
        m = self.m

        def positive(cos: Tensor) -> Tensor:
            return (1 + m - cos.detach()).clamp(min=0) * (cos - (1 - m))

        negatives = (cosine.detach() + m).clamp(min=0) * (cosine - m)
        return self.s * with_target(cosine, labels, positive, into=negatives)
