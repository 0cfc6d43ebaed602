"""Shared fixtures. Tests on ../shared/data fail under CI=true when it is missing, and skip only outside CI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

SHARED_DATA = Path(
    os.environ.get("FACEKIT_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real test data folder (../shared/data relative to the project root)."""
    if not (SHARED_DATA / "README.md").is_file():
        message = f"real test data not found at {SHARED_DATA} (set FACEKIT_SHARED_DATA)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return SHARED_DATA


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def cli(runner: CliRunner):
    """Invoke `facekit ARGS...`; returns the click Result."""
    from facekit.cli import main

    def invoke(*args: object, **kwargs):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False, **kwargs)

    return invoke
