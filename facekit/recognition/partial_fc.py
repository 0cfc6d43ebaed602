"""Partial FC (An et al., "Partial FC: Training 10 Million Identities on a Single Machine", 2021).

The class centres W [C, D] are sharded across the ranks (rank r holds a contiguous block of classes); each step
every rank sees the embeddings of the whole global batch, samples a subset of its centres (all classes present in
the batch, plus random others up to `sample_rate` x its share), computes cosine logits, lets a margin function
shape them, and a distributed softmax cross-entropy combines the shards. With one process and sample_rate 1.0 this
is an ordinary cosine classifier.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from facekit.recognition.losses import ranks
from facekit.recognition.losses.ranks import mean_over_ranks


def shard_bounds(num_classes: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, end) of the classes rank `rank` holds: contiguous blocks, the first ones one larger."""
    base, extra = divmod(num_classes, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


class _GatherEmbeddings(torch.autograd.Function):
    """All-gather [B, D] -> [world * B, D]. Backward sums each sample's gradient over the ranks and multiplies
    by the world size, so that DDP's gradient averaging of the backbone yields the single-process gradient."""

    @staticmethod
    def forward(ctx, local: torch.Tensor) -> torch.Tensor:
        rank, world = ranks.world()
        ctx.rank, ctx.world, ctx.batch = rank, world, local.shape[0]
        parts = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(parts, local.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # gloo has no reduce_scatter: reduce everything, keep our rows
        return grad[ctx.rank * ctx.batch : (ctx.rank + 1) * ctx.batch] * ctx.world


class _DistCrossEntropy(torch.autograd.Function):
    """Mean softmax cross-entropy over classes split across ranks. logits [B, C_local]; labels [B] index the local
    columns, -1 where the target lives on another rank. Computed as log-sum-exp minus the label logit, so a loss
    of any size stays exact (no probability underflows to a floor)."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        _, world = ranks.world()
        logits = logits.float()
        top = logits.max(1, keepdim=True).values
        if world > 1:
            dist.all_reduce(top, dist.ReduceOp.MAX)
        exp = (logits - top).exp()
        total = exp.sum(1, keepdim=True)
        if world > 1:
            dist.all_reduce(total)
        here = labels >= 0
        target = torch.zeros(len(labels), device=logits.device)
        target[here] = logits[here, labels[here]] - top[here, 0]
        if world > 1:
            dist.all_reduce(target)
        ctx.save_for_backward(exp / total, labels)
        return (total.squeeze(1).log() - target).mean()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        prob, labels = ctx.saved_tensors
        here = labels >= 0
        g = prob.clone()
        g[here, labels[here]] -= 1
        return g * (grad / len(labels)), None


_INIT_CHUNK = 65536  # rows drawn at a time; part of the definition of the initial matrix


def initial_centres(num_classes: int, dim: int, start: int, end: int, seed: int) -> torch.Tensor:
    """Rows [start, end) of one seeded N(0, 0.01) draw of the whole [C, D] matrix, whatever the number of shards
    (drawn in chunks, so no rank ever holds the whole matrix)."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for first in range(0, end, _INIT_CHUNK):
        block = torch.normal(0.0, 0.01, (min(_INIT_CHUNK, num_classes - first), dim), generator=generator)
        rows.append(block[max(start - first, 0) : max(end - first, 0)])
    return torch.cat(rows)


class PartialFC(nn.Module):
    """Sharded, sampled class centres + margin + distributed cross-entropy.

    forward(embeddings [B, D] local batch, labels [B] global class ids, margin) -> scalar loss, where margin maps
    (cosine [N, C_sampled], labels [N] column or -1, norms [N] the embeddings' L2 norms) -> logits [N, C_sampled],
    N the global batch. A margin with a `penalty(norms [B]) -> scalar` method (MagFace) has it added, computed on
    this rank's rows.

    With `centres_per_class` K > 1 (sub-center ArcFace) the weight is [C_local, K, D] and a class's cosine is the
    largest of its K sub-centres'.
    """

    def __init__(
        self,
        *,
        embedding_size: int,
        num_classes: int,
        sample_rate: float = 1.0,
        seed: int = 0,
        centres_per_class: int = 1,
    ) -> None:
        super().__init__()
        if not 0 < sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
        if centres_per_class < 1:
            raise ValueError(f"centres_per_class must be at least 1, got {centres_per_class}")
        self.rank, self.world = ranks.world()
        self.num_classes = num_classes
        self.start, self.end = shard_bounds(num_classes, self.rank, self.world)
        self.sample_rate = sample_rate
        k = self.centres_per_class = centres_per_class
        rows = initial_centres(num_classes * k, embedding_size, self.start * k, self.end * k, seed)
        self.weight = nn.Parameter(rows if k == 1 else rows.view(-1, k, embedding_size))

    def sample(self, labels: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(indices of the centres used this step or None for all, labels as columns of them or -1)."""
        local = torch.where((labels >= self.start) & (labels < self.end), labels - self.start, -1)
        count = self.end - self.start
        wanted = math.ceil(self.sample_rate * count)
        if wanted >= count:
            return None, local
        positives = torch.unique(local[local >= 0])
        score = torch.rand(count, device=labels.device)
        score[positives] = 2.0  # every class of the batch is kept
        index = score.topk(max(wanted, len(positives))).indices.sort().values
        columns = torch.searchsorted(index, local.clamp(min=0))
        return index, torch.where(local >= 0, columns, -1)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, margin: nn.Module) -> torch.Tensor:
        local = embeddings.float()
        if self.world > 1:
            embeddings = _GatherEmbeddings.apply(embeddings)
            gathered = [torch.empty_like(labels) for _ in range(self.world)]
            dist.all_gather(gathered, labels.contiguous())
            labels = torch.cat(gathered)
        index, columns = self.sample(labels)
        weight = self.weight if index is None else self.weight[index]
        embeddings = embeddings.float()
        cosine = F.linear(F.normalize(embeddings), F.normalize(weight.float(), dim=-1).flatten(0, -2)).clamp(-1, 1)
        if self.centres_per_class > 1:
            cosine = cosine.view(len(cosine), -1, self.centres_per_class).amax(2)
        loss = _DistCrossEntropy.apply(margin(cosine, columns, embeddings.norm(dim=1)), columns)
        penalty = getattr(margin, "penalty", None)
        return loss if penalty is None else loss + mean_over_ranks(penalty(local.norm(dim=1)))
