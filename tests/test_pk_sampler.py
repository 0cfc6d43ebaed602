"""The PK sampler of metric losses: P identities of K images per batch, shared over ranks, resumable."""

from __future__ import annotations

from itertools import islice

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

from facekit.recognition.sampler import PKSampler

# 7 identities of 1 to 12 images, ids not 0..C-1 and not grouped
SAMPLER_LABELS = [5] * 10 + [9] * 7 + [2] + [7] * 3 + [11] * 12 + [3] * 5 + [4] * 4
SAMPLER_LABELS = SAMPLER_LABELS[::2] + SAMPLER_LABELS[1::2]


def batches_of(sampler: PKSampler) -> list[list[int]]:
    flat = list(sampler)
    return [flat[i : i + sampler.batch_size] for i in range(0, len(flat), sampler.batch_size)]


def test_pk_batches_hold_p_identities_of_k_images():
    p, k = 4, 4
    sampler = PKSampler(SAMPLER_LABELS, p, k, seed=0)
    assert sampler.num_batches == len(SAMPLER_LABELS) // 16 and len(sampler) == sampler.num_batches * 16
    for epoch in range(5):
        sampler.set_epoch(epoch)
        for batch in batches_of(sampler):
            rows = [batch[i * k : (i + 1) * k] for i in range(p)]
            identities = [{SAMPLER_LABELS[i] for i in row} for row in rows]
            assert all(len(ids) == 1 for ids in identities)
            assert len(set.union(*identities)) == p
            for row in rows:  # distinct images unless the identity has fewer than K
                assert len(set(row)) == min(k, SAMPLER_LABELS.count(SAMPLER_LABELS[row[0]]))


def test_pk_identity_with_one_image_is_repeated():
    sampler = PKSampler([0, 1, 1, 1, 2, 2], 3, 4, seed=1)
    (batch,) = batches_of(sampler)
    assert batch.count(0) == 4


def test_pk_identities_come_up_equally_often():
    labels = list(range(10)) * 8
    sampler = PKSampler(labels, 4, 2, seed=0)  # 10 batches of 4 identities: each identity 4 times
    counts = torch.bincount(torch.tensor([labels[i] for i in list(sampler)[::2]]), minlength=10)
    assert counts.tolist() == [4] * 10


def test_pk_rank_shares_are_disjoint_and_make_the_global_batch():
    single = batches_of(PKSampler(SAMPLER_LABELS, 4, 2, seed=3))
    shares = [batches_of(PKSampler(SAMPLER_LABELS, 4, 2, seed=3, rank=r, world_size=2)) for r in range(2)]
    assert len(shares[0]) == len(shares[1]) == len(single)
    for whole, first, second in zip(single, *shares, strict=True):
        assert len(first) == len(second) == 4 and first + second == whole
        assert not {SAMPLER_LABELS[i] for i in first} & {SAMPLER_LABELS[i] for i in second}


def test_pk_deterministic_per_seed_and_epoch():
    def epoch_of(seed: int, epoch: int) -> list[int]:
        sampler = PKSampler(SAMPLER_LABELS, 4, 4, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert epoch_of(0, 2) == epoch_of(0, 2)
    assert epoch_of(0, 2) != epoch_of(0, 3)
    assert epoch_of(0, 2) != epoch_of(1, 2)


def test_pk_resume_mid_epoch_gives_the_remaining_batches():
    sampler = PKSampler(SAMPLER_LABELS, 2, 4, seed=0, rank=1, world_size=2)
    sampler.set_epoch(3)
    full = batches_of(sampler)
    assert sampler.state_dict() == {"epoch": 4, "position": 0}  # ran to the end: next epoch

    sampler.set_epoch(3)
    taken = list(islice(iter(sampler), 2 * sampler.batch_size))
    state = sampler.state_dict()
    assert state == {"epoch": 3, "position": 2}
    resumed = PKSampler(SAMPLER_LABELS, 2, 4, seed=0, rank=1, world_size=2)
    resumed.load_state_dict(state)
    resumed.set_epoch(3)  # the trainer's loop sets the epoch again: the position is kept
    assert len(resumed) == (len(full) - 2) * resumed.batch_size
    assert [taken[:4], taken[4:]] + batches_of(resumed) == full

    skipped = PKSampler(SAMPLER_LABELS, 2, 4, seed=0, rank=1, world_size=2)
    skipped.set_epoch(3)
    skipped.skip(2)
    assert batches_of(skipped) == full[2:]
    with pytest.raises(ValueError, match="cannot skip"):
        skipped.skip(len(full) + 1)


def test_pk_with_a_dataloader():
    sampler = PKSampler(SAMPLER_LABELS, 4, 2, seed=0, rank=0, world_size=2)
    dataset = TensorDataset(torch.tensor(SAMPLER_LABELS))
    loader = DataLoader(dataset, batch_size=sampler.batch_size, sampler=sampler, drop_last=True)
    batches = [labels for (labels,) in loader]
    assert len(batches) == len(loader) == sampler.num_batches
    for labels in batches:
        pairs = labels.view(2, 2)
        assert (pairs[:, 0] == pairs[:, 1]).all() and pairs[0, 0] != pairs[1, 0]


def test_pk_rejects_bad_settings():
    with pytest.raises(ValueError, match="P = 8 identities per batch, but the labels hold 7"):
        PKSampler(SAMPLER_LABELS, 8, 4, seed=0)
    with pytest.raises(ValueError, match="do not split evenly over 3 ranks"):
        PKSampler(SAMPLER_LABELS, 4, 4, seed=0, rank=0, world_size=3)
    with pytest.raises(ValueError, match="rank 2 is not in"):
        PKSampler(SAMPLER_LABELS, 4, 4, seed=0, rank=2, world_size=2)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 9), min_size=2, max_size=12),
    p=st.integers(1, 6),
    k=st.integers(1, 5),
    world_size=st.sampled_from([1, 2]),
    seed=st.integers(0, 2**16),
)
def test_pk_properties(sizes, p, k, world_size, seed):
    labels = [ident for ident, n in enumerate(sizes) for _ in range(n)]
    p = min(p, len(sizes)) // world_size * world_size or world_size
    if p > len(sizes):
        return
    shares = [batches_of(PKSampler(labels, p, k, seed=seed, rank=r, world_size=world_size)) for r in range(world_size)]
    for parts in zip(*shares, strict=True):
        whole = [i for part in parts for i in part]
        assert len(whole) == p * k
        rows = [whole[i * k : (i + 1) * k] for i in range(p)]
        assert len({labels[row[0]] for row in rows}) == p
        assert all(len({labels[i] for i in row}) == 1 for row in rows)
