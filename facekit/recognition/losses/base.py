"""What the three kinds of loss share: float32 forwards and the epsilons that keep gradients finite."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor, nn

ACOS_EPS = 1e-7  # acos' is infinite at +-1
DIST_EPS = 1e-12  # sqrt' is infinite at 0


def float32(forward: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """Run `forward(self, x, labels, *more)` on float32 `x` (and float32 tensors in `more`, e.g. norms) with autocast
    off: margins and distances need the bits."""

    @functools.wraps(forward)
    def run(self: nn.Module, x: Tensor, labels: Tensor, *more: Tensor | None) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return forward(self, x.float(), labels, *(m.float() if m is not None else None for m in more))

    return run
