"""The tutorial's shell scripts, run as users run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(__file__).resolve().parents[1] / "bin"


def run(script: str, *args: object, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "FACEKIT": f"{sys.executable} -m facekit", **(env or {})}
    return subprocess.run(
        ["bash", str(BIN / script), *map(str, args)], capture_output=True, text=True, env=environment, timeout=600
    )


@pytest.mark.parametrize("args", [[], ["only-one"]])
def test_detection_train_usage(args):
    result = run("run_face_detection_train.sh", *args)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: run_face_detection_train.sh data_path model_output_path")


@pytest.mark.slow  # ~35 s; quick: test_detection_train_usage, test_gallery_cli.py::test_bin_scripts_run_the_workflow
def test_detection_train_runs_with_extra_options_and_env(tmp_path):
    from facekit.data.synthetic import make_example_data

    make_example_data(tmp_path / "data", seed=1)
    out = tmp_path / "model"
    result = run(
        "run_face_detection_train.sh",
        tmp_path / "data/detection_train_data",
        out,
        "--batch-size",
        16,
        "--image-size",
        128,
        "--no-onnx",
        env={"FACEKIT_TRAIN_DETECT_EPOCHS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "trained 1 epochs (5 steps)" in result.stdout
    assert (out / "model.pt").is_file() and (out / "metrics.json").is_file()


def test_facekit_command_with_spaces_in_its_path(tmp_path):
    """$FACEKIT may be an executable whose path holds spaces, or shell words quoting such a path."""
    folder = tmp_path / "my env"
    folder.mkdir()
    python = folder / "python"
    python.symlink_to(sys.executable)
    wrapper = folder / "facekit"
    wrapper.write_text(f'#!/bin/sh\nexec "{python}" -m facekit "$@"\n')
    wrapper.chmod(0o755)
    missing = tmp_path / "no data"
    for command in (str(wrapper), f'"{python}" -m facekit'):
        result = run("run_face_detection_train.sh", missing, tmp_path / "out", env={"FACEKIT": command})
        assert result.returncode == 2, result.stderr  # facekit itself ran, and named the missing data
        assert f"Invalid value for 'DATA_PATH': Directory '{missing}' does not exist" in result.stderr
