"""Records/s of facekit's RecordReader against real MXNet 1.9.1's MXIndexedRecordIO, reading and JPEG-decoding faces.

Both sides read the same keys in the same order, one process each (and two worker processes for the loader rows),
and decode with the same call, `cv2.imdecode(buf, cv2.IMREAD_COLOR)`. MXNet runs in its own virtual environment
(tests/mxnet_env.py builds it on first use) from an inline script that imports nothing from facekit.

    python bench/bench_recordio.py            # cele.rec + a generated 50,000-record set
    python bench/bench_recordio.py --quick    # a smaller set, well under a minute
    python bench/bench_recordio.py --smoke    # 300 generated records, 300 reads, one run: measures nothing
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from paths import ROOT, SHARED
from torch.utils.data import DataLoader, Dataset

from facekit.data.recordio import RecordReader, unpack
from facekit.data.recset import Sample, open_recognition_set, write_recognition_set

BATCH = 128

MXNET_SIDE = """
import json, multiprocessing, sys, time
import cv2
import mxnet as mx
import numpy as np

def read(rec, keys, decode):
    for key in keys:
        header, image = mx.recordio.unpack(rec.read_idx(key))
        if decode:
            cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)

def open_rec(path):
    return mx.recordio.MXIndexedRecordIO(path[:-4] + ".idx", path, "r")

def init_worker(path):
    global worker_rec
    worker_rec = open_rec(path)

def load_batch(keys):
    images, labels = [], []
    for key in keys:
        header, image = mx.recordio.unpack(worker_rec.read_idx(key))
        images.append(cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR))
        labels.append(header.label if header.flag == 0 else header.label[0])
    return np.stack(images), np.asarray(labels)

print(f"mxnet {mx.__version__}, OpenCV {cv2.__version__}", flush=True)
for line in sys.stdin:  # one task per line, its records/s back
    task = json.loads(line)
    keys = [int(k) for k in open(task["keys"]).read().split()]
    if task["workers"]:  # steady state: timed from the first batch on
        batches = [keys[i:i + task["batch"]] for i in range(0, len(keys), task["batch"])]
        with multiprocessing.Pool(task["workers"], init_worker, (task["rec"],)) as pool:
            loaded = pool.imap(load_batch, batches)
            next(loaded)
            start, count = time.perf_counter(), 0
            for images, labels in loaded:
                count += len(images)
    else:
        rec = open_rec(task["rec"])
        read(rec, keys[:10], task["decode"])
        start, count = time.perf_counter(), len(keys)
        read(rec, keys, task["decode"])
        rec.close()
    print(count / (time.perf_counter() - start), flush=True)
