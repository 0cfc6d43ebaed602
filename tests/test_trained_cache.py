"""The cache of trained test models (tests/trained_cache.py): what its key covers, and that a hit gives the files
training wrote."""

from __future__ import annotations

import os

import pytest
import trained_cache
from trained_cache import PACKAGE, TrainedCacheError, cached_model, recipe_key, source_closure


def test_source_closure_follows_function_level_imports():
    files = {str(p.relative_to(PACKAGE)) for p in source_closure(["facekit.cli.train_recognize"])}
    # the command imports the trainer inside its function; the trainer imports the losses package, and so on
    assert {"cli/train_recognize.py", "recognition/train.py", "recognition/losses/margins.py", "__init__.py"} <= files
    assert "gallery/store.py" not in files and "cli/gallery.py" not in files


def test_key_changes_with_the_arguments_and_the_data(tmp_path):
    (tmp_path / "a.rec").write_bytes(b"1234")
    key = recipe_key(["--epochs", "1"], tmp_path, ["facekit.errors"])
    assert recipe_key(["--epochs", "1"], tmp_path, ["facekit.errors"]) == key
    assert recipe_key(["--epochs", "2"], tmp_path, ["facekit.errors"]) != key
    os.utime(tmp_path / "a.rec", ns=(0, 0))
    assert recipe_key(["--epochs", "1"], tmp_path, ["facekit.errors"]) != key


def test_trains_once_and_hands_out_copies(tmp_path, monkeypatch):
    monkeypatch.setattr(trained_cache, "CACHE", tmp_path / "cache")
    runs = []

    def train(out):
        runs.append(out)
        (out / "sub").mkdir(parents=True)
        (out / "model.pt").write_bytes(b"weights")
        (out / "sub" / "log.txt").write_text("log")

    first = cached_model("m", "k" * 64, train, tmp_path / "first")
    (first / "model.pt").write_bytes(b"changed by a test")  # a copy: the cache keeps its own
    second = cached_model("m", "k" * 64, train, tmp_path / "second")
    assert len(runs) == 1
    assert (second / "model.pt").read_bytes() == b"weights" and (second / "sub/log.txt").read_text() == "log"
    (tmp_path / "cache" / "trained" / "m" / ("k" * 24) / "model" / "model.pt").write_bytes(b"damaged")
    with pytest.raises(TrainedCacheError, match="exists but is incomplete"):
        cached_model("m", "k" * 64, train, tmp_path / "third")
