"""The skeleton both trainers share (detection/train.py, recognition/train.py): the output directory's file names,
a log file and TensorBoard, atomic checkpoints with the RNG state for exact resume, a graceful Ctrl-C, the
images/s of a window of steps, and the DataLoader's workers joined when training stops on an error."""

from __future__ import annotations

import json
import logging
import random
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from facekit import strict_json
from facekit.distributed import Distributed
from facekit.errors import DataFormatError, FacekitError, MissingDataError
from facekit.fileio import atomic_write
from facekit.modeldir import read_torch_file

CHECKPOINT = "checkpoint.pt"  # the training state --resume continues from
TRAIN_LOG = "train.log"
TENSORBOARD = "tensorboard"
METRICS = "metrics.json"
MIN_LOSS_SCALE = 1.0  # fp16's grad scaler starts at 2^16 and halves at every inf/nan step: below 1 it has collapsed


def log_to(path: Path) -> None:
    """Also write facekit's log records (INFO and up) to `path`."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("facekit")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def rng_state() -> dict:
    """The torch, numpy and Python RNG states, as tensors and strings (loadable with weights_only=True)."""
    return {
        "torch": torch.get_rng_state(),
        "numpy": json.dumps(np.random.get_state()[1].tolist()),
        "python": json.dumps(random.getstate()[1]),
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", np.array(json.loads(state["numpy"]), np.uint32), 624, 0, 0.0))
    random.setstate((3, tuple(json.loads(state["python"])), None))


class InterruptFlag:
    """Turns the first Ctrl-C into a flag checked after each step (so the checkpoint on disk stays consistent);
    a second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.hit = False
        self._previous = None

    def __enter__(self) -> InterruptFlag:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _handle(self, *_: object) -> None:
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True

    def __bool__(self) -> bool:
        return self.hit


@contextmanager
def workers_joined_on_error(loader: DataLoader) -> Iterator[None]:
    """Run the block; when it raises, shut `loader`'s worker processes down and join them before the error goes on.

    A persistent loader keeps its iterator (and the iterator's workers and queue feeder threads) in the loader, and
    the traceback of an error raised through it keeps it too: left to garbage collection, the feeder threads met
    closed pipes at some later moment and printed "OSError: [Errno 9] Bad file descriptor" tracebacks after the
    one-line error. The iterator's shutdown is private to PyTorch; this is the one place facekit calls it."""
    try:
        yield
    except BaseException:
        iterator, loader._iterator = loader._iterator, None
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        raise


class Throughput:
    """Images counted since the last reset, and the seconds they took."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.images, self.started = 0, time.perf_counter()

    def add(self, images: int) -> None:
        self.images += images

    def per_second(self) -> float:
        return self.images / (time.perf_counter() - self.started)


def check_loss_scale(scaler: torch.amp.GradScaler, step: int) -> float | None:
    """The fp16 grad scaler's scale after `step`, or None when it is off (bf16, fp32, the CPU). Raises FacekitError
    once it falls below MIN_LOSS_SCALE: every recent step's gradients were inf or nan, so every update was skipped,
    and training on would only burn time; the last checkpoint is kept."""
    if not scaler.is_enabled():
        return None
    scale = float(scaler.get_scale())
    if scale < MIN_LOSS_SCALE:
        raise FacekitError(
            f"the fp16 loss scale collapsed to {scale:g} at step {step} (the gradients were inf or nan step after "
            "step, so nothing was learnt): train with --amp bf16, or a lower --lr; the last checkpoint is kept"
        )
    return scale


class Trainer:
    """One training run into `out_dir`. A subclass builds its model and `loader`, and defines `run` (the loop),
    `checkpoint` / `restore` (its state to and from checkpoint.pt) and `finish` (the model directory); this class
    writes train.log, TensorBoard, checkpoint.pt (with the RNG states) and metrics.json the same way for both."""

    loader: DataLoader

    def __init__(self, out_dir: Path, dist: Distributed, log: logging.Logger) -> None:
        self.out_dir, self.dist, self.log = out_dir, dist, log
        self.writer = None
        if dist.is_main:
            log_to(out_dir / TRAIN_LOG)

    def run(self, interrupted: InterruptFlag) -> None:
        """Train to the end; after each step, `interrupted` stops it with a log line and KeyboardInterrupt."""
        raise NotImplementedError

    def restore(self, state: dict) -> None:
        """Take up the state `checkpoint()` saved (the RNG states are restored after it)."""
        raise NotImplementedError

    def finish(self) -> dict:
        """Write the model directory; return the final metrics."""
        raise NotImplementedError

    def train(self) -> dict:
        """run() with Ctrl-C handled and the loader's workers joined on an error, then finish()."""
        with InterruptFlag() as interrupted, workers_joined_on_error(self.loader):
            self.run(interrupted)
        return self.finish()

    def open_writer(self) -> None:
        """Start the TensorBoard writer (main process)."""
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.out_dir / TENSORBOARD)) if self.dist.is_main else None

    def report(self, label: str, record: dict) -> None:
        """Log `record` as one line after `label` and its numbers (but step and epoch) to TensorBoard at its step
        (main process)."""
        if not self.dist.is_main:
            return
        self.log.info("%s %s", label, " ".join(f"{k}={v}" for k, v in record.items()))
        for k, v in record.items():
            if isinstance(v, int | float) and k not in ("step", "epoch"):
                self.writer.add_scalar(k if k.startswith("val_") else f"train/{k}", v, record["step"])

    def save_checkpoint(self, state: dict) -> None:
        """Write `state` and the RNG states to checkpoint.pt, atomically (main process)."""
        if not self.dist.is_main:
            return
        with atomic_write(self.out_dir / CHECKPOINT, "wb") as f:
            torch.save({**state, "rng": rng_state()}, f)

    def resume(self) -> None:
        """restore() from checkpoint.pt, then its RNG states; a missing file or one that does not fit this run is a
        one-line error."""
        path = self.out_dir / CHECKPOINT
        if not path.is_file():
            raise MissingDataError(f"{path}: no checkpoint to resume from")
        state = read_torch_file(path)
        try:
            self.restore(state)
            set_rng_state(state["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise DataFormatError(
                f"{path}: not a checkpoint of this training ({type(exc).__name__}: {first}); train into a new "
                "folder, or resume with the settings it was made with"
            ) from None

    def write_metrics(self, metrics: dict) -> None:
        """Write metrics.json and log the names of the directory's files."""
        with atomic_write(self.out_dir / METRICS) as f:
            strict_json.dump(metrics, f, indent=2)
        self.log.info("wrote %s", ", ".join(p.name for p in sorted(self.out_dir.iterdir())))
