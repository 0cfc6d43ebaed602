"""Global batches: deterministic, split across ranks, resumable with another number of processes."""

from __future__ import annotations

import pytest

from facekit.recognition.batches import GlobalBatchSampler


def batches(sampler, epoch=0):
    sampler.set_epoch(epoch)
    return list(sampler)


def test_one_epoch_covers_full_batches_once():
    got = batches(GlobalBatchSampler(103, 10, seed=1))
    assert len(got) == 10 and all(len(b) == 10 for b in got)
    flat = [i for b in got for i in b]
    assert len(set(flat)) == 100


def test_deterministic_and_different_per_epoch():
    a, b = GlobalBatchSampler(50, 8, seed=3), GlobalBatchSampler(50, 8, seed=3)
    assert batches(a, 2) == batches(b, 2)
    assert batches(a, 3) != batches(b, 2)


def test_ranks_split_each_global_batch():
    single = batches(GlobalBatchSampler(64, 8, seed=0))
    ranks = [batches(GlobalBatchSampler(64, 8, seed=0, rank=r, world_size=2)) for r in range(2)]
    assert [r0 + r1 for r0, r1 in zip(*ranks)] == single


def test_resume_with_another_world_size():
    single = batches(GlobalBatchSampler(64, 8, seed=0), 1)
    resumed = []
    for rank in range(4):
        sampler = GlobalBatchSampler(64, 8, seed=0, rank=rank, world_size=4)
        sampler.resume_at(1, 3)
        resumed.append(list(sampler))
    assert [sum(parts, []) for parts in zip(*resumed)] == single[3:]


def test_bad_sizes():
    with pytest.raises(ValueError, match="divisible by the 3 processes"):
        GlobalBatchSampler(64, 8, world_size=3)
    with pytest.raises(ValueError, match="cannot fill one batch"):
        GlobalBatchSampler(4, 8)
