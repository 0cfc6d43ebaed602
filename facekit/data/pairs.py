"""Verification pairs for a .bin (`facekit make-bin`): half same-person, half different-person pairs in folds.

The pairs are laid out fold by fold (`recognition/verification.py` fold_indices cuts consecutive runs), each fold its
same pairs then its different pairs, as LFW's pairs.txt. With at least 2 x folds people, people are dealt to the
folds and both photos of every pair of a fold come from that fold's people (LFW's View 2: a threshold chosen on nine
folds is tested on people it never saw). With fewer, pairs are drawn from everyone and dealt to the folds in turn,
so folds share people and 10-fold accuracy is optimistic.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from facekit.errors import DataFormatError

FOLDS = 10  # insightface's verification runs 10-fold cross-validation
MIN_PAIRS = 2 * FOLDS  # one same and one different pair per fold

Image = tuple[int, int]  # (person, image of that person)


@dataclass
class PairPlan:
    """pairs[k] = (first image, second image, same person?); folds consecutive runs of equal length, each with as
    many same as different pairs. fold_people[f]: the people of fold f, or None when folds share people."""

    pairs: list[tuple[Image, Image, bool]]
    folds: int
    fold_people: list[list[int]] | None

    @property
    def people(self) -> list[int]:
        """The people some pair shows, in increasing order."""
        return sorted({person for a, b, _ in self.pairs for person in (a[0], b[0])})


def sample_pairs(counts: Sequence[int], pairs: int, *, seed: int, folds: int = FOLDS) -> PairPlan:
    """Plan up to `pairs` pairs (a multiple of 2 x folds) over people with counts[p] images each, deterministic for
    `seed`. Same pairs spread evenly over the people (round robin), different pairs over pairs of people; no pair
    is repeated. Fewer pairs come back when fewer exist (DataFormatError below one of each kind per fold)."""
    if pairs <= 0 or pairs % (2 * folds):
        raise ValueError(f"pairs must be a positive multiple of {2 * folds}, got {pairs}")
    rng = np.random.default_rng(seed)
    people = [p for p, n in enumerate(counts) if n > 0]
    if len(people) >= 2 * folds:
        groups = deal(people, counts, folds, rng)
        want = pairs // (2 * folds)
        same = [list(_same_pairs(group, counts, rng, want)) for group in groups]
        different = [list(_different_pairs(group, counts, rng, want)) for group in groups]
        per_fold = min(map(len, same + different))
    else:
        groups = None
        same = [list(_same_pairs(people, counts, rng, pairs // 2))]
        different = [list(_different_pairs(people, counts, rng, pairs // 2))]
        per_fold = min(len(same[0]), len(different[0])) // folds
        same = [same[0][f * per_fold : (f + 1) * per_fold] for f in range(folds)]
        different = [different[0][f * per_fold : (f + 1) * per_fold] for f in range(folds)]
    if per_fold == 0:
        raise DataFormatError(
            f"{len(people)} people with {sum(counts)} images give fewer than {MIN_PAIRS} balanced pairs "
            f"(one same and one different pair in each of {folds} folds); add people or photos"
        )
    plan = []
    for s, d in zip(same, different, strict=True):
        plan += [(a, b, True) for a, b in s[:per_fold]] + [(a, b, False) for a, b in d[:per_fold]]
    return PairPlan(plan, folds, groups)


def deal(people: Sequence[int], counts: Sequence[int], folds: int, rng: np.random.Generator) -> list[list[int]]:
    """People dealt to `folds` groups: shuffled, then by image count (most first) in snake order (0..9, 9..0, ...),
    so groups get as many people (+-1) and about as many images."""
    order = sorted(rng.permutation(people).tolist(), key=lambda p: -counts[p])
    groups: list[list[int]] = [[] for _ in range(folds)]
    for i, person in enumerate(order):
        lap, pos = divmod(i, folds)
        groups[pos if lap % 2 == 0 else folds - 1 - pos].append(person)
    return [sorted(group) for group in groups]


def _same_pairs(group: Sequence[int], counts: Sequence[int], rng: np.random.Generator, want: int) -> Iterator:
    """Up to `want` distinct same-person pairs of `group`, one person after another."""
    people = [p for p in rng.permutation(group).tolist() if counts[p] >= 2]
    return _round_robin([_person_pairs(p, counts[p], rng) for p in people], want)


def _different_pairs(group: Sequence[int], counts: Sequence[int], rng: np.random.Generator, want: int) -> Iterator:
    """Up to `want` distinct different-person pairs of `group`, one pair of people after another."""
    group = list(group)
    couples = [(a, b) for i, a in enumerate(group) for b in group[i + 1 :]]
    order = rng.permutation(len(couples)).tolist()
    return _round_robin([_couple_pairs(*couples[k], counts, rng) for k in order], want)


def _person_pairs(person: int, count: int, rng: np.random.Generator) -> Iterator:
    """The distinct image pairs of one person in random order (drawn when first asked for)."""
    first, second = np.triu_indices(count, 1)
    for k in rng.permutation(len(first)).tolist():
        yield (person, int(first[k])), (person, int(second[k]))


def _couple_pairs(a: int, b: int, counts: Sequence[int], rng: np.random.Generator) -> Iterator:
    """The image pairs of person a with person b in random order (drawn when first asked for)."""
    for k in rng.permutation(counts[a] * counts[b]).tolist():
        yield (a, k // counts[b]), (b, k % counts[b])


def _round_robin(pools: list[Iterator], want: int) -> Iterator:
    """One item from each pool in turn (dropping empty pools) until `want` items."""
    taken = 0
    while pools and taken < want:
        alive = []
        for pool in pools:
            item = next(pool, None)
            if item is None:
                continue
            alive.append(pool)
            yield item
            taken += 1
            if taken == want:
                return
        pools = alive
