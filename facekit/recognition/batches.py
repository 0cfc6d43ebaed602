"""Batches that survive a restart: a seeded permutation per epoch cut into global batches, each rank taking its
slice. The position is counted in global batches, so a run resumes at the same batch even with another number
of processes (as long as the global batch size stays)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class GlobalBatchSampler(Sampler[list[int]]):
    """Yields this rank's indices of each global batch of `batch_size` (the last, smaller batch is dropped).

    size: dataset length; batch_size: global; ranks split each global batch evenly (batch_size % world == 0).
    """

    def __init__(self, size: int, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if batch_size % world_size:
            raise ValueError(f"the global batch size {batch_size} must be divisible by the {world_size} processes")
        if size < batch_size:
            raise ValueError(f"{size} samples cannot fill one batch of {batch_size}")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.position = 0  # global batches of this epoch to skip (set on resume; the trainer counts consumption)

    def __len__(self) -> int:
        """Global batches per epoch."""
        return self.size // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
        local = self.batch_size // self.world_size
        for b in range(self.position, len(self)):
            batch = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield batch[self.rank * local : (self.rank + 1) * local].tolist()

    def resume_at(self, epoch: int, position: int) -> None:
        """Continue epoch `epoch` after its first `position` global batches."""
        self.epoch, self.position = epoch, position
