"""Enrolment at scale: N synthetic D-d faces through the library's append path (Enrolment.add) in batches, the
time per batch near 10% and near 90% of N (linear enrolment keeps them alike), then the gallery written, and M faces
appended to that file in place (seconds, and bytes written against the file's size).

    python bench/gallery_enrol.py                  # 1,000,000 x 512 in batches of 1,000, append 1,000
    python bench/gallery_enrol.py --smoke          # 20,000 x 128: seconds
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facekit.gallery.store import Enrolment, Gallery, ModelStamp  # noqa: E402

STAMP = ModelStamp("synthetic", "0" * 64)


def _written() -> int:
    """Bytes this process has written so far (Linux /proc/self/io write_bytes; 0 elsewhere)."""
    try:
        with open("/proc/self/io") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("write_bytes"))
    except (OSError, StopIteration):
        return 0


def _batch(rng: np.random.Generator, start: int, n: int, dim: int, per_person: int) -> tuple:
    names = [f"person_{(start + i) // per_person:07d}" for i in range(n)]
    return (rng.standard_normal((n, dim), np.float32), names, [f"/photos/{start + i}.jpg" for i in range(n)],
            np.zeros((n, 4), np.float32), np.zeros((n, 5, 2), np.float32), np.ones(n, np.float32))  # fmt: skip


def enrolment_table(
    n: int = 1_000_000, *, batch: int = 1000, dim: int = 512, append: int = 1000, per_person: int = 5,
    folder: Path | None = None, seed: int = 0,
) -> list[tuple[str, str]]:  # fmt: skip
    """(measure, value) rows: ms per Enrolment.add batch of `batch` faces around 10% and 90% of `n` and their
    ratio, joining and writing the n-face gallery, and appending `append` faces to that file in place (seconds,
    bytes written, file size). Batches are generated outside the timed region. The file goes to `folder` (a
    temporary folder when None) and is deleted."""
    rng = np.random.default_rng(seed)
    enrolment = Enrolment(Gallery.empty(dim, STAMP, STAMP, crop_size=112, flip=False))
    times = []
    for start in range(0, n, batch):
        args = _batch(rng, start, min(batch, n - start), dim, per_person)
        t0 = time.perf_counter()
        enrolment.add(*args)
        times.append(time.perf_counter() - t0)
    times = np.array(times)
    window = max(1, len(times) // 100)  # the batches within 1% of N either side

    def around(fraction: float) -> float:
        at = int(fraction * len(times))
        return float(np.median(times[max(0, at - window) : at + window + 1])) * 1e3

    early, late = around(0.1), around(0.9)
    t0 = time.perf_counter()
    gallery = enrolment.gallery()
    joined = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        path = Path(tmp) / "gallery.h5"
        t0 = time.perf_counter()
        gallery.save(path)
        written = time.perf_counter() - t0
        size, inode = path.stat().st_size, path.stat().st_ino
        more = Enrolment(gallery)
        more.add(*_batch(rng, n, append, dim, per_person))
        grown = more.gallery()
        bytes0, t0 = _written(), time.perf_counter()
        grown.save(path)  # in place: the gallery was saved to this file and only gained rows
        appended, appended_bytes = time.perf_counter() - t0, _written() - bytes0
        in_place = path.stat().st_ino == inode
        after = path.stat().st_size
    return [
        (f"enrol {n:,} x {dim} in batches of {batch:,}: ms per batch near {n // 10:,}", f"{early:.2f}"),
        (f"ms per batch near {9 * n // 10:,}", f"{late:.2f}"),
        ("ratio (late / early; linear enrolment: <= 1.5)", f"{late / early:.2f}"),
        ("enrolment total, s", f"{times.sum():.1f}"),
        ("join into one gallery, s", f"{joined:.1f}"),
        ("write the gallery file (whole), s", f"{written:.1f}"),
        ("gallery file size, MB", f"{size / 1e6:.1f}"),
        (f"append {append:,} faces to it in place, s", f"{appended:.2f}"),
        ("bytes written by the append, MB (Linux /proc/self/io)", f"{appended_bytes / 1e6:.1f}"),
        ("file size after, MB", f"{after / 1e6:.1f}"),
        ("appended in place (the same file, not a rewrite)", str(in_place)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--append", type=int, default=1000)
    parser.add_argument("--folder", type=Path, help="where the gallery file is written (default: a temporary one)")
    parser.add_argument("--smoke", action="store_true", help="20,000 x 128: a quick check that it runs")
    args = parser.parse_args()
    n, dim = (20_000, 128) if args.smoke else (args.n, args.dim)
    print(f"machine: {os.cpu_count()} CPUs; numpy {np.__version__}")
    rows = enrolment_table(n, batch=args.batch, dim=dim, append=args.append, folder=args.folder)
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value:>10}")


if __name__ == "__main__":
    main()
