"""Does decoding keep up with the GPU? The recognizer's training loader on real crops (cele.rec of
`layouts/recognition_train_data`, repeated epoch after epoch, with train-recognize's augmentation), measured alone,
then feeding the training step of bench_train_recognize.py, beside the same step on one synthetic batch.

    python bench/bench_loader.py [--data DIR] [--backbone iresnet50] [--batch 128] [--batches 20] [--workers N]
                                 [--device auto] [--smoke]

The loader is facekit's own (KeyedFaces + GlobalBatchSampler, the DataLoader with --workers processes, pinned
memory on CUDA); "keeps up" when the fed step reaches 90 % of the synthetic one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from bench_train_recognize import make_step, timed
from paths import ROOT, SHARED


def batches(data: str, batch: int, workers: int, pin: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """train-recognize's batches of `data`, augmented, epoch after epoch without end."""
    from torch.utils.data import DataLoader

    from facekit.data.datasets import open_training_source
    from facekit.recognition.augment import Augment
    from facekit.recognition.batches import GlobalBatchSampler
    from facekit.recognition.trainset import KeyedFaces, KeyedSampler

    source, _ = open_training_source(Path(data))
    dataset = KeyedFaces(source, seed=0, aug=Augment(), name=data)
    sampler = GlobalBatchSampler(len(dataset), min(batch, len(dataset)), seed=0)
    loader = DataLoader(dataset, batch_sampler=KeyedSampler(sampler), num_workers=workers, pin_memory=pin,
                        persistent_workers=workers > 0)  # fmt: skip
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        yield from loader
        epoch += 1


def loader_rate(stream: Iterator, count: int) -> float:
    """images/s of `count` batches drawn from `stream` (after one warm-up batch)."""
    next(stream)
    start, images = time.perf_counter(), 0
    for _ in range(count):
        images += len(next(stream)[0])
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(SHARED / "layouts/recognition_train_data"))
    parser.add_argument("--backbone", default="iresnet50")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--classes", type=int, default=10000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--smoke", action="store_true", help="mobilefacenet, 2 batches of 4, no workers")
    args = parser.parse_args()
    if args.smoke:
        args.backbone, args.batch, args.batches, args.workers = "mobilefacenet", 4, 2, 0
    sys.path.insert(0, str(ROOT))
    from facekit.distributed import resolve_device

    device = resolve_device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"training loader on {args.data}: batch {args.batch}, {args.workers} workers, {args.backbone}, {where}")
    stream = batches(args.data, args.batch, args.workers, pin=device.type == "cuda")
    alone = loader_rate(stream, args.batches)
    step = make_step(args.backbone, classes=args.classes, device=device, fast=True)
    images = torch.randn(args.batch, 3, 112, 112, device=device)
    labels = torch.randint(0, args.classes, (args.batch,), device=device)
    synthetic = args.batches * args.batch / timed(lambda: step(images, labels), args.batches, device)

    def fed() -> None:
        crops, classes = next(stream)
        step(crops.to(device, non_blocking=True), classes.to(device, non_blocking=True))

    fed_rate = args.batches * args.batch / timed(fed, args.batches, device)
    print(f"{'what':<40}{'images/s':>10}")
    print(f"{'loader alone (decode + augment)':<40}{alone:>10.1f}")
    print(f"{'training step, one synthetic batch':<40}{synthetic:>10.1f}")
    print(f"{'training step fed by the loader':<40}{fed_rate:>10.1f}")
    verdict = "keeps up" if fed_rate >= 0.9 * synthetic else "is the limit"
    print(f"the loader {verdict}: fed step at {fed_rate / synthetic:.0%} of the synthetic one")


if __name__ == "__main__":
    main()
