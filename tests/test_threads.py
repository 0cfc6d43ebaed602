"""--threads N: ONNX Runtime's intra- and inter-op threads (and torch's, when the models run in PyTorch) in detect,
build-db, recognize, embed and evaluate-gallery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_serving_without_torch import KNN, blocked, facekit, onnx_recognizer  # noqa: F401 (fixtures)

import facekit.runtime.onnx as onnx_module
import facekit.runtime.onnx_detector as onnx_detector
from facekit.errors import FacekitError


class Stop(FacekitError):
    """Raised once the sessions are made: the command goes no further (exit 1)."""


def commands(shared_data, scrfd, recognizer, tmp_path) -> dict[str, list]:
    knn = shared_data / KNN
    return {
        "detect": ["detect", knn / "test", "--model", scrfd],
        "build-db": ["build-db", knn / "train", scrfd, recognizer, tmp_path / "g.h5"],
        "recognize": ["recognize", knn / "test", tmp_path, scrfd, recognizer],
        "embed": ["embed", knn / "test", "--detect", scrfd, "--recognize", recognizer, "--out", tmp_path / "e.h5"],
        "evaluate-gallery": ["evaluate-gallery", knn / "train", knn / "train", scrfd, recognizer],
    }


class Sessions:
    """Records (intra-op, inter-op threads) of each ONNX Runtime session made, read back from the session itself
    (None: made with ONNX Runtime's defaults), and stops the command after `last` sessions."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.made: list[tuple[int, int] | None] = []
        self.last = 2
        self.real = onnx_module.create_session
        monkeypatch.setattr(onnx_module, "create_session", self.create)
        monkeypatch.setattr(onnx_detector, "create_session", self.create)

    def create(self, path, device="cpu", options=None):
        session = self.real(path, device, options)
        given = session.get_session_options()
        self.made.append(None if options is None else (given.intra_op_num_threads, given.inter_op_num_threads))
        if len(self.made) == self.last:
            raise Stop("sessions made")
        return session


@pytest.mark.parametrize("command", ["detect", "build-db", "recognize", "embed", "evaluate-gallery"])
@pytest.mark.parametrize("threads", [None, 1, 3])
def test_threads_set_the_sessions_options(cli, shared_data, scrfd, onnx_recognizer, monkeypatch, tmp_path,  # noqa: F811
                                          command, threads):  # fmt: skip
    if command == "recognize":  # a gallery to open first (the sessions are made after it is read)
        from facekit.gallery.store import Gallery, ModelStamp

        stamp = ModelStamp(name="x", fingerprint="x")
        one = Gallery.empty(2, stamp, stamp, crop_size=112, flip=False)
        one.add(np.array([[1.0, 0.0]], np.float32), ["a"], ["a.jpg"], np.zeros((1, 4)), np.zeros((1, 5, 2)),
                np.ones(1)).save(tmp_path / "gallery.h5")  # fmt: skip
    sessions = Sessions(monkeypatch)
    sessions.last = 1 if command == "detect" else 2  # the detector's, then the recognizer's
    args = commands(shared_data, scrfd, onnx_recognizer, tmp_path)[command]
    result = cli(*args, *(["--threads", threads] if threads else []))
    assert result.exit_code == 1 and result.output.strip().endswith("Error: sessions made"), result.output
    assert sessions.made == [None if threads is None else (threads, threads)] * sessions.last


def test_threads_set_torchs_threads(cli, shared_data, scrfd, random_recognizer, tmp_path):
    """A recognizer model directory runs in PyTorch: --threads sets torch's intra-op threads too."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        result = cli("build-db", shared_data / KNN / "train", scrfd, random_recognizer, tmp_path / "g.h5",
                     "--threads", "1")  # fmt: skip
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", ""])
@pytest.mark.parametrize("command", ["detect", "build-db", "recognize", "embed", "evaluate-gallery"])
def test_bad_threads_is_a_one_line_usage_error(cli, shared_data, scrfd, tmp_path, command, value):
    args = commands(shared_data, scrfd, scrfd, tmp_path)[command]
    if command == "recognize":
        (tmp_path / "gallery.h5").touch()
    result = cli(*args, "--threads", value)
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and errors[0].startswith("Error: Invalid value for '--threads': "), result.output
    assert "Traceback" not in result.output


def test_threads_on_the_serving_path_import_no_torch(shared_data, scrfd, blocked):  # noqa: F811
    """detect --threads with torch blocked: ONNX Runtime only (torch.set_num_threads only where torch is loaded).
    Run from the project root, so that this checkout's facekit is the one imported; it writes only to stdout."""
    done = facekit(["detect", shared_data / KNN / "test" / "obama1.jpg", "--model", scrfd, "--threads", "1"],
                   Path(__file__).resolve().parents[1], blocked)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert '"faces": [{' in done.stdout


@pytest.mark.slow  # a bench subprocess (~15 s); quicker: test_threads_set_the_sessions_options
def test_bench_pipeline_compares_threads(shared_data, random_recognizer):
    from test_bench_smoke import bench

    out = bench(shared_data, "bench_pipeline.py", "--compare-threads", "--photos", 2, "--repeats", 1, "--gallery", 10,
                "--recognizer", random_recognizer)  # fmt: skip
    rows = [line.split("|")[1:3] for line in out.splitlines() if line.startswith("| ")][1:]
    assert [[cell.strip() for cell in row] for row in rows] == [
        ["1", "1"],
        ["2", "2"],
        ["unset (default)", "0 (one per core)"],
    ]
