"""Fixtures of the reliability suite (the shared ones, cli, shared_data, scrfd and random_recognizer, come from
tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from .helpers import KNN


@pytest.fixture(scope="session")
def knn_gallery(shared_data, scrfd, random_recognizer, tmp_path_factory) -> Path:
    """The gallery of knn_examples/train (9 photos of 5 people) made by build-db with SCRFD-500M and the random
    recognizer. Read-only: tests that change a gallery copy it first."""
    from facekit.cli import main

    db = tmp_path_factory.mktemp("knn_gallery") / "knn.h5"
    args = ["build-db", shared_data / KNN / "train", scrfd, random_recognizer, db]
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    db.chmod(0o444)
    return db


@pytest.fixture
def one_thread():
    """PyTorch on one thread while a test trains tiny batches in-process (as helpers.environment() sets for
    subprocesses): they gain nothing from more, and a busy 2-core machine makes spinning threads slow."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
