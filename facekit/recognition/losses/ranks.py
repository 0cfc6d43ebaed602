"""Batch statistics over every rank's share of a Partial FC step, for the heads that adapt to the batch.

Partial FC gives each rank the whole global batch but only its block of class columns, so a row's label column
lives on one rank (elsewhere the row is labelled -1). These helpers give every rank the same global numbers; with one
process they are plain tensor operations. None of them carries a gradient.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def sum_over_ranks(x: Tensor) -> Tensor:
    """x summed over the ranks (a copy; x itself is untouched)."""
    x = x.detach().clone()
    if world()[1] > 1:
        dist.all_reduce(x)
    return x


def label_cosines(cosine: Tensor, labels: Tensor) -> Tensor:
    """Each row's cosine to its own class, [B, C_local], [B] -> [B], whichever rank holds the column (no gradient)."""
    here = labels >= 0
    picked = cosine.detach().gather(1, labels.clamp(min=0).unsqueeze(1)).squeeze(1)
    return sum_over_ranks(torch.where(here, picked, torch.zeros_like(picked)))


def mean_over_ranks(local: Tensor) -> Tensor:
    """A scalar averaged over the ranks in value, its gradient left local: under DDP, which averages the backbone's
    gradients over the ranks, a mean of per-rank means of equal batches gets the gradient of the global mean."""
    _, size = world()
    if size == 1:
        return local
    return local + (sum_over_ranks(local) / size - local.detach())
