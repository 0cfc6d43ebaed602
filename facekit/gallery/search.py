"""Gallery search, one entry point for the CLI: exact (blocked numpy matrix products, facekit.gallery.exact), faiss
flat / IVF / HNSW cached beside the gallery, or LSH built in memory (facekit.gallery.indexes); "auto" picks exact or
LSH by gallery size (auto_index).

Every search returns (scores float32 [Q, k'], indices int64 [Q, k']) sorted by descending score, k' = min(k, N).
"""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np

from facekit.gallery.exact import exact_search

INDEXES = ("exact", "flat", "ivf", "hnsw", "lsh")
CHOICES = (*INDEXES, "auto")  # what `recognize --index` offers
# auto_index: exact below this many rows, LSH from it. Exact search reads the whole gallery for each batch of
# queries: one query took 7.7 ms at 100k x 512 and 86 ms at 1M on the 2-core development machine (README, Gallery);
# it needs no index and is never wrong. At 1M x 512 (bench/bench_gallery.py, clustered identities, 2 threads) LSH
# answered one query in 2.3 ms at recall@1 1.000 after a 9 s build, HNSW (M 32, efConstruction 80, efSearch 256)
# in 3.5 ms at recall@1 0.927 after a 13-minute build. Below 100k exact search is fast enough and never wrong.
AUTO_APPROXIMATE_FROM = 100_000


class Searcher(Protocol):
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


class ExactSearcher:
    """exact_search over a gallery's rows [N, D], as a Searcher."""

    def __init__(self, embeddings: np.ndarray) -> None:
        self.embeddings = embeddings

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return exact_search(self.embeddings, queries, k)


def auto_index(n: int) -> str:
    """The index `--index auto` uses for a gallery of n rows: "exact" below AUTO_APPROXIMATE_FROM, else "lsh"."""
    return "exact" if n < AUTO_APPROXIMATE_FROM else "lsh"


def open_index(
    embeddings: np.ndarray,
    index: str = "exact",
    *,
    cache_prefix: str | os.PathLike | None = None,
    key: str | None = None,
    **params: int,
) -> Searcher:
    """A Searcher over `embeddings` [N, D], built or loaded once for all the queries of a run: "exact" ->
    exact_search; "flat"/"ivf"/"hnsw" -> faiss, cached beside the gallery when cache_prefix and key are given (both
    or neither); "lsh" -> LshIndex (never cached: cheap to build); "auto" -> auto_index. `params`: the index's own
    build and search parameters (indexes.PARAMETERS; not with "exact" or "auto")."""
    from facekit.gallery.indexes import FaissIndex, LshIndex, cached_index

    if index not in CHOICES:
        raise ValueError(f"unknown index {index!r}; choose from {', '.join(CHOICES)}")
    if (cache_prefix is None) != (key is None):
        raise ValueError("cache_prefix and key go together: give both or neither")
    if params and index in ("exact", "auto"):
        raise ValueError(f"index parameters apply to flat, ivf, hnsw or lsh, not {index}")
    if index == "auto":
        index = auto_index(len(embeddings))
    if index == "exact":
        return ExactSearcher(embeddings)
    if index == "lsh":
        return LshIndex(embeddings, **params)
    if key is None:
        return FaissIndex.build(embeddings, index, **params)
    return cached_index(embeddings, index, cache_prefix, key, **params)


def search(
    embeddings: np.ndarray,
    queries: np.ndarray,
    k: int,
    index: str = "exact",
    *,
    cache_prefix: str | os.PathLike | None = None,
    key: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One search of `queries` [Q, D] through `open_index(embeddings, index, ...)` (which see)."""
    return open_index(embeddings, index, cache_prefix=cache_prefix, key=key).search(queries, k)
