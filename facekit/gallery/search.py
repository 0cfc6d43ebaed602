"""Top-k inner-product search of L2-normalised embeddings: exact (blocked numpy matrix products) or faiss (flat,
IVF, HNSW); "auto" picks exact or HNSW by gallery size (auto_index).

Every search returns (scores float32 [Q, k'], indices int64 [Q, k']) sorted by descending score, k' = min(k, N).
faiss indexes are cached beside the gallery, named after a key that changes whenever the embeddings do, and checked
against the embeddings before each use (FaissIndex.mismatch): a stale or poisoned cache file is rebuilt, never trusted.
"""

from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facekit.errors import DataFormatError, MissingDataError
from facekit.fileio import atomic_write

if TYPE_CHECKING:
    import faiss

log = logging.getLogger(__name__)

INDEXES = ("exact", "flat", "ivf", "hnsw")
CHOICES = (*INDEXES, "auto")  # what `recognize --index` offers
# auto_index: exact below this many rows, HNSW from it. Exact search reads the whole gallery for each batch of
# queries: one query took 7.7 ms at 100k x 512 and 86 ms at 1M on the 2-core development machine (README, Gallery);
# it needs no index and is never wrong. HNSW answered one query in 2.8 ms at 100k x 512 at recall@1 1.000 (efSearch
# 128, under a load of 11), but building it took 5 minutes there (once: it is cached beside the gallery) and it
# holds a second copy of the rows plus its links. Below 100k exact search is fast enough and the build would cost
# more than tens of thousands of exact queries.
AUTO_HNSW_FROM = 100_000
# HNSW defaults (faiss IndexHNSWFlat): M links per node (2M on the base layer), candidate lists of efConstruction
# while building and efSearch while searching. bench/bench_gallery.py, 100k x 512 clustered, M 32: efConstruction
# 40 gave recall@1 0.964 / 0.996 / 0.997 at efSearch 32 / 64 / 128, efConstruction 80 gave 0.996 / 1.000 / 1.000;
# at 300k x 512 efConstruction 80 gave 0.902 / 0.983 / 0.994 / 0.996 at efSearch 32 / 64 / 128 / 256 (one query
# 1.3 / 1.4 / 2.4 / 4.3 ms under a load of 9): recall falls as galleries grow, so efSearch 256 by default.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 256
PARAMETERS = {"flat": (), "ivf": ("nlist", "nprobe"), "hnsw": ("m", "ef_construction", "ef_search")}
# each parameter's allowed range: bounded so that a parameter cannot ask for unbounded memory or time
RANGES = {
    "nlist": (1, 65536),
    "nprobe": (1, 65536),
    "m": (2, 256),
    "ef_construction": (1, 4096),
    "ef_search": (1, 4096),
}
SCORE_BUDGET = 1 << 24  # scores per block when block_rows is None (64 MiB of float32)
GROUP = 32  # strided column groups per block in the fast top-k selection (see _block_candidates)
TRAIN_POINTS_PER_LIST = 64  # IVF k-means trains on at most this many embeddings per list (faiss advises 30-256)
CHECKED_ASSIGNMENTS = 1024  # a cached IVF index must have this many sampled rows in their nearest centroid's list
CHECKED_SEARCHES = 256  # a cached HNSW index must find SELF_RECALL of this many sampled rows when they are searched
SELF_RECALL = 0.99
KEY = re.compile(r"[A-Za-z0-9_-]+")


