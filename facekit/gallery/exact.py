"""Exact top-k inner-product search of L2-normalised embeddings by blocked numpy matrix products, the answer every
approximate index is measured against.

exact_search returns (scores float32 [Q, k'], indices int64 [Q, k']) sorted by descending score, ties by ascending
index, k' = min(k, N); extra memory is bounded by a few blocks of scores whatever N is.
"""

from __future__ import annotations

import numpy as np

SCORE_BUDGET = 1 << 24  # scores per block when block_rows is None (64 MiB of float32)
GROUP = 32  # strided column groups per block in the fast top-k selection (see _block_candidates)
MERGE_BUDGET = 1 << 22  # candidate (score, index) pairs held before they are reduced to each query's best k


def exact_search(
    gallery: np.ndarray, queries: np.ndarray, k: int, *, block_rows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k inner products of L2-normalised float32 queries [Q, D] against gallery [N, D]:
    (scores float32 [Q, k'], indices int64 [Q, k']) sorted by descending score, ties by ascending index,
    k' = min(k, N). Exact, by blocked matrix products over gallery rows, so extra memory is bounded by a few
    Q x block_rows scores whatever N is (None: about 64 MiB of scores, at least 1024 rows). The answer does not
    depend on block_rows; a float32 C-contiguous gallery is never copied.
    """
    n, dim = check_shape(gallery, "gallery")
    queries = check_queries(queries, dim, k)
    q, k = len(queries), min(k, n)
    if n >= 1 << 32:
        raise ValueError(f"exact search takes fewer than 2^32 gallery rows, got {n}")
    if q == 0 or k == 0:
        return np.empty((q, k), np.float32), np.empty((q, k), np.int64)
    if block_rows is None:
        block_rows = max(1024, SCORE_BUDGET // q // GROUP * GROUP)
    elif block_rows < 1:
        raise ValueError(f"block_rows must be at least 1, got {block_rows}")
    buffer = np.empty(q * min(block_rows, n), np.float32)
    # each block's candidates wait here and are reduced to the best k once MERGE_BUDGET pairs have gathered
    pending: list[tuple[np.ndarray, np.ndarray]] = [(np.empty((q, 0), np.float32), np.empty((q, 0), np.int64))]
    held = 0
    for start in range(0, n, block_rows):
        rows = np.ascontiguousarray(gallery[start : start + block_rows], dtype=np.float32)
        # [rows, Q] in memory, seen as [Q, rows]: OpenBLAS makes this layout about 1.5x faster for tens of queries
        block = np.matmul(rows, queries.T, out=buffer[: q * len(rows)].reshape(len(rows), q)).T
        columns = _block_candidates(block, k)
        pending.append((np.take_along_axis(block, columns, 1), columns + start))
        held += columns.size
        if held >= MERGE_BUDGET or start + block_rows >= n:
            scores, indices = (np.concatenate(part, 1) for part in zip(*pending, strict=True))
            pending = [best_of(scores, indices, k)]
            held = 0
    return pending[0]


def check_shape(embeddings: np.ndarray, name: str) -> tuple[int, int]:
    """(N, D) of a 2-D array; ValueError naming `name` otherwise."""
    if embeddings.ndim != 2:
        raise ValueError(f"the {name} must be a 2-D array [N, D], got shape {embeddings.shape}")
    return embeddings.shape


def check_queries(queries: np.ndarray, dim: int, k: int) -> np.ndarray:
    """Validate the queries and k; returns the queries as a float32 C-contiguous array."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim != 2 or queries.shape[1] != dim:
        raise ValueError(f"queries must be [Q, {dim}] like the gallery, got shape {queries.shape}")
    if not np.isfinite(queries).all():
        raise ValueError("queries hold NaN or infinite values")
    if k < 0:
        raise ValueError(f"k must not be negative, got {k}")
    return queries


def _block_candidates(block: np.ndarray, k: int) -> np.ndarray:
    """Columns int64 [Q, c] (c >= k) of a score block [Q, n] that hold each row's top k by (score desc, column asc).

    Fast path: split the columns into GROUP strided groups and keep the k groups with the highest maxima; when the
    k-th and (k+1)-th maxima differ, every other element has k larger ones. Rows where they tie get the exact top c.
    The last n % GROUP columns, if any, are candidates of every row.
    """
    q, n = block.shape
    if k >= n:
        return np.broadcast_to(np.arange(n), (q, n))
    tail = n % GROUP
    if tail and (k + 1) * GROUP * 16 <= n - tail:
        head = _block_candidates(block[:, : n - tail], k)
        return np.concatenate([head, np.broadcast_to(np.arange(n - tail, n), (q, tail))], 1)
    group = GROUP if n % GROUP == 0 and (k + 1) * GROUP * 16 <= n else 1
    width = n // group
    peaks = block.T.reshape(group, width, q).max(0).T if group > 1 else block  # a view of exact_search's buffer
    if np.isnan(peaks).any():
        raise ValueError("the gallery holds NaN or infinite values")
    part = np.argpartition(peaks, width - k - 1, axis=1)[:, width - k - 1 :]  # [Q, k + 1]: the (k+1)-th first
    values = np.take_along_axis(peaks, part, 1)
    groups = part[:, 1:]
    columns = (groups[:, :, None] + width * np.arange(group)).reshape(q, k * group)
    tied = np.flatnonzero(values[:, 1:].min(1) == values[:, 0])
    if len(tied):
        columns[tied] = _exact_columns(block[tied], k * group)
    return columns


def _exact_columns(block: np.ndarray, c: int) -> np.ndarray:
    """The columns int64 [R, c] of each row's top c by (score desc, column asc), in ascending column order."""
    n = block.shape[1]
    threshold = np.partition(block, n - c, axis=1)[:, n - c, None]
    above = block > threshold
    equal = block == threshold
    room = c - above.sum(1, keepdims=True)
    take = above | (equal & (np.cumsum(equal, 1, dtype=np.int32) <= room))
    return np.nonzero(take)[1].reshape(len(block), c)


def best_of(scores: np.ndarray, indices: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k best of (scores, indices) [Q, m], by descending score then ascending index: [Q, min(k, m)].

    Each pair becomes one int64 key, (the score's bits, made to sort like floats) * 2^32 - index: keys are unique, so
    one partition and one sort of k keys need no tie-breaking. Indices must stay below 2^32.
    """
    m = scores.shape[1]
    bits = (scores + np.float32(0.0)).view(np.int32).astype(np.int64)  # + 0.0: -0.0 becomes 0.0, as it compares equal
    keys = (np.where(bits < 0, bits ^ 0x7FFFFFFF, bits) << 32) - indices
    best = np.argpartition(keys, m - k, axis=1)[:, m - k :] if k < m else np.broadcast_to(np.arange(m), keys.shape)
    best = np.take_along_axis(best, np.argsort(np.take_along_axis(keys, best, 1), axis=1)[:, ::-1], 1)
    return np.take_along_axis(scores, best, 1), np.take_along_axis(indices, best, 1)
