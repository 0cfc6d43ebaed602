"""The fp16 loss-scale watchdog (training.check_loss_scale) on a real GradScaler: overflowing steps halve the scale
until it collapses, and the trainer then stops with one line."""

from __future__ import annotations

import pytest
import torch

from facekit.errors import FacekitError
from facekit.training import MIN_LOSS_SCALE, check_loss_scale


def overflowing_step(scaler: torch.amp.GradScaler, param: torch.nn.Parameter, opt: torch.optim.Optimizer) -> None:
    """One step whose gradient is inf: the scaler skips the update and halves its scale."""
    opt.zero_grad()
    scaler.scale(param.sum() * float("inf")).backward()
    scaler.step(opt)
    scaler.update()


def test_collapsing_scale_stops_training():
    param = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([param], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=8.0, growth_interval=1000)
    assert check_loss_scale(scaler, 0) == 8.0
    steps = 0
    with pytest.raises(FacekitError, match=r"fp16 loss scale collapsed to 0.5 at step 4 .*--amp bf16"):
        while True:
            overflowing_step(scaler, param, opt)
            steps += 1
            check_loss_scale(scaler, steps)
    assert steps == 4 and float(scaler.get_scale()) < MIN_LOSS_SCALE  # 8 -> 4 -> 2 -> 1 -> 0.5
    assert torch.equal(param.detach(), torch.ones(3))  # no update was ever applied


def test_disabled_scaler_is_not_watched():
    assert check_loss_scale(torch.amp.GradScaler("cpu", enabled=False), 10) is None
