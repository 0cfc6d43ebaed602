"""Helpers for reference-equivalence tests: import upstream files from ../shared/oracles by path, and compare.

The oracles are upstream code kept for tests only (see ../shared/oracles/README.md); facekit never imports them.
Missing oracles fail under CI=true and skip elsewhere, like the `shared_data` fixture.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch

ORACLES = Path(
    os.environ.get("FACEKIT_SHARED_ORACLES", Path(__file__).resolve().parents[1].parent / "shared" / "oracles")
)


def oracle_path(relative_path: str) -> Path:
    """The oracle file `relative_path` (e.g. "arcface_torch/losses.py"); skips or fails (CI) when missing."""
    path = ORACLES / relative_path
    if not path.is_file():
        message = f"oracle {relative_path} not found under {ORACLES} (set FACEKIT_SHARED_ORACLES)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def stub_module(name: str, **attributes: object) -> types.ModuleType:
    """A module object named `name` holding `attributes`: for the few names an oracle imports but we lack."""
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


def load_module(relative_path: str, name: str, stubs: dict[str, types.ModuleType] | None = None) -> types.ModuleType:
    """Execute the oracle file `relative_path` as a fresh module called `name`.

    `stubs` maps module names (e.g. "timm.models.layers") to stand-ins that are visible in sys.modules only while
    the file runs its imports; afterwards sys.modules is restored, so stubs never leak into other tests. The loaded
    module is not registered in sys.modules either, so each call gives an independent copy.
    """
    path = oracle_path(relative_path)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    stubs = stubs or {}
    saved = {key: sys.modules.get(key) for key in stubs}
    sys.modules.update(stubs)
    try:
        with warnings.catch_warnings():  # upstream's own style (e.g. AdaFace's invalid escape "\\A") is not ours
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            spec.loader.exec_module(module)
    finally:
        for key, previous in saved.items():
            if previous is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = previous
    return module


def assert_same(name: str, ours: torch.Tensor, theirs: torch.Tensor, rtol: float = 1e-5, atol: float = 0.0) -> None:
    """Assert |ours - theirs| <= atol + rtol * |theirs| elementwise; the failure names `name`, the largest absolute
    and relative differences and where the largest one is."""
    ours, theirs = torch.as_tensor(ours).detach(), torch.as_tensor(theirs).detach()
    assert ours.shape == theirs.shape, f"{name}: shape {tuple(ours.shape)} != oracle's {tuple(theirs.shape)}"
    ours, theirs = ours.to(torch.float64), theirs.to(torch.float64)
    finite = torch.isfinite(theirs)
    same_specials = torch.equal(torch.isfinite(ours), finite) and torch.equal(
        ours[~finite].nan_to_num(), theirs[~finite].nan_to_num()
    )
    assert same_specials, f"{name}: non-finite values (nan/inf) differ from the oracle's"
    diff = torch.where(finite, ours - theirs, torch.zeros_like(ours)).abs()
    if diff.numel() == 0:
        return
    allowed = atol + rtol * theirs.abs()
    bad = diff > allowed
    if bad.any():
        worst = int(diff.argmax())
        where = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), diff.shape))
        relative = (diff / theirs.abs().clamp_min(1e-300)).max().item()
        raise AssertionError(
            f"{name}: {int(bad.sum())}/{diff.numel()} elements differ beyond rtol={rtol:g}, atol={atol:g}; "
            f"largest |diff| {diff.max().item():.3e} at {where} (ours {ours.flatten()[worst].item():.8g}, "
            f"oracle {theirs.flatten()[worst].item():.8g}); largest relative diff {relative:.3e}"
        )
