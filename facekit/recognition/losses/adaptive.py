"""Margin heads that adapt to the batch (kind "margin", margins.py's contract): the margin follows each embedding's
norm (AdaFace, MagFace), the non-target logits of hard negatives are re-weighted (CurricularFace, MV-Softmax), or
the scale follows the logits (AdaCos).

Their statistics are over the global batch: Partial FC hands every rank all rows, and ranks.py sums what lives on
one rank's columns, so every rank holds the same running values. Running values are buffers, saved with the loss's
state dict in every checkpoint, so --resume continues them exactly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from facekit.recognition.losses.base import float32
from facekit.recognition.losses.margins import NormFace, angle, arcface_target, with_target
from facekit.recognition.losses.ranks import label_cosines, sum_over_ranks


def _need_norms(head: str, norms: Tensor | None) -> Tensor:
    if norms is None:
        raise ValueError(f"{head} needs the embeddings' norms: forward(cosine, labels, norms)")
    return norms


class AdaFace(NormFace):
    """AdaFace (Kim et al., CVPR 2022): a margin that adapts to image quality, read from the feature norm.

    z = clip(h (||x|| - mu) / (sigma + eps), -1, 1), with mu, sigma the norms' mean and standard deviation kept as an
    exponential moving average (t_alpha per step; the paper's momentum 0.99, i.e. t_alpha 0.01; upstream's head
    defaults to t_alpha 1.0, plain batch statistics). The label column becomes s (cos(theta - m z) - (m + m z)),
    theta - m z kept within [eps, pi - eps]; every cosine is first clamped to [-1 + eps, 1 - eps], eps = 1e-3.
    """

    EPS = 1e-3

    def __init__(self, *, s: float = 64.0, m: float = 0.4, h: float = 0.333, t_alpha: float = 0.01) -> None:
        super().__init__(s=s)
        self.m, self.h, self.t_alpha = m, h, t_alpha
        self.register_buffer("batch_mean", torch.tensor(20.0))
        self.register_buffer("batch_std", torch.tensor(100.0))

    @float32
    def forward(self, cosine: Tensor, labels: Tensor, norms: Tensor | None = None) -> Tensor:
        eps, a = self.EPS, self.t_alpha
        cosine = cosine.clamp(-1 + eps, 1 - eps)
        safe = _need_norms("AdaFace", norms).detach().clip(0.001, 100)
        with torch.no_grad():
            self.batch_mean.copy_(safe.mean() * a + (1 - a) * self.batch_mean)
            if len(safe) > 1:  # one row has no spread: keep the last estimate
                self.batch_std.copy_(safe.std() * a + (1 - a) * self.batch_std)
        z = ((safe - self.batch_mean) / (self.batch_std + eps) * self.h).clip(-1, 1).unsqueeze(1)

        def target(cos: Tensor) -> Tensor:
            return torch.cos((torch.acos(cos) - self.m * z).clip(eps, math.pi - eps)) - (self.m + self.m * z)

        return self.s * with_target(cosine, labels, target)


class MagFace(NormFace):
    """MagFace (Meng et al., CVPR 2021): ArcFace with a margin that grows with the feature magnitude, plus a
    regulariser that rewards large magnitudes.

    a = clamp(||x||, l_a, u_a); m(a) = l_margin + (u_margin - l_margin) (a - l_a) / (u_a - l_a); the label column
    becomes s cos(theta + m(a)) (ArcFace's fallback past pi); `penalty` = lambda_g mean(a / u_a^2 + 1 / a), which
    Partial FC adds to the loss. Defaults are the paper's (s 64, lambda_g 35; FaceX-Zoo uses s 32, lambda 20, and
    falls back to cos(theta) past pi).
    """

    def __init__(
        self,
        *,
        s: float = 64.0,
        l_a: float = 10.0,
        u_a: float = 110.0,
        l_margin: float = 0.45,
        u_margin: float = 0.8,
        lambda_g: float = 35.0,
    ) -> None:
        super().__init__(s=s)
        self.l_a, self.u_a, self.l_margin, self.u_margin, self.lambda_g = l_a, u_a, l_margin, u_margin, lambda_g

    def margin(self, norms: Tensor) -> Tensor:
        """[B] norms -> [B] margins, linear in the clamped norm."""
        a = norms.clamp(self.l_a, self.u_a)
        return (self.u_margin - self.l_margin) / (self.u_a - self.l_a) * (a - self.l_a) + self.l_margin

    def penalty(self, norms: Tensor) -> Tensor:
        """lambda_g mean(g(a)), g(a) = a / u_a^2 + 1 / a: [B] norms -> scalar."""
        a = norms.float().clamp(self.l_a, self.u_a)
        return self.lambda_g * (a / self.u_a**2 + 1 / a).mean()

    @float32
    def forward(self, cosine: Tensor, labels: Tensor, norms: Tensor | None = None) -> Tensor:
        m = self.margin(_need_norms("MagFace", norms)).unsqueeze(1)

        def target(cos: Tensor) -> Tensor:
            return torch.where(cos > torch.cos(math.pi - m), torch.cos(angle(cos) + m), cos - m * torch.sin(m))

        return self.s * with_target(cosine, labels, target)


class CurricularFace(NormFace):
    """CurricularFace (Huang et al., CVPR 2020): ArcFace on the label column, and every other column whose cosine
    exceeds cos(theta_y + m) (a hard negative) becomes cos (t + cos).

    t follows the mean label cosine of each batch, t <- 0.01 mean + 0.99 t (momentum), updated before use; a buffer.
    """

    def __init__(self, *, s: float = 64.0, m: float = 0.5, momentum: float = 0.01) -> None:
        super().__init__(s=s)
        self.m, self.momentum = m, momentum
        self.register_buffer("t", torch.zeros(()))

    @float32
    def forward(self, cosine: Tensor, labels: Tensor, norms: Tensor | None = None) -> Tensor:
        own = label_cosines(cosine, labels)
        with torch.no_grad():
            self.t.copy_(own.mean() * self.momentum + (1 - self.momentum) * self.t)
        hard = cosine > torch.cos(angle(own) + self.m).unsqueeze(1)
        modulated = torch.where(hard, cosine * (self.t + cosine), cosine)
        return self.s * with_target(cosine, labels, lambda cos: arcface_target(cos, self.m), into=modulated)


class MVSoftmax(NormFace):
    """MV-Softmax (Wang et al., AAAI 2020): a column misclassified against the margined label cosine (cos > the
    label column's margined value) becomes (1 + t) cos + t, emphasising those vectors.

    am true (MV-AM-Softmax): label column cos - m where cos > m; false (MV-Arc-Softmax): cos(theta + m) where
    cos > 0. Defaults are the paper's (m 0.35, t 0.2, s 32; FaceX-Zoo's t is 0.12).
    """

    def __init__(self, *, s: float = 32.0, m: float = 0.35, t: float = 0.2, am: bool = True) -> None:
        super().__init__(s=s)
        self.m, self.t, self.am = m, t, am

    def margined(self, cos: Tensor) -> Tensor:
        return cos - self.m if self.am else torch.cos(angle(cos) + self.m)

    def target(self, cos: Tensor) -> Tensor:
        return torch.where(cos > (self.m if self.am else 0.0), self.margined(cos), cos)

    @float32
    def forward(self, cosine: Tensor, labels: Tensor, norms: Tensor | None = None) -> Tensor:
        misclassified = cosine > self.margined(label_cosines(cosine, labels)).unsqueeze(1)
        weighted = torch.where(misclassified, (1 + self.t) * cosine + self.t, cosine)
        return self.s * with_target(cosine, labels, self.target, into=weighted)


class AdaCos(nn.Module):
    """AdaCos (Zhang et al., CVPR 2019): no margin, and a scale s that adapts to the batch, no hyper-parameter.

    s starts at sqrt(2) log(C - 1); each step, before scaling, s <- log(B_avg) / cos(min(pi / 4, median theta_y)),
    B_avg the sum of exp(s cos) over every non-label column divided by the batch size. A buffer. With
    --sample-rate below 1 the sum runs over the sampled centres only.
    """

    def __init__(self, *, num_classes: int) -> None:
        super().__init__()
        if num_classes < 3:
            raise ValueError(f"AdaCos needs at least 3 classes, got {num_classes}")
        self.register_buffer("scale", torch.tensor(math.sqrt(2) * math.log(num_classes - 1)))

    @float32
    def forward(self, cosine: Tensor, labels: Tensor, norms: Tensor | None = None) -> Tensor:
        with torch.no_grad():
            others = with_target(torch.exp(self.scale * cosine), labels, torch.zeros_like)
            b_avg = sum_over_ranks(others.sum()) / len(labels)
            theta = angle(label_cosines(cosine, labels)).median()
            self.scale.copy_(torch.log(b_avg) / torch.cos(torch.clamp(theta, max=math.pi / 4)))
        return self.scale * cosine
