"""The peer of facekit.gallery.search.exact_search in bench/bench_gallery.py: the same blocked exact search written
in torch, as facekit ran it before its serving path dropped torch (same answers, ties by ascending index)."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from facekit.gallery.exact import GROUP, SCORE_BUDGET


def torch_exact_search(gallery: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """exact_search's contract and answers (the bench gives it valid inputs, so it skips the checks), in torch."""
    q, k = len(queries), min(k, len(gallery))
    block_rows = max(1024, SCORE_BUDGET // q // GROUP * GROUP)
    n = len(gallery)
    buffer = torch.empty(q * min(block_rows, n))
    query_rows = _tensor(queries)
    scores, indices = torch.empty(q, 0), torch.empty(q, 0, dtype=torch.int64)
    for start in range(0, n, block_rows):
        rows = _tensor(np.ascontiguousarray(gallery[start : start + block_rows], dtype=np.float32))
        block = torch.mm(query_rows, rows.T, out=buffer[: q * len(rows)].view(q, len(rows)))
        columns = _block_candidates(block, k)
        scores = torch.cat([scores, block.gather(1, columns)], 1)
        indices = torch.cat([indices, columns + start], 1)
        scores, indices = _best(scores, indices, k)
    return scores.numpy(), indices.numpy()


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor sharing `array`'s memory; read-only arrays (memory maps) are fine, as nothing writes to them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "The given NumPy array is not writable"
        return torch.from_numpy(array)


def _block_candidates(block: torch.Tensor, k: int) -> torch.Tensor:
    """Columns [Q, c] (c >= k) of a score block [Q, n] that hold each row's top k by (score desc, column asc).

    Fast path: split the columns into GROUP strided groups and keep the k groups with the highest maxima; when the
    k-th and (k+1)-th maxima differ, every other element has k larger ones. Rows where they tie get the exact top c.
    """
    q, n = block.shape
    if k >= n:
        return torch.arange(n).expand(q, n)
    group = GROUP if n % GROUP == 0 and (k + 1) * GROUP * 16 <= n else 1
    width = n // group
    peaks = block.view(q, group, width).amax(1) if group > 1 else block
    top, groups = torch.topk(peaks, k + 1)
    if torch.isnan(top[:, 0]).any():  # topk and amax put NaN first
        raise ValueError("the gallery holds NaN or infinite values")
    columns = (groups[:, :k, None] + width * torch.arange(group)).reshape(q, k * group)
    tied = (top[:, k - 1] == top[:, k]).nonzero()[:, 0]
    if len(tied):
        columns[tied] = _exact_columns(block[tied], k * group)
    return columns


def _exact_columns(block: torch.Tensor, c: int) -> torch.Tensor:
    """The columns [R, c] of each row's top c by (score desc, column asc), in ascending column order."""
    threshold = torch.topk(block, c, sorted=False).values.amin(1, keepdim=True)
    above = block > threshold
    equal = block == threshold
    room = c - above.sum(1, keepdim=True)
    take = above | (equal & (equal.cumsum(1, dtype=torch.int32) <= room))
    return take.nonzero()[:, 1].view(len(block), c)


def _best(scores: torch.Tensor, indices: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's k best of (scores, indices) [Q, m], by descending score then ascending index: [Q, min(k, m)].

    Each pair becomes one int64 key, (the score's bits, made to sort like floats) * 2^32 - index: keys are unique, so
    topk needs no tie-breaking (torch's sort is far slower on small rows). Indices must stay below 2^32.
    """
    bits = (scores + 0.0).view(torch.int32).to(torch.int64)  # + 0.0: -0.0 becomes 0.0, as it compares equal
    keys = (torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits) << 32) - indices
    best = torch.topk(keys, min(k, keys.shape[1])).indices
    return scores.gather(1, best), indices.gather(1, best)
