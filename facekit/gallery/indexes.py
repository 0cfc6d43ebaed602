"""Approximate and faiss indexes over a gallery's L2-normalised embeddings: faiss flat (exact), IVF and HNSW, cached
beside the gallery, and LSH (binary codes searched by Hamming distance, candidates re-ranked exactly), built in memory.

Every search returns (scores float32 [Q, k'], indices int64 [Q, k']) sorted by descending score, k' = min(k, N).
Cached faiss indexes are named after a key that changes whenever the embeddings do, and checked against the
embeddings before each use (FaissIndex.mismatch): a stale or poisoned cache file is rebuilt, never trusted.
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
from facekit.gallery.exact import SCORE_BUDGET, best_of, check_queries, check_shape

if TYPE_CHECKING:
    import faiss

log = logging.getLogger(__name__)

CACHED = ("flat", "ivf", "hnsw")  # the faiss indexes cached beside a gallery
# HNSW defaults (faiss IndexHNSWFlat): M links per node (2M on the base layer), candidate lists of efConstruction
# while building and efSearch while searching. bench/bench_gallery.py, 100k x 512 clustered, M 32: efConstruction
# 40 gave recall@1 0.964 / 0.996 / 0.997 at efSearch 32 / 64 / 128, efConstruction 80 gave 0.996 / 1.000 / 1.000;
# at 300k x 512 efConstruction 80 gave 0.902 / 0.983 / 0.994 / 0.996 at efSearch 32 / 64 / 128 / 256 (one query
# 1.3 / 1.4 / 2.4 / 4.3 ms under a load of 9): recall falls as galleries grow, so efSearch 256 by default.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 256
# LSH defaults (faiss IndexLSH with a random rotation: the signs of NBITS random projections, sim-hash): a query's
# RERANK nearest codes by Hamming distance are re-ranked by their exact inner products. bench/bench_gallery.py,
# 1M x 512 clustered (two views of a person at cosine ~0.61), 2 threads, 256 candidates: 128 bits gave recall@1
# 0.964 (1.5 ms a query), 256 bits 1.000 (2.3 ms); in a probe 160 bits gave 0.988, 192 bits 1.000 but at 3.1 ms
# (faiss has a faster Hamming distance for 32-byte codes). Fewer bits cannot tell a person's views from the
# closest of a million strangers; with weaker matches (views at cosine ~0.41) 256 bits found 0.917, 512 bits and
# 1,024 candidates 1.000 (README, Benchmarks).
LSH_NBITS = 256
LSH_RERANK = 256
LSH_SHARD_ROWS = 65536  # rows a search thread takes at least
PARAMETERS = {
    "flat": (),
    "ivf": ("nlist", "nprobe"),
    "hnsw": ("m", "ef_construction", "ef_search"),
    "lsh": ("nbits", "rerank"),
}
# each parameter's allowed range: bounded so that a parameter cannot ask for unbounded memory or time
RANGES = {
    "nlist": (1, 65536),
    "nprobe": (1, 65536),
    "m": (2, 256),
    "ef_construction": (1, 4096),
    "ef_search": (1, 4096),
    "nbits": (8, 2048),
    "rerank": (1, 65536),
}
TRAIN_POINTS_PER_LIST = 64  # IVF k-means trains on at most this many embeddings per list (faiss advises 30-256)
CHECKED_ASSIGNMENTS = 1024  # a cached IVF index must have this many sampled rows in their nearest centroid's list
CHECKED_SEARCHES = 256  # a cached HNSW index must find SELF_RECALL of this many sampled rows when they are searched
SELF_RECALL = 0.99
KEY = re.compile(r"[A-Za-z0-9_-]+")


class LshIndex:
    """Sim-hash codes of a gallery's rows (faiss IndexLSH: a fixed random rotation to `nbits` dimensions, one bit per
    sign), searched by Hamming distance for `rerank` candidates (at least k) that are then ranked by their exact inner
    products with the gallery's own rows (held by reference, not copied). The codes are split in `shards`
    contiguous parts searched on as many threads (faiss IndexShards; None: one per CPU this process may use, at
    most 8, each at least LSH_SHARD_ROWS rows). Memory: nbits / 8 bytes a row. Not cached: building costs one
    [N, D] x [D, nbits] product (about 9 s at 1M x 512, 256 bits, on 2 cores)."""

    kind = "lsh"

    def __init__(
        self, embeddings: np.ndarray, *, nbits: int | None = None, rerank: int | None = None, shards: int | None = None
    ) -> None:
        import faiss

        _check_build("lsh", ("lsh",), nbits=nbits, rerank=rerank)
        n, dim = check_shape(embeddings, "embeddings")
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        self.nbits, self.rerank = nbits or LSH_NBITS, rerank or LSH_RERANK
        shards = max(1, min(shards or len(os.sched_getaffinity(0)), 8, n // LSH_SHARD_ROWS))
        self.index = faiss.IndexShards(dim, True, True)  # threaded, row numbers continue from shard to shard
        self.parts = [faiss.IndexLSH(dim, self.nbits, True, False) for _ in range(shards)]  # the same rotation
        block = SCORE_BUDGET // dim  # faiss rotates a whole add at once: bounded blocks
        for number, part in enumerate(self.parts):
            rows = self.embeddings[number * n // shards : (number + 1) * n // shards]
            for start in range(0, len(rows), block):
                part.add(rows[start : start + block])
            self.index.add_shard(part)  # the shard is not owned: self.parts keeps it alive

    def __len__(self) -> int:
        return self.index.ntotal

    @property
    def nbytes(self) -> int:
        """The memory the index holds: codes and rotations (the rows it re-ranks with are the gallery's)."""
        return sum(part.ntotal * part.code_size + part.d * part.nbits * 4 for part in self.parts)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Like `exact_search`: the scores are exact, the rows approximate (a row outside the candidates is missed)."""
        queries = check_queries(queries, self.index.d, k)
        k = min(k, len(self))
        if len(queries) == 0 or k == 0:
            return np.empty((len(queries), k), np.float32), np.empty((len(queries), k), np.int64)
        wanted = min(max(self.rerank, k), len(self))
        step = max(1, SCORE_BUDGET // (wanted * self.index.d))  # queries re-ranked at a time: bounded gathers
        found = [self._rerank(queries[s : s + step], wanted, k) for s in range(0, len(queries), step)]
        return np.concatenate([s for s, _ in found]), np.concatenate([i for _, i in found])

    def _rerank(self, queries: np.ndarray, wanted: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        _, rows = self.index.search(queries, wanted)
        scores = np.matmul(self.embeddings[rows], queries[:, :, None])[:, :, 0]  # [Q, wanted]
        return best_of(scores, rows, k)


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

        n, dim = check_shape(embeddings, "embeddings")
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
        queries = check_queries(queries, self.index.d, k)
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

        n, dim = check_shape(embeddings, "embeddings")
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


def check_params(kind: str, params: dict[str, int]) -> None:
    """Raise ValueError (one line) unless `params` are parameters of index `kind` (flat, ivf, hnsw or lsh), in range."""
    _check_build(kind, tuple(PARAMETERS), **params)


def _check_build(kind: str, kinds: tuple[str, ...] = CACHED, **params: int | None) -> None:
    """Raise ValueError unless `kind` is one of `kinds` and `params` (None: default) are its own and in range."""
    if kind not in kinds:
        raise ValueError(f"unknown faiss index {kind!r}; choose from {', '.join(kinds)}")
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
    n, dim = check_shape(embeddings, "embeddings")
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
