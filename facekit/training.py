"""Pieces every training loop shares: a log file, RNG state for exact resume, and a graceful Ctrl-C."""

from __future__ import annotations

import json
import logging
import random
import signal
from pathlib import Path

import numpy as np
import torch


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
