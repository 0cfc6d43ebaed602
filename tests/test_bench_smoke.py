"""Each bench/ script runs on tiny inputs (its --smoke flag, or small counts) and prints its table: a check that the
benchmarks still work, not a measurement. The scripts read the real data from $FACEKIT_SHARED_DATA (bench/paths.py),
pointed here at the tests' own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def bench(shared_data: Path, script: str, *args: object, timeout: float = 300) -> str:
    """Run bench/SCRIPT ARGS with this interpreter, the shared data from the tests; its stdout (exit status 0)."""
    env = {**os.environ, "FACEKIT_SHARED_DATA": str(shared_data)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *map(str, args)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_train_recognize(shared_data):
    out = bench(shared_data, "bench_train_recognize.py", "--smoke")
    assert "backbone        settings" in out
    speed, heads = out.split("\n\n")
    assert [line.split()[0] for line in speed.splitlines()[2:]] == ["mobilefacenet"] * 2  # the others without --smoke
    assert [line.split()[0] for line in heads.splitlines()[2:]] == ["arcface", "adacos"]  # every head without it


def test_detect(shared_data, facenet_wheel):
    out = bench(shared_data, "bench_detect.py", "--smoke")
    assert "model                 runner                    images/s  ms/image  faces" in out
    for row in ("facekit PyTorch", "MTCNN", "facekit ONNX Runtime", "insightface SCRFD", "training RetinaFace"):
        assert row in out, row


@pytest.mark.mxnet
def test_recordio(shared_data):
    out = bench(shared_data, "bench_recordio.py", "--smoke")
    assert "facekit/s    mxnet/s  ratio" in out
    assert "generated (300 faces)" in out and "read+decode, 2 workers" in out


def test_compare_dlib(shared_data, tmp_path):
    out = bench(shared_data, "compare_dlib.py", "--out", tmp_path, "--orl-pairs", 20, "--celeba-pairs", 20)
    assert "| photos | pairs (same) | pipeline |" in out
    assert out.count("| dlib |") == out.count("| facekit |") == 2
    assert (tmp_path / "results.json").is_file()


def test_quality_int8(cli, shared_data, random_recognizer, tmp_path):
    """A random recognizer: the script's figures mean nothing here, so its pass bounds are opened."""
    crops = shared_data / "faces/orl_aligned_112"
    calibration, evaluation = tmp_path / "train", tmp_path / "eval"
    for person in ("s1", "s2"):
        shutil.copytree(crops / person, calibration / person)
    for person in ("s31", "s32", "s33"):
        shutil.copytree(crops / person, evaluation / person)
    assert cli("make-bin", evaluation, tmp_path / "eval.bin", "--pairs", 20, "--seed", 0).exit_code == 0
    args = ["--pairs", tmp_path / "eval.bin", "--calibration", calibration, "--out", tmp_path / "out"]
    out = bench(shared_data, "quality_int8.py", "--recognizer", random_recognizer, *args, "--min-cosine", -1,
                "--max-loss", 1)  # fmt: skip
    assert "| recognizer.onnx | size | verification accuracy" in out and out.count("| int8 |") == 1
    assert ": PASS" in out and (tmp_path / "out/int8.json").is_file()


@pytest.mark.parametrize("script", ["finetune_dlib.py", "quality_recognition.py"])
def test_long_workflows_parse_their_arguments(shared_data, script):
    """The two hour-long CLI workflows: their options only (their steps are the CLI commands the tests cover)."""
    out = bench(shared_data, script, "--help")
    assert out.startswith("usage:") and "--out" in out


def test_gallery(shared_data):
    out = bench(shared_data, "bench_gallery.py", "--sizes", 3000, "--queries", "1,10", "--repeats", 1)
    assert "| gallery | queries | facekit ms | torch ms | faiss ms | sklearn ms |" in out
    rows = [line for line in out.splitlines() if line.startswith("| 3,000 x 512 |")]
    assert len(rows) == 2 and all(row.endswith("| 1/1 | 1/1 |") or "10/10 | 10/10" in row for row in rows), rows


def test_pipeline(shared_data, random_recognizer):
    out = bench(shared_data, "bench_pipeline.py", "--photos", 4, "--repeats", 1, "--gallery", 10, "--threads", 1,
                "--recognizer", random_recognizer)  # fmt: skip
    assert "vs insightface" in out and "int8" in out


def test_loader_bench(shared_data):
    out = bench(shared_data, "bench_loader.py", "--smoke")
    assert "loader alone" in out and "training step fed by the loader" in out


def test_gpu_check_dry_run(shared_data, tmp_path):
    """bench/gpu_check.sh --dry-run: the six steps of the GPU check on the CPU with tiny sizes, each ok in the
    summary table (a failing step makes the script exit non-zero, which this would report)."""
    env = {**os.environ, "FACEKIT_SHARED_DATA": str(shared_data), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(ROOT / "bench/gpu_check.sh"), "--dry-run", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=1500,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    table = done.stdout.split("summary (", 1)[1].splitlines()[2:]
    assert [row.split()[:2] for row in table] == [
        [name, "ok"] for name in ("train_speed", "loader", "torchrun", "train_detect", "recognize", "fp16_scale")
    ]
    assert "steps 2 then 4" in done.stdout


def test_tracking(shared_data):
    """bench_tracking.py on one short video: both rules' rows, the motion model never worse."""
    out = bench(shared_data, "bench_tracking.py", "--every", "3", "--miss", "0.1", "--frames", "90", "--seeds", "1")
    (row,) = [line.split(" | ") for line in out.splitlines() if line.startswith("| 3 | 10% |")]
    assert 1.0 <= float(row[3]) <= float(row[2])