def exact_search(
    gallery: np.ndarray, queries: np.ndarray, k: int, *, block_rows: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k inner products of L2-normalised float32 queries [Q, D] against gallery [N, D]:
    (scores float32 [Q, k'], indices int64 [Q, k']) sorted by descending score, ties by ascending index,
    k' = min(k, N). Exact, by blocked matrix products over gallery rows, so extra memory is bounded by a few
    Q x block_rows scores whatever N is (None: about 64 MiB of scores, at least 1024 rows). The answer does not
    depend on block_rows; a float32 C-contiguous gallery is never copied.
    """
    n, dim = _shape(gallery, "gallery")
    queries = _check_queries(queries, dim, k)
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
    scores, indices = np.empty((q, 0), np.float32), np.empty((q, 0), np.int64)
    for start in range(0, n, block_rows):
        rows = np.ascontiguousarray(gallery[start : start + block_rows], dtype=np.float32)
        # [rows, Q] in memory, seen as [Q, rows]: OpenBLAS makes this layout about 1.5x faster for tens of queries
        block = np.matmul(rows, queries.T, out=buffer[: q * len(rows)].reshape(len(rows), q)).T
        columns = _block_candidates(block, k)
        scores = np.concatenate([scores, np.take_along_axis(block, columns, 1)], 1)
        indices = np.concatenate([indices, columns + start], 1)
        scores, indices = _best(scores, indices, k)
    return scores, indices


def _shape(embeddings: np.ndarray, name: str) -> tuple[int, int]:
    if embeddings.ndim != 2:
        raise ValueError(f"the {name} must be a 2-D array [N, D], got shape {embeddings.shape}")
    return embeddings.shape


def _check_queries(queries: np.ndarray, dim: int, k: int) -> np.ndarray:
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


def _best(scores: np.ndarray, indices: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
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


def auto_index(n: int) -> str:
    """The index `--index auto` uses for a gallery of n rows: "exact" below AUTO_HNSW_FROM, else "hnsw"."""
    return "exact" if n < AUTO_HNSW_FROM else "hnsw"


class FaissIndex:
    """A faiss inner-product index over a gallery's embeddings: "flat" (IndexFlatIP, exact), "ivf" (IndexIVFFlat) or
    "hnsw" (IndexHNSWFlat, a graph over the uncompressed rows).

    IVF defaults: nlist = 4 sqrt(N), at most N / 39 (below that faiss warns of too few training points) and 65536,
    trained on up to TRAIN_POINTS_PER_LIST x nlist embeddings; nprobe = nlist / 8, so that a query scans about 1/8 of
    the gallery: top-1 recall 0.98-1.0 against exact search on synthetic galleries of clustered identities (4k x 64
    to 100k x 512). IVF search may find fewer than k' results: the missing ones have index -1 and score -inf.
    HNSW defaults: HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH; memory: the rows plus about 8 M bytes per row.
    """

    def __init__(self, index: faiss.Index) -> None:
        import faiss

        self.index = index
        self.kind = (
            "ivf" if isinstance(index, faiss.IndexIVF) else "hnsw" if isinstance(index, faiss.IndexHNSW) else "flat"
        )

    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        kind: str = "flat",
        *,
        nlist: int | None = None,
        nprobe: int | None = None,
        m: int | None = None,
        ef_construction: int | None = None,
        ef_search: int | None = None,
    ) -> FaissIndex:
        """Index the rows of `embeddings` [N, D] (L2-normalised); nlist, nprobe: IVF only; m, ef_construction,
        ef_search: HNSW only; None for defaults."""
        import faiss

        n, dim = _shape(embeddings, "embeddings")
        _check_build(kind, nlist=nlist, nprobe=nprobe, m=m, ef_construction=ef_construction, ef_search=ef_search)
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, m or HNSW_M, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef_construction or HNSW_EF_CONSTRUCTION
            index.hnsw.efSearch = ef_search or HNSW_EF_SEARCH
        else:
            nlist = max(1, min(nlist or min(round(4 * math.sqrt(n)), n // 39, 65536), n))
            index = faiss.index_factory(dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
            index.cp.min_points_per_centroid = 1  # nlist <= N suffices; faiss warns below 39 points per list
            index.cp.max_points_per_centroid = TRAIN_POINTS_PER_LIST
            index.nprobe = nprobe or max(1, nlist // 8)
            if n:
                index.train(embeddings)
        if n:
            index.add(embeddings)
        return cls(index)

    def __len__(self) -> int:
        return self.index.ntotal

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Like `exact_search`, ties in any order; "ivf" and "hnsw" are approximate, missing results are index -1,
        score -inf."""
        queries = _check_queries(queries, self.index.d, k)
        k = min(k, len(self))
        if len(queries) == 0 or k == 0:
            return np.empty((len(queries), k), np.float32), np.empty((len(queries), k), np.int64)
        scores, indices = self.index.search(queries, k)
        scores[indices < 0] = -np.inf
        return scores, indices

    def save(self, path: str | os.PathLike) -> None:
        """Write the index to `path` atomically (a temporary file beside it, then a rename)."""
        import faiss

        with atomic_write(path, "wb") as f:
            faiss.write_index(self.index, faiss.PyCallbackIOWriter(f.write))

    def mismatch(self, embeddings: np.ndarray) -> str | None:
        """Why this index is not exactly an index of `embeddings` [N, D], or None when it is: it must hold every row
        once, bit for bit, under its own number; an IVF index must also hold CHECKED_ASSIGNMENTS sampled rows in
        the list of their nearest centroid, an HNSW index must have a well-formed graph that finds SELF_RECALL of
        CHECKED_SEARCHES sampled rows (so a cache file cannot answer for another gallery, or wrongly)."""
        import faiss

        n, dim = _shape(embeddings, "embeddings")
        if len(self) != n or self.index.d != dim:
            return f"holds {len(self)} x {self.index.d}, the gallery {n} x {dim}"
        if not n:
            return None
        if self.kind == "flat":
            stored = faiss.rev_swig_ptr(self.index.get_xb(), n * dim).reshape(n, dim)
            return _differing(stored, np.arange(n), embeddings)
        if self.kind == "hnsw":
            return self._hnsw_mismatch(embeddings)
        ivf, lists = self.index, self.index.invlists
        quantizer = ivf.quantizer
        if quantizer.metric_type != faiss.METRIC_INNER_PRODUCT or quantizer.ntotal != ivf.nlist:
            return f"its quantizer is not {ivf.nlist} inner-product centroids"
        if not 1 <= ivf.nprobe <= ivf.nlist:
            return f"probes {ivf.nprobe} of its {ivf.nlist} lists"
        home = np.full(n, -1, np.int64)  # the list each row is in
        for number in range(ivf.nlist):
            size = lists.list_size(number)
            if not size:
                continue
            ids = faiss.rev_swig_ptr(lists.get_ids(number), size).copy()
            if ids.min() < 0 or ids.max() >= n or (home[ids] >= 0).any() or len(np.unique(ids)) < size:
                return f"list {number} holds row numbers outside 0..{n - 1} or held twice"
            home[ids] = number
            codes = faiss.rev_swig_ptr(lists.get_codes(number), size * ivf.code_size)
            problem = _differing(codes.view(np.float32).reshape(size, dim), ids, embeddings)
            if problem:
                return problem
        if (home < 0).any():
            return f"lacks row {int(np.argmax(home < 0))}"
        sample = np.unique(np.linspace(0, n - 1, min(n, CHECKED_ASSIGNMENTS)).astype(np.int64))
        rows = np.ascontiguousarray(embeddings[sample], dtype=np.float32)
        best, _ = quantizer.search(rows, 1)
        own = np.einsum("ij,ij->i", rows, quantizer.reconstruct_batch(home[sample]))
        wrong = np.flatnonzero(~(own >= best[:, 0] - 1e-5))
        return f"holds row {sample[wrong[0]]} in a list other than its nearest centroid's" if len(wrong) else None

    def _hnsw_mismatch(self, embeddings: np.ndarray) -> str | None:
        """`mismatch` for a non-empty HNSW index: rows, graph layout, then a self-search of sampled rows."""
        import faiss

        n, dim = embeddings.shape
        storage = faiss.downcast_index(self.index.storage)
        if not isinstance(storage, faiss.IndexFlat) or storage.metric_type != faiss.METRIC_INNER_PRODUCT:
            return "stores its rows in something other than an inner-product flat index"
        stored = faiss.rev_swig_ptr(storage.get_xb(), n * dim).reshape(n, dim)
        problem = _differing(stored, np.arange(n), embeddings)
        if problem:
            return problem
        hnsw = self.index.hnsw
        vectors = (hnsw.levels, hnsw.offsets, hnsw.neighbors)  # views, not copies
        levels, offsets, links = (faiss.rev_swig_ptr(v.data(), v.size()) for v in vectors)
        m = hnsw.nb_neighbors(1)
        if len(levels) != n or len(offsets) != n + 1 or offsets[0] != 0 or levels.min() < 1:
            return f"has a graph of {len(levels)} nodes, not {n}"
        if (np.diff(offsets.astype(np.int64)) != 2 * m + (levels - 1) * m).any() or offsets[-1] != len(links):
            return "has a graph whose link lists do not fit its levels"
        top = levels.max() - 1
        if not 0 <= hnsw.entry_point < n or hnsw.max_level != top or levels[hnsw.entry_point] - 1 != top:
            return f"has a graph entry point {hnsw.entry_point} that is not a node on its top level"
        for start in range(0, len(links), SCORE_BUDGET):
            block = links[start : start + SCORE_BUDGET]
            if block.min() < -1 or block.max() >= n:
                return f"has graph links to nodes outside 0..{n - 1}"
        sample = np.unique(np.linspace(0, n - 1, min(n, CHECKED_SEARCHES)).astype(np.int64))
        rows = np.ascontiguousarray(embeddings[sample], dtype=np.float32)
        best, _ = self.index.search(rows, 1)
        found = np.mean(best[:, 0] >= np.einsum("ij,ij->i", rows, rows) - 1e-5)
        if found < SELF_RECALL:
            return f"finds only {found:.0%} of {len(sample)} sampled rows when searched for them"
        return None

    @classmethod
    def load(cls, path: str | os.PathLike) -> FaissIndex:
        """Read an index written by `save`: MissingDataError if absent, DataFormatError if not such an index."""
        import faiss

        path = os.fspath(path)
        if not os.path.isfile(path):
            raise MissingDataError(f"{path}: no such file")
        try:
            index = faiss.read_index(path)
        except RuntimeError as exc:  # faiss reports every read problem so, prefixed with its source location
            reason = re.sub(r"^.*\.cpp:\d+: (Error: )?", "", str(exc).splitlines()[0])
            raise DataFormatError(f"{path}: not a readable faiss index ({reason})") from None
        if not isinstance(index, faiss.IndexFlatIP | faiss.IndexIVFFlat | faiss.IndexHNSWFlat) or (
            index.metric_type != faiss.METRIC_INNER_PRODUCT
        ):
            raise DataFormatError(
                f"{path}: a faiss {type(index).__name__}, not an inner-product flat, IVF or HNSW index"
            )
        return cls(index)


def _differing(stored: np.ndarray, ids: np.ndarray, embeddings: np.ndarray) -> str | None:
    """Which stored row [M, D] (row ids [M]) differs from its embedding, compared a block at a time; or None."""
    step = max(1, SCORE_BUDGET // stored.shape[1])
    for start in range(0, len(stored), step):
        block = ids[start : start + step]
        same = (stored[start : start + step] == embeddings[block]).all(1)
        if not same.all():
            return f"row {block[np.argmin(same)]} differs from the gallery's"
    return None


def _check_build(kind: str, **params: int | None) -> None:
    """Raise ValueError unless `kind` is a faiss index and `params` (None: default) are its own and in range."""
    if kind not in PARAMETERS:
        raise ValueError(f"unknown faiss index {kind!r}; choose from {', '.join(PARAMETERS)}")
    for owner, names in PARAMETERS.items():
        given = [name for name in names if params.get(name) is not None]
        if owner != kind and given:
            raise ValueError(f"{', '.join(names[:-1])} and {names[-1]} apply to {owner!r} indexes only, not {kind!r}")
    unknown = sorted(set(params) - set(RANGES))
    if unknown:
        raise ValueError(f"unknown index parameter {unknown[0]!r}; known: {', '.join(RANGES)}")
    for name in PARAMETERS[kind]:
        value, (least, most) = params.get(name), RANGES[name]
        if value is not None and not least <= value <= most:
            raise ValueError(f"{name} must be {least} to {most}, got {value}")


def cached_index(embeddings: np.ndarray, kind: str, prefix: str | os.PathLike, key: str, **kw) -> FaissIndex:
    """Load the index cached beside the gallery for content `key` (a string that changes whenever the gallery's
    embeddings change, e.g. a uuid stored in the gallery), or build and save it. Cache file name:
    f"{prefix}.{kind}.{key}.faiss" (prefix = the gallery path, e.g. 'people.h5' -> 'people.h5.flat.<key>.faiss');
    stale cache files of the same prefix and kind with another key are removed. A cache file that cannot be read,
    or does not fit `embeddings` or an explicit nlist, is rebuilt (with a logging warning), never trusted; one that
    cannot be written is only logged. `kw`: nlist, nprobe (IVF) or m, ef_construction, ef_search (HNSW) of
    FaissIndex.build; an HNSW cache built with another m or ef_construction than asked (or the defaults) is rebuilt.
    """
    if not KEY.fullmatch(key):
        raise ValueError(f"cache key {key!r} must be made of letters, digits, '-' and '_'")
    _check_build(kind, **kw)
    prefix = Path(prefix)
    path = cache_path(prefix, kind, key)
    index = _load_cached(path, embeddings, kind, kw)
    if index is None:
        index = FaissIndex.build(embeddings, kind, **kw)
        try:
            index.save(path)
        except OSError as exc:
            log.warning("%s: cannot write the index cache (%s)", path, exc)
    elif kw.get("nprobe") is not None:
        index.index.nprobe = kw["nprobe"]
    elif kind == "hnsw":
        index.index.hnsw.efSearch = kw.get("ef_search") or HNSW_EF_SEARCH
    stale = re.compile(re.escape(prefix.name) + rf"\.{kind}\.[A-Za-z0-9_-]+\.faiss")
    for other in prefix.parent.iterdir():
        if other.name != path.name and stale.fullmatch(other.name):
            other.unlink(missing_ok=True)
    return index


def cache_path(prefix: str | os.PathLike, kind: str, key: str) -> Path:
    """Where cached_index keeps the `kind` index of content `key` for `prefix`: '<prefix>.<kind>.<key>.faiss'."""
    prefix = Path(prefix)
    return prefix.with_name(f"{prefix.name}.{kind}.{key}.faiss")


def _load_cached(path: Path, embeddings: np.ndarray, kind: str, kw: dict) -> FaissIndex | None:
    """The index cached at `path` if it fits `embeddings` and the build parameters `kw`, else None (with a warning
    unless there is no file)."""
    n, dim = _shape(embeddings, "embeddings")
    try:
        index = FaissIndex.load(path)
    except MissingDataError:
        return None
    except DataFormatError as exc:
        log.warning("%s; rebuilding it", exc)
        return None
    wanted = (kw.get("m") or HNSW_M, kw.get("ef_construction") or HNSW_EF_CONSTRUCTION)
    if index.kind != kind or len(index) != n or index.index.d != dim:
        problem = f"holds {len(index)} x {index.index.d} ({index.kind}), the gallery {n} x {dim} ({kind})"
    elif kw.get("nlist") is not None and index.index.nlist != max(1, min(kw["nlist"], n)):
        problem = f"has {index.index.nlist} lists, not {kw['nlist']}"
    elif kind == "hnsw" and (built := _hnsw_build(index)) != wanted:
        problem = f"was built with m {built[0]}, ef_construction {built[1]}, not {wanted[0]}, {wanted[1]}"
    else:
        problem = index.mismatch(embeddings)
        if problem is None:
            return index
    log.warning("%s: cached index %s; rebuilding it", path, problem)
    return None


def _hnsw_build(index: FaissIndex) -> tuple[int, int]:
    """(m, ef_construction) an HNSW index was built with."""
    return index.index.hnsw.nb_neighbors(1), index.index.hnsw.efConstruction


def search(
    embeddings: np.ndarray,
    queries: np.ndarray,
    k: int,
    index: str = "exact",
    *,
    cache_prefix: str | os.PathLike | None = None,
    key: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One entry point used by the CLI: "exact" -> exact_search; "flat"/"ivf"/"hnsw" -> faiss, cached beside the
    gallery when cache_prefix and key are given (both or neither; ignored for "exact"); "auto" -> auto_index."""
    if index not in CHOICES:
        raise ValueError(f"unknown index {index!r}; choose from {', '.join(CHOICES)}")
    if index == "auto":
        index = auto_index(len(embeddings))
    if index == "exact":
        return exact_search(embeddings, queries, k)
    if (cache_prefix is None) != (key is None):
        raise ValueError("cache_prefix and key go together: give both or neither")
    if key is None:
        return FaissIndex.build(embeddings, index).search(queries, k)
    return cached_index(embeddings, index, cache_prefix, key).search(queries, k)