"""


def read(reader: RecordReader, keys: list[int], decode: bool) -> None:
    for key in keys:
        _, image = unpack(reader.read(key))
        if decode:
            cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)


def facekit_rate(task: dict) -> float:
    """Records/s for one task, the same work the MXNet side does for it."""
    keys = [int(k) for k in Path(task["keys"]).read_text().split()]
    if task["workers"]:  # steady state: timed from the first batch on
        loaded = iter(
            DataLoader(RecordDataset(task["rec"], keys), batch_size=task["batch"], num_workers=task["workers"])
        )
        next(loaded)
        start, count = time.perf_counter(), 0
        for images, _ in loaded:
            count += len(images)
    else:
        with RecordReader(task["rec"]) as reader:
            read(reader, keys[:10], task["decode"])
            start, count = time.perf_counter(), len(keys)
            read(reader, keys, task["decode"])
    return count / (time.perf_counter() - start)


def mxnet_rate(mxnet: subprocess.Popen, task: dict) -> float:
    """Records/s of the MXNet side for `task`."""
    mxnet.stdin.write(json.dumps(task) + "\n")
    answer = mxnet.stdout.readline()
    if not answer:
        raise SystemExit(f"the MXNet side stopped (exit {mxnet.wait()}); its error is above")
    return float(answer)


class RecordDataset(Dataset):
    """The least a training loader does: read record `keys[i]`, decode it, return (BGR image, class)."""

    def __init__(self, rec: str, keys: list[int]) -> None:
        self.reader = RecordReader(rec)
        self.keys = keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        header, image = unpack(self.reader.read(self.keys[index]))
        return cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR), int(header.class_label)


def perturbed_faces(n: int, seed: int = 0) -> Iterator[Sample]:
    """`n` 112x112 JPEGs (quality 95) grouped by the 40 ORL people: aligned photos shifted, turned, relit, noised."""
    root = SHARED / "faces" / "orl_aligned_112"
    photos = {(p, k): cv2.imread(str(root / f"s{p}" / f"{k}.jpg")) for p in range(1, 41) for k in range(1, 11)}
    rng = np.random.default_rng(seed)
    noises = rng.normal(0, 2, (16, 112, 112, 3)).astype(np.float32)
    for index in range(n):
        person = index * 40 // n + 1
        image = photos[person, int(rng.integers(1, 11))]
        matrix = cv2.getRotationMatrix2D((56 + rng.uniform(-2, 2), 56 + rng.uniform(-2, 2)), rng.uniform(-5, 5), 1)
        image = cv2.warpAffine(image, matrix, (112, 112), borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        image = image * rng.uniform(0.9, 1.1) + rng.uniform(-10, 10) + noises[rng.integers(16)]
        _, jpeg = cv2.imencode(".jpg", np.clip(image, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])
        yield Sample(person - 1, jpeg.tobytes(), f"s{person}/{index}.jpg")


def repeat_to(keys: list[int], reads: int, rng: np.random.Generator | None) -> list[int]:
    """`keys` in file order (rng None) or shuffled, pass after pass, until at least `reads` keys."""
    passes = -(-reads // len(keys))
    return [int(k) for _ in range(passes) for k in (rng.permutation(keys) if rng is not None else keys)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, help="records in the generated set (default 50000, 3000 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a small generated set and fewer reads of cele.rec")
    parser.add_argument("--repeat", type=int, default=3, help="runs of every measurement, best kept (default 3)")
    parser.add_argument("--smoke", action="store_true", help="tiny sets, one run: measures nothing")
    args = parser.parse_args()
    if args.smoke:
        args.records, args.repeat = args.records or 300, 1  # 3 batches: the 2-worker rows time all but the first
    records = args.records or (3000 if args.quick else 50000)
    cele_reads = 300 if args.smoke else 3000 if args.quick else 30000
    sys.path.insert(0, str(ROOT / "tests"))
    from mxnet_env import start_mxnet

    with tempfile.TemporaryDirectory(prefix="bench_recordio.") as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        write_recognition_set(tmp / "generated", perturbed_faces(records), image_size=(112, 112))
        print(f"generated {records} records in {time.perf_counter() - start:.1f} s\n")
        sets = {
            "cele.rec (300 faces)": (SHARED / "layouts/recognition_train_data/cele.rec", cele_reads),
            f"generated ({records} faces)": (tmp / "generated" / "cele.rec", records),
        }
        rng = np.random.default_rng(0)
        rows, tasks = [], []
        for name, (rec, reads) in sets.items():
            rec.read_bytes()  # into the page cache: both sides read from memory
            with open_recognition_set(rec) as rset:
                image_keys = rset.image_keys
            for order, shuffle in (("sequential", None), ("random", rng)):
                keys = repeat_to(image_keys, reads, shuffle)
                keys_file = tmp / f"keys{len(tasks)}.txt"
                keys_file.write_text(" ".join(map(str, keys)))
                task = {"rec": str(rec), "keys": str(keys_file), "workers": 0, "batch": BATCH}
                rows += [(name, len(keys), order, "read"), (name, len(keys), order, "read+decode")]
                tasks += [task | {"decode": False}, task | {"decode": True}]
                if shuffle is not None:
                    rows.append((name, len(keys), order, "read+decode, 2 workers"))
                    tasks.append(task | {"decode": True, "workers": 2})
        ours, theirs = [0.0] * len(tasks), [0.0] * len(tasks)
        with start_mxnet(MXNET_SIDE) as mxnet:
            versions = mxnet.stdout.readline().strip()
            for _ in range(args.repeat):  # the two sides take turns, so that a busy machine hurts both alike
                for i, task in enumerate(tasks):
                    ours[i] = max(ours[i], facekit_rate(task))
                    theirs[i] = max(theirs[i], mxnet_rate(mxnet, task))
            mxnet.stdin.close()

    print(f"{'file':<26}{'reads':>7}  {'order':<11}{'work':<24}{'facekit/s':>11}{'mxnet/s':>11}{'ratio':>7}")
    for (name, reads, order, work), a, b in zip(rows, ours, theirs):
        print(f"{name:<26}{reads:>7}  {order:<11}{work:<24}{a:>11,.0f}{b:>11,.0f}{a / b:>7.2f}")
    print(
        f"\nbest of {args.repeat}; 2 workers: facekit = torch DataLoader, mxnet = multiprocessing.Pool.imap, both over"
    )
    print(f"batches of {BATCH}, timed from the first batch; decode = cv2.imdecode(buf, cv2.IMREAD_COLOR) on both sides")
    print(f"facekit side: torch {torch.__version__}, OpenCV {cv2.__version__}; mxnet side: {versions}")
    print(f"{os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
