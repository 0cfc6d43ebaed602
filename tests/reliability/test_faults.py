"""Faults in the middle of a run: Ctrl-C during training keeps a loadable checkpoint and --resume finishes the run;
SIGKILL or Ctrl-C while a gallery or an output is written leaves the previous file byte for byte."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from .helpers import OBAMA, OBAMA2, copy, environment, facekit, temp_files, wait_for


def interrupt(process: subprocess.Popen, ready) -> tuple[str, str]:  # ready: () -> bool
    """Once `ready()`, Ctrl-C (SIGINT to the process group, as a terminal sends it); returns (stdout, stderr)."""
    try:
        wait_for(ready, process)
        os.killpg(process.pid, signal.SIGINT)
        return process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()


def resume(*args: object) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "facekit", *map(str, args), "--resume"]
    return subprocess.run(command, env=environment(), capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_ctrl_c_during_train_detect(shared_data, tmp_path):
    """Ctrl-C during train-detect (SIGINT to it and its 2 DataLoader workers, once the first epoch's checkpoint is
    on disk): it stops after the current step, exit 130, 'interrupted ... resume with --resume' and no traceback;
    checkpoint.pt loads (weights_only) and holds a finished epoch; no model.pt, no temporary file. --resume then
    trains the remaining epochs: the history runs 1..6 without a gap."""
    from orl_scenes import label_orl, write_layout

    data = write_layout(tmp_path / "data", label_orl(shared_data, range(1, 5)), {"train": 8, "val": 2}, 96, seed=0)
    out = tmp_path / "model"
    args = ["train-detect", data, out, "--epochs", 6, "--batch-size", 4, "--image-size", 64, "--workers", 2,
            "--eval-every", 6, "--no-onnx"]  # fmt: skip
    stdout, stderr = interrupt(facekit(*args), lambda: (out / "checkpoint.pt").exists())
    assert "Traceback" not in stderr, stderr
    assert "resume with --resume" in stderr and stderr.rstrip().endswith("facekit: interrupted"), stderr
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert 1 <= state["epoch"] < 6 and {"model", "optimizer", "scheduler", "rng"} <= set(state)
    assert not (out / "model.pt").exists() and temp_files(out) == []

    resumed = resume(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from {out / 'checkpoint.pt'} after epoch {state['epoch']}" in resumed.stderr + (
        out / "train.log").read_text()  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3, 4, 5, 6] and metrics["steps"] == 12
    assert (out / "model.pt").is_file() and temp_files(out) == []


@pytest.mark.slow
def test_ctrl_c_during_train_recognize(shared_data, tmp_path):
    """Ctrl-C during train-recognize (2 people's aligned crops, 2 steps an epoch, a checkpoint every step, 2
    DataLoader workers): exit 130 after the current step with its checkpoint saved, no traceback; checkpoint.pt
    loads and holds that step; --resume ends at the planned step with every step's loss in the history."""
    data = tmp_path / "crops"
    for person in ("s1", "s2"):
        for n in range(1, 11):
            copy(shared_data / f"faces/orl_aligned_112/{person}/{n}.jpg", data / person / f"{n}.jpg")
    out = tmp_path / "model"
    args = ["train-recognize", data, out, "--backbone", "mobilefacenet", "--embedding-size", 32, "--batch-size", 10,
            "--epochs", 3, "--workers", 2, "--save-every", 1, "--log-every", 1, "--lr", 0.01, "--no-onnx"]  # fmt: skip
    stdout, stderr = interrupt(facekit(*args), lambda: (out / "checkpoint.pt").exists())
    assert "Traceback" not in stderr, stderr
    assert "resume with --resume" in stderr and stderr.rstrip().endswith("facekit: interrupted"), stderr
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert 1 <= state["step"] < 6 and {"backbone", "head", "optimizer", "rng"} <= set(state)
    assert [h["step"] for h in json.loads(state["history"])] == list(range(1, state["step"] + 1))
    assert not (out / "model.pt").exists() and temp_files(out) == []

    resumed = resume(*args)
    assert resumed.returncode == 0, resumed.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 6 and [h["step"] for h in metrics["history"]] == [1, 2, 3, 4, 5, 6]
    assert (out / "model.pt").is_file() and temp_files(out) == []


