"""Gallery search benchmarks, two tables.

"indexes" (`--table indexes`): facekit's approximate indexes (faiss IVF and HNSW at their defaults, HNSW also at the
efSearch values of --ef-search, LSH at the --lsh settings) against its exact search, on clustered synthetic galleries
(N / 10 identities x 10 noisy views of a random unit centre, noise --noise / sqrt(D) per coordinate, 0.8 as
tests/test_gallery_search.py makes them); queries are fresh noisy views of random identities. Exact search gives the
truth: recall@1 = the share of queries whose top-1 row is exact search's top-1 (or scores as high, 1e-6), recall@5 =
the mean share of exact search's top 5 rows found in the index's top 5. Per index: build time, the memory it holds
(rows, links, lists; LSH: its codes, as it re-ranks with the gallery's own rows), the mean time of one query (queries
searched one at a time) and the best time of a batch. The exact row also shows the ceiling: numpy
matmul of the same shapes (65,536 gallery rows at a time into one reused output, no top-k, the faster of the two
output layouts) as GFLOP/s, and exact search's share of it. One spawned process per gallery size.

"peers" (`--table peers`): top-k search time and peak memory: facekit's exact_search (numpy) against the torch
version facekit used before (bench/search_peer.py), faiss IndexFlatIP and scikit-learn's
NearestNeighbors(algorithm="brute", metric="cosine"), on galleries of random unit vectors.

Every peers (method, gallery, queries) cell runs in a fresh spawned process that imports only its own library,
generates the gallery (seeded, in float32 blocks), notes ru_maxrss, prepares the method (faiss: IndexFlatIP.add,
which copies the gallery; scikit-learn: fit) and times searches, best kept. Peak MiB is the growth of ru_maxrss from
right after the gallery was generated: index, score buffers and all. Building the index is not timed.

    python bench/bench_gallery.py                            # peers: 10k, 100k and 1M x 512
    python bench/bench_gallery.py --quick                    # peers: 10k and 100k only
    python bench/bench_gallery.py --table indexes --quick    # indexes: 10k and 100k
    python bench/bench_gallery.py --table indexes --sizes 1000000 --threads 2 --cache /tmp/bench-cache
    python bench/bench_gallery.py --table indexes --sizes 1000000 --approximate lsh --lsh 128:256,256:1024 --noise 1.2
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import os
import resource
import sys
import time
from collections.abc import Callable

import numpy as np
from paths import ROOT

METHODS = ("facekit", "torch", "faiss", "sklearn")
MODULES = {
    "facekit": ("facekit.gallery.exact",),
    "torch": ("torch", "search_peer"),
    "faiss": ("faiss",),
    "sklearn": ("sklearn.neighbors",),
}
BLOCK = 1024  # rows generated at a time: generating leaves ~4 MiB of slack in ru_maxrss
GEMM_ROWS = 65536  # gallery rows per matmul in the GEMM ceiling
PER_ID = 10  # views per identity in clustered galleries


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """[n, dim] float32 rows uniform on the unit sphere, the same for the same seed."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, BLOCK):
        block = rng.standard_normal((min(BLOCK, n - start), dim), dtype=np.float32)
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def clustered(n: int, dim: int, queries: int, seed: int = 0, noise: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """A gallery [n, dim] of n / PER_ID identities x PER_ID noisy views (a unit centre plus Gaussian noise of norm
    about `noise`: two views of one identity have a cosine of about 1 / (1 + noise^2)), and [queries, dim] fresh
    views of random identities; float32, unit rows, generated in blocks (no float64 copy of the gallery)."""
    rng = np.random.default_rng(seed)
    ids = max(1, n // PER_ID)
    centres = rng.standard_normal((ids, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = np.float32(noise / np.sqrt(dim))

    def views(owners: np.ndarray) -> np.ndarray:
        block = centres[owners] + noise * rng.standard_normal((len(owners), dim), dtype=np.float32)
        return block / np.linalg.norm(block, axis=1, keepdims=True)

    gallery = np.empty((n, dim), np.float32)
    for start in range(0, n, BLOCK):
        gallery[start : start + BLOCK] = views(np.arange(start, min(n, start + BLOCK)) // PER_ID % ids)
    return gallery, views(rng.integers(0, ids, queries))


def index_mib(index: object) -> float:
    """The memory a facekit index holds, MiB, from its structures: rows, IVF centroids and ids, HNSW links, LSH codes
    and rotation (LSH re-ranks with the gallery's own rows: not counted)."""
    inner, rows = index.index, index.index.ntotal * index.index.d * 4
    if index.kind == "lsh":
        return index.nbytes / 2**20
    if index.kind == "ivf":
        return (rows + inner.ntotal * 8 + inner.nlist * inner.d * 4) / 2**20
    hnsw = inner.hnsw
    return (rows + hnsw.neighbors.size() * 4 + hnsw.levels.size() * 4 + hnsw.offsets.size() * 8) / 2**20


def per_query_ms(search: Callable[[np.ndarray], object], queries: np.ndarray, max_seconds: float) -> float:
    """Mean ms of searching `queries` one at a time (stops early after max_seconds), after one untimed search."""
    search(queries[:1])
    start, done = time.perf_counter(), 0
    while done < len(queries) and (not done or time.perf_counter() - start < max_seconds):
        search(queries[done : done + 1])
        done += 1
    return (time.perf_counter() - start) / done * 1000


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    """The best time of `repeats` runs, after one untimed run."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def gemm_seconds(gallery: np.ndarray, queries: np.ndarray, repeats: int) -> float:
    """Best time of the raw products of gallery [N, D] and queries [Q, D] (the ceiling of exact search): numpy matmul
    of GEMM_ROWS gallery rows at a time into one reused output, the faster of the two output layouts [rows, Q] and
    [Q, rows]."""
    rows_first = np.empty((min(GEMM_ROWS, len(gallery)), len(queries)), np.float32)
    queries_first = np.empty((len(queries), min(GEMM_ROWS, len(gallery))), np.float32)

    def run(layout: str) -> None:
        for start in range(0, len(gallery), GEMM_ROWS):
            rows = gallery[start : start + GEMM_ROWS]
            if layout == "rows":
                np.matmul(rows, queries.T, out=rows_first[: len(rows)])
            else:
                np.matmul(queries, rows.T, out=queries_first[:, : len(rows)])

    return min(best_seconds(lambda layout=layout: run(layout), repeats) for layout in ("rows", "queries"))


def recalls(truth: tuple[np.ndarray, np.ndarray], found: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    """(recall@1, recall@5) of found (scores, indices) [Q, 5] against exact search's."""
    (true_scores, true_rows), (scores, rows) = truth, found
    top1 = (rows[:, 0] == true_rows[:, 0]) | (scores[:, 0] >= true_scores[:, 0] - 1e-6)
    at5 = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(true_rows[:, :5], rows[:, :5], strict=True)])
    return float(top1.mean()), float(at5)


def measure_indexes(n: int, dim: int, batch: int, ef_searches: list[int], opts: dict) -> None:
    """Run in a child process: print one table row per index (exact first) for a clustered gallery of n rows, each
    as soon as it is measured."""
    import faiss

    from facekit.gallery.exact import exact_search
    from facekit.gallery.indexes import HNSW_EF_SEARCH, FaissIndex, LshIndex, cached_index

    if opts["threads"]:
        faiss.omp_set_num_threads(opts["threads"])
    gallery, queries = clustered(n, dim, batch, noise=opts["noise"])
    singles = queries[: opts["singles"]]
    truth = exact_search(gallery, queries, 5)
    exact_batch = best_seconds(lambda: exact_search(gallery, queries, 5), opts["repeats"])
    gemm_batch = gemm_seconds(gallery, queries, opts["repeats"])
    gemm_one = gemm_seconds(gallery, queries[:1], opts["repeats"] * 3)
    exact_one = best_seconds(lambda: exact_search(gallery, queries[:1], 5), opts["repeats"] * 3)
    flops = 2.0 * n * dim
    ceiling = (
        f"1 query: GEMM {flops / gemm_one / 1e9:.1f} GFLOP/s, exact {gemm_one / exact_one:.0%} of it; {batch:,}: "
        f"GEMM {flops * batch / gemm_batch / 1e9:.1f} GFLOP/s, exact {gemm_batch / exact_batch:.0%}"
    )
    one = per_query_ms(lambda q: exact_search(gallery, q, 5), singles, opts["max_seconds"])
    print_row(n, dim, "exact", 0.0, 0.0, (1.0, 1.0), one, exact_batch * 1000, ceiling)
    for kind in opts["approximate"]:
        if kind == "lsh":
            for nbits, rerank in opts["lsh"]:
                start = time.perf_counter()
                index = LshIndex(gallery, nbits=nbits, rerank=rerank)
                build = time.perf_counter() - start
                measure_index(index, f"lsh ({nbits} bits, rerank {rerank})", build, truth, queries, singles, opts)
            continue
        start = time.perf_counter()
        if opts["cache"]:
            index = cached_index(gallery, kind, os.path.join(opts["cache"], "bench"), f"n{n}-d{dim}")
        else:
            index = FaissIndex.build(gallery, kind)
        build = time.perf_counter() - start
        if kind == "ivf":
            measure_index(index, f"ivf (nprobe {index.index.nprobe} of {index.index.nlist})", build, truth, queries,
                          singles, opts)  # fmt: skip
            continue
        hnsw = index.index.hnsw
        for ef in sorted({HNSW_EF_SEARCH, *ef_searches}):
            hnsw.efSearch = ef
            name = f"hnsw (M {hnsw.nb_neighbors(1)}, efC {hnsw.efConstruction}, efS {ef})"
            measure_index(index, name, build, truth, queries, singles, opts)


def measure_index(index: object, name: str, build: float, truth: tuple, queries: np.ndarray, singles: np.ndarray,
                  opts: dict) -> None:  # fmt: skip
    """Print the table row of one index at one setting: recall against exact search, one query, a batch."""
    n, dim = (len(index), index.index.d)
    found = recalls(truth, index.search(queries, 5))
    one = per_query_ms(lambda q: index.search(q, 5), singles, opts["max_seconds"])
    many = best_seconds(lambda: index.search(queries, 5), opts["repeats"]) * 1000
    print_row(n, dim, name, build, index_mib(index), found, one, many, "")


def print_row(n: int, dim: int, name: str, build: float, mib: float, found: tuple, one: float, many: float,
              ceiling: str) -> None:  # fmt: skip
    print(f"| {n:,} x {dim} | {name} | {build:,.1f} | {mib:,.0f} | {found[0]:.3f} | {found[1]:.3f} | {one:,.2f} | "
          f"{many:,.0f} | {ceiling} |", flush=True)  # fmt: skip


def indexes_table(sizes: list[int], args: argparse.Namespace) -> None:
    ef_searches = [int(e) for e in args.ef_search.split(",") if e]
    opts = {"threads": args.threads, "singles": args.singles, "repeats": args.repeats,
            "max_seconds": args.max_seconds, "cache": args.cache, "noise": args.noise,
            "lsh": [tuple(int(v) for v in pair.split(":")) for pair in args.lsh.split(",") if pair],
            "approximate": [kind for kind in args.approximate.split(",") if kind]}  # fmt: skip
    print(f"| gallery | index | build s | index MiB | recall@1 | recall@5 | 1 query ms | {args.batch:,} queries ms "
          "| exact vs numpy GEMM |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---|", flush=True)
    load = os.getloadavg()[0]
    if args.threads:  # numpy's BLAS in the spawned processes too: threads that wait for a busy core cost dearly
        os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(args.threads)
    for n in sizes:
        run_alone(measure_indexes, n, args.dim, args.batch, ef_searches, opts)
    import faiss

    threads = args.threads or faiss.omp_get_max_threads()
    print(f"\n{args.batch:,} queries, k = 5; 1 query: mean over up to {args.singles} queries searched one at a time;")
    print(f"batch: best of {args.repeats}; index MiB: what the index holds (rows, links, lists; LSH: codes); ", end="")
    print("build s: ", end="")
    print(f"{'loaded from --cache or ' if args.cache else ''}built;")
    print(
        f"{threads} faiss threads; faiss {faiss.__version__}, numpy {np.__version__}; {os.cpu_count()} CPUs, ", end=""
    )
    print(f"load average {load:.1f} before, ", end="")
    print(f"{os.getloadavg()[0]:.1f} after\n")


def prepare(method: str, gallery: np.ndarray, k: int) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A function queries [Q, D] -> (similarities, indices) [Q, k] for `method` over `gallery`."""
    if method == "facekit":
        from facekit.gallery.exact import exact_search

        return lambda queries: exact_search(gallery, queries, k)
    if method == "torch":
        from search_peer import torch_exact_search

        return lambda queries: torch_exact_search(gallery, queries, k)
    if method == "faiss":
        import faiss

        index = faiss.IndexFlatIP(gallery.shape[1])
        index.add(gallery)
        return lambda queries: index.search(queries, k)
    from sklearn.neighbors import NearestNeighbors

    knn = NearestNeighbors(n_neighbors=k, algorithm="brute", metric="cosine").fit(gallery)

    def search(queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        distances, indices = knn.kneighbors(queries)
        return 1 - distances, indices

    return search


def measure(method: str, n: int, q: int, dim: int, k: int, repeats: int, max_seconds: float) -> dict:
    """Run in a child process: best search time, peak extra memory and top-1 (index, score) for one cell."""
    for name in MODULES[method]:
        importlib.import_module(name)
    gallery = unit_vectors(n, dim, seed=0)
    queries = unit_vectors(q, dim, seed=1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    search = prepare(method, gallery, k)
    times: list[float] = []
    while not times or (len(times) < repeats and sum(times) < max_seconds):
        start = time.perf_counter()
        scores, indices = search(queries)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    return {"ms": min(times) * 1000, "runs": len(times), "mib": peak / 1024, "top1": indices[:, 0], "s1": scores[:, 0]}


def run_alone(function: Callable, *task: object) -> object:
    """`function(*task)` in a fresh spawned process."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, task)


def agreement(ours: dict, theirs: dict) -> str:
    """'Q/Q' when facekit's top-1 equals a peer's for every query; mismatches within 1e-5 in score count as ties."""
    same = ours["top1"] == theirs["top1"]
    ties = np.sum(~same & (np.abs(ours["s1"] - theirs["s1"]) <= 1e-5))
    return f"{same.sum()}/{len(same)}" + (f" ({ties} float ties)" if ties else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="gallery sizes (default 10k, 100k, 1M)")
    parser.add_argument("--queries", default="1,100,1000", help="query counts (default 1, 100, 1000)")
    parser.add_argument("--dim", type=int, default=512, help="embedding size (default 512)")
    parser.add_argument("--k", type=int, default=5, help="neighbours per query (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="timed searches per cell, best kept (default 3)")
    parser.add_argument(
        "--max-seconds", type=float, default=60, help="no further repeats once a cell's searches took this long"
    )
    parser.add_argument("--quick", action="store_true", help="galleries of 10k and 100k only")
    parser.add_argument(
        "--table", choices=["peers", "indexes", "both", "enrol"], default="peers",
        help="(default peers; enrol: bench/gallery_enrol.py's enrolment and in-place append at the largest --sizes)",
    )  # fmt: skip
    parser.add_argument("--batch", type=int, default=1000, help="indexes: queries per batch (default 1000)")
    parser.add_argument("--singles", type=int, default=200, help="indexes: queries searched one at a time (200)")
    parser.add_argument("--ef-search", default="32,64", help="indexes: HNSW efSearch values beside the default")
    parser.add_argument("--threads", type=int, default=0, help="indexes: faiss and BLAS threads (default: theirs)")
    parser.add_argument(
        "--approximate", default="ivf,hnsw,lsh", help="indexes: the approximate ones (default ivf,hnsw,lsh)"
    )
    parser.add_argument("--lsh", default="128:256,256:256", help="indexes: LSH NBITS:RERANK settings (default "
                        "128:256,256:256)")  # fmt: skip
    parser.add_argument("--noise", type=float, default=0.8, help="indexes: view noise (default 0.8: two views of "
                        "one identity at cosine ~0.61; 1.2: ~0.41)")  # fmt: skip
    parser.add_argument("--cache", help="indexes: a folder where built indexes are cached (facekit's cache)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))  # facekit from this checkout, in the spawned processes too
    sizes = [int(s) for s in args.sizes.split(",") if not args.quick or int(s) <= 100000]
    if args.table == "enrol":
        from gallery_enrol import enrolment_table

        for measure, value in enrolment_table(max(sizes), dim=args.dim):
            print(f"| {measure} | {value} |")
        return
    if args.table != "peers":
        indexes_table(sizes, args)
    if args.table != "indexes":
        peers_table(sizes, args)


def peers_table(sizes: list[int], args: argparse.Namespace) -> None:
    counts = [int(q) for q in args.queries.split(",")]
    load = os.getloadavg()[0]

    rows = []
    for n in sizes:
        for q in counts:
            cell = {}
            for method in METHODS:
                cell[method] = run_alone(measure, method, n, q, args.dim, args.k, args.repeats, args.max_seconds)
                print(f"{n:>9,} x {q:>5,} {method:<8}{cell[method]['ms']:>12,.1f} ms", file=sys.stderr, flush=True)
            rows.append((n, q, cell))

    print(f"| gallery | queries | {' | '.join(f'{m} ms' for m in METHODS)} | facekit/torch | facekit/faiss | ", end="")
    print(f"{' | '.join(f'{m} MiB' for m in METHODS)} | facekit top-1 = torch | facekit top-1 = faiss |")
    print("|" + "---:|" * (6 + 2 * len(METHODS)))
    for n, q, cell in rows:
        times = " | ".join(f"{cell[m]['ms']:,.1f}" + ("" if cell[m]["runs"] == args.repeats else "*") for m in METHODS)
        memory = " | ".join(f"{cell[m]['mib']:,.0f}" for m in METHODS)
        ratios = " | ".join(f"{cell['facekit']['ms'] / cell[peer]['ms']:.2f}" for peer in ("torch", "faiss"))
        top1 = " | ".join(agreement(cell["facekit"], cell[peer]) for peer in ("torch", "faiss"))
        print(f"| {n:,} x {args.dim} | {q:,} | {times} | {ratios} | {memory} | {top1} |")

    import faiss
    import sklearn
    import torch

    print(f"\nk = {args.k}; time: best of {args.repeats} searches (* fewer: a cell stops repeating after")
    print(f"{args.max_seconds:g} s); MiB: ru_maxrss growth after generating the gallery, index building included")
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), faiss {faiss.__version__}, ", end="")
    print(f"scikit-learn {sklearn.__version__}, numpy {np.__version__}; {os.cpu_count()} CPUs, ", end="")
    print(f"load average {load:.1f} before and {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
