"""P x K identity sampling for metric losses: every batch holds P identities with K images each."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
from torch.utils.data import Sampler


def identity_groups(labels: np.ndarray) -> list[np.ndarray]:
    """Dataset indices of each identity, identities in increasing label order: labels [N] -> [n_0], [n_1], ..."""
    order = np.argsort(labels, kind="stable")
    _, starts = np.unique(labels[order], return_index=True)
    return np.split(order, starts[1:])


def identity_batches(num_ids: int, p: int, num_batches: int, rng: np.random.Generator) -> np.ndarray:
    """[num_batches, p] identities, p distinct per batch, read off a stream of shuffled passes over all identities.

    Where a batch straddles two passes, an identity it already holds is put back at the front of the stream, so every
    identity comes up equally often (to within one) however num_ids and p divide.
    """
    stream: deque[int] = deque()
    out = np.empty((num_batches, p), dtype=np.int64)
    for b in range(num_batches):
        chosen: dict[int, None] = {}  # ordered set
        held: list[int] = []
        while len(chosen) < p:
            if not stream:
                stream.extend(rng.permutation(num_ids).tolist())
            ident = stream.popleft()
            if ident in chosen:
                held.append(ident)
            else:
                chosen[ident] = None
        stream.extendleft(reversed(held))
        out[b] = list(chosen)
    return out


def choose_images(n: int, rows: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """[rows, k] positions in an identity of n images: k distinct ones per row, or all n plus k - n random repeats."""
    order = rng.random((rows, n)).argsort(axis=1)
    if n >= k:
        return order[:, :k]
    return np.concatenate([order, rng.integers(n, size=(rows, k - n))], axis=1)


class PKSampler(Sampler[int]):
    """Dataset indices in batches of P identities x K images, split across ranks, deterministic and resumable.

    An epoch has `num_batches` = len(labels) // (P K) global batches (at least one), so it draws about as many
    images as the dataset holds. Identities come from shuffled passes over all of them (equally often, P distinct
    per batch); each draws K distinct images, or all of its images plus repeats when it has fewer than K. The epoch
    depends only on (seed, epoch). Rank r gets identities [r P / W, (r + 1) P / W) of every global batch, so use
    `DataLoader(dataset, batch_size=sampler.batch_size, sampler=sampler)`; `len` counts this rank's indices.

    `position` counts the batches of the epoch handed out (a batch counts from its first index on); an iteration
    that runs to the end moves on to the next epoch. `state_dict()` / `load_state_dict()` / `skip(n)` let a resumed
    run continue at the same batch. A DataLoader with workers fetches ahead of training: checkpoint the number of
    batches trained, in the same {"epoch", "position"} form, rather than this sampler's count.
    """

    def __init__(self, labels: Sequence[int], p: int, k: int, *, seed: int, rank: int = 0, world_size: int = 1) -> None:
        label_array = np.asarray(labels, dtype=np.int64)
        if label_array.ndim != 1 or len(label_array) == 0:
            raise ValueError("PKSampler needs a non-empty sequence of labels")
        self.groups = identity_groups(label_array)
        if not 1 <= p <= len(self.groups):
            raise ValueError(f"P = {p} identities per batch, but the labels hold {len(self.groups)} identities")
        if k < 1:
            raise ValueError(f"K = {k} images per identity must be at least 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        if p % world_size:
            raise ValueError(f"P = {p} identities per batch do not split evenly over {world_size} ranks")
        self.p, self.k, self.seed, self.rank, self.world_size = p, k, seed, rank, world_size
        self.num_batches = max(1, len(labels) // (p * k))
        self.batch_size = p // world_size * k
        self.epoch = 0
        self.position = 0

    def set_epoch(self, epoch: int) -> None:
        """Move to `epoch`, at its start; a position restored within this same epoch is kept."""
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def skip(self, n_batches: int) -> None:
        """Start the next iteration `n_batches` further into the epoch."""
        if not 0 <= self.position + n_batches <= self.num_batches:
            raise ValueError(
                f"cannot skip {n_batches} batches from batch {self.position} of an epoch of {self.num_batches}"
            )
        self.position += n_batches

    def resume_at(self, epoch: int, position: int) -> None:
        """Continue epoch `epoch` after its first `position` batches (the trainer's own count of trained batches)."""
        self.epoch, self.position = epoch, 0
        self.skip(position)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), 0
        self.skip(int(state["position"]))

    def epoch_batches(self, epoch: int) -> np.ndarray:
        """All ranks' dataset indices of `epoch`: [num_batches, P, K], identities along P."""
        rng = np.random.default_rng([self.seed, epoch])
        ids = identity_batches(len(self.groups), self.p, self.num_batches, rng).ravel()
        out = np.empty((len(ids), self.k), dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        present, starts = np.unique(ids[order], return_index=True)
        for ident, slots in zip(present, np.split(order, starts[1:]), strict=True):
            members = self.groups[ident]
            out[slots] = members[choose_images(len(members), len(slots), self.k, rng)]
        return out.reshape(self.num_batches, self.p, self.k)

    def __len__(self) -> int:
        return (self.num_batches - self.position) * self.batch_size

    def __iter__(self) -> Iterator[int]:
        share = self.p // self.world_size
        mine = self.epoch_batches(self.epoch)[:, self.rank * share : (self.rank + 1) * share].reshape(
            self.num_batches, -1
        )
        while self.position < self.num_batches:
            batch = mine[self.position].tolist()
            self.position += 1
            yield from batch
        self.epoch, self.position = self.epoch + 1, 0
