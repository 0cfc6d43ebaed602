"""Top-k search time and peak memory: facekit's exact_search (numpy) against the torch version facekit used before
(bench/search_peer.py), faiss IndexFlatIP and scikit-learn's NearestNeighbors(algorithm="brute", metric="cosine"), on
galleries of random unit vectors.

Every (method, gallery, queries) cell runs in a fresh spawned process that imports only its own library, generates
the gallery (seeded, in float32 blocks), notes ru_maxrss, prepares the method (faiss: IndexFlatIP.add, which copies
the gallery; scikit-learn: fit) and times searches, best kept. Peak MiB is the growth of ru_maxrss from right after
the gallery was generated: index, score buffers and all. Building the index is not timed.

    python bench/bench_gallery.py            # 10k, 100k and 1M x 512; 1, 100 and 1,000 queries
    python bench/bench_gallery.py --quick    # 10k and 100k only
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

METHODS = ("facekit", "torch", "faiss", "sklearn")
MODULES = {
    "facekit": ("facekit.gallery.search",),
    "torch": ("torch", "search_peer"),
    "faiss": ("faiss",),
    "sklearn": ("sklearn.neighbors",),
}
BLOCK = 1024  # rows generated at a time: generating leaves ~4 MiB of slack in ru_maxrss


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """[n, dim] float32 rows uniform on the unit sphere, the same for the same seed."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, BLOCK):
        block = rng.standard_normal((min(BLOCK, n - start), dim), dtype=np.float32)
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def prepare(method: str, gallery: np.ndarray, k: int) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A function queries [Q, D] -> (similarities, indices) [Q, k] for `method` over `gallery`."""
    if method == "facekit":
        from facekit.gallery.search import exact_search

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


def run_alone(*task: object) -> dict:
    """`measure(*task)` in a fresh spawned process."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure, task)


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
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if not args.quick or int(s) <= 100000]
    counts = [int(q) for q in args.queries.split(",")]
    load = os.getloadavg()[0]

    rows = []
    for n in sizes:
        for q in counts:
            cell = {}
            for method in METHODS:
                cell[method] = run_alone(method, n, q, args.dim, args.k, args.repeats, args.max_seconds)
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
