"""Losses that own their classifier weights (kind "classifier"): `forward(embeddings [B, D], labels [B]) -> scalar`."""

from __future__ import annotations

import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import Tensor, nn

from facekit.recognition.losses.base import DIST_EPS, float32
from facekit.recognition.losses.margins import Annealed, angular_psi


class SoftmaxLoss(nn.Module):
    """Cross-entropy over a linear layer with bias: the plain softmax baseline (e.g. Taigman et al., "DeepFace",
    CVPR 2014). forward(embeddings [B, D], labels [B]) -> scalar."""

    def __init__(self, *, embedding_size: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(embedding_size, num_classes)

    @float32
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

    @float32
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


class LSoftmax(nn.Module, Annealed):
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
        self._anneal(m, base, gamma, power, lambda_min)
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.xavier_uniform_(self.weight)

    @float32
    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        logits = F.linear(embeddings, self.weight)  # [B, C]
        index = labels.unsqueeze(1)
        norm = embeddings.norm(dim=1, keepdim=True) * self.weight.norm(dim=1)[index]  # [B, 1]
        cos = logits.gather(1, index) / norm.clamp(min=DIST_EPS)
        lam = self.lam
        target = norm * (lam * cos + angular_psi(cos, self.m)) / (1 + lam)
        return F.cross_entropy(logits.scatter(1, index, target), labels)