@pytest.mark.slow  # the library's own SIGKILL test: tests/test_gallery_append.py
def test_sigkill_while_the_gallery_is_appended(cli, shared_data, scrfd, random_recognizer, tmp_path):
    """SIGKILL to build-db --append (one photo onto a 100,000-face gallery, appended in place) at moments spread
    over its run, up to its last instants: each time the gallery loads as exactly the old one or the new one, and no
    temporary file is left; the next build-db --append (or the killed run's own commit) leaves n + 1 faces."""
    import time

    from facekit.gallery.store import Gallery, ModelStamp
    from facekit.runtime.onnx_detector import OnnxDetector
    from facekit.runtime.recognizer import load_face_recognizer

    n = 100_000
    names = [f"person_{i // 5:05d}" for i in range(n)]
    rng = np.random.default_rng(0)
    recognizer, detector = ModelStamp.of(load_face_recognizer(random_recognizer)), ModelStamp.of(OnnxDetector(scrfd))
    base = Gallery.empty(32, recognizer, detector, crop_size=112, flip=False).add(
        rng.standard_normal((n, 32), np.float32), names, [f"/photos/{name}/{i % 5}.jpg" for i, name in
        enumerate(names)], np.zeros((n, 4)), np.zeros((n, 5, 2)), np.ones(n))  # fmt: skip
    photo = copy(shared_data / OBAMA, tmp_path / "new/obama/obama.jpg")
    db = tmp_path / "g.h5"
    base.save(db)
    start = time.perf_counter()
    full = facekit("build-db", tmp_path / "new", scrfd, random_recognizer, db, "--append")
    full.communicate()
    took = time.perf_counter() - start
    assert full.returncode == 0 and len(Gallery.load(db)) == n + 1
    outcomes = set()
    for share in (0.5, 0.8, 0.9, 0.95, 0.98, 1.0):
        db.unlink()
        base.save(db)
        old = Gallery.load(db).content_id
        process = facekit("build-db", tmp_path / "new", scrfd, random_recognizer, db, "--append")
        time.sleep(took * share)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        after = Gallery.load(db)
        assert len(after) in (n, n + 1), share
        if len(after) == n:
            assert after.content_id == old
        else:
            assert after.sources[-1] == str(photo) and after.identities[-1] == "obama"
        outcomes.add(len(after))
        assert temp_files(tmp_path) == []
        result = cli("build-db", tmp_path / "new", scrfd, random_recognizer, db, "--append")
        assert result.exit_code == 0, result.output
        assert len(Gallery.load(db)) == n + 1  # the photo once, whether the killed run committed it or not
    assert n in outcomes  # at least one kill landed before the commit


def test_ctrl_c_during_build_db_and_recognize(cli, shared_data, scrfd, random_recognizer, knn_gallery, tmp_path,
                                              monkeypatch):  # fmt: skip
    """Ctrl-C in the middle of build-db --append (--report asked for) and of recognize --out: exit 130 with
    'facekit: interrupted' and no traceback; the gallery is byte for byte the previous one; no report, no --out
    file, no temporary file."""
    from facekit.runtime.pipeline import FacePipeline

    db = copy(knn_gallery, tmp_path / "g.h5")
    before = db.read_bytes()
    people = tmp_path / "people"
    copy(shared_data / OBAMA, people / "barack/1.jpg")
    copy(shared_data / OBAMA2, people / "barack/2.jpg")
    detect, calls = FacePipeline.detect, []

    def interrupted_at_the_second_photo(self, image):
        calls.append(1)
        if len(calls) % 2 == 0:
            raise KeyboardInterrupt
        return detect(self, image)

    monkeypatch.setattr(FacePipeline, "detect", interrupted_at_the_second_photo)
    report, out = tmp_path / "report.json", tmp_path / "out.jsonl"
    for args in (["build-db", people, scrfd, random_recognizer, db, "--append", "--report", report],
                 ["recognize", people, db, scrfd, random_recognizer, "--out", out]):  # fmt: skip
        result = cli(*args)
        assert result.exit_code == 130 and result.output.rstrip().endswith("facekit: interrupted"), result.output
        assert "Traceback" not in result.output
    assert db.read_bytes() == before
    assert not report.exists() and not out.exists() and temp_files(tmp_path) == []
    monkeypatch.setattr(FacePipeline, "detect", detect)
    assert cli("build-db", people, scrfd, random_recognizer, db, "--append").exit_code == 0
    assert cli("db", "list", db).output.splitlines()[-1] == "barack\t2"
