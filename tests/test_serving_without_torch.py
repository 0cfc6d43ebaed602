"""The ONNX serving path imports no torch: detect, build-db, recognize, embed and evaluate-gallery with SCRFD-500M and
an exported recognizer run with torch blocked (a `torch` package on PYTHONPATH whose import raises) and print what
they print with torch; `-X importtime` lists no torch module; a serving-only install (the runtime requirements of
setup.cfg, no torch, facekit installed non-editable) runs them; a training command without torch says so in one line.
"""

from __future__ import annotations

import configparser
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
KNN = "faces/face_recognition_examples/examples/knn_examples"
COMMANDS = ("detect", "build-db", "recognize", "embed", "evaluate-gallery")
BLOCKER = 'raise ModuleNotFoundError("torch is blocked", name="torch")\n'


@pytest.fixture(scope="module")
def blocked(tmp_path_factory) -> Path:
    """A folder for PYTHONPATH whose `torch` package raises on import, as if torch were not installed."""
    folder = tmp_path_factory.mktemp("torch_blocked")
    (folder / "torch").mkdir()
    (folder / "torch" / "__init__.py").write_text(BLOCKER)
    return folder


@pytest.fixture(scope="module")
def onnx_recognizer(random_recognizer, tmp_path_factory) -> Path:
    """The random recognizer exported by `facekit export` (torch in this process): a bare .onnx file."""
    from facekit.cli import main

    out = tmp_path_factory.mktemp("onnx_recognizer") / "recognizer.onnx"
    result = CliRunner().invoke(main, ["export", str(random_recognizer), "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out


def facekit(args: list[object], cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m facekit ARGS` in `cwd`, with `pythonpath` first on the search path."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "facekit", *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def evaluation_folders(shared_data: Path, root: Path) -> tuple[Path, Path]:
    """ORL s1-s4: gallery photos 1-2 of s1-s3, probes photo 3 of s1-s3 and photo 1 of s4 (unknown)."""
    gallery, probe = root / "gallery", root / "probe"
    for person in ("s1", "s2", "s3", "s4"):
        known = person != "s4"
        (probe / person).mkdir(parents=True)
        shutil.copy(shared_data / f"faces/orl/{person}/{3 if known else 1}.pgm", probe / person)
        if known:
            (gallery / person).mkdir(parents=True)
            for photo in ("1.pgm", "2.pgm"):
                shutil.copy(shared_data / f"faces/orl/{person}/{photo}", gallery / person)
    return gallery, probe


@pytest.fixture(scope="module")
def runs(shared_data, scrfd, onnx_recognizer, blocked, tmp_path_factory) -> dict[str, dict]:
    """The five commands run in a folder of their own with torch ("torch") and with torch blocked ("blocked"):
    {mode: {command: (CompletedProcess, folder)}}."""
    knn = shared_data / KNN
    gallery, probe = evaluation_folders(shared_data, tmp_path_factory.mktemp("evaluation"))
    commands = {
        "detect": ["detect", knn / "test", "--model", scrfd],
        "build-db": ["build-db", knn / "train", scrfd, onnx_recognizer, "gallery.h5"],
        "recognize": ["recognize", knn / "test", "gallery.h5", scrfd, onnx_recognizer],
        "embed": ["embed", knn / "test", "--detect", scrfd, "--recognize", onnx_recognizer, "--out", "faces.npy"],
        "evaluate-gallery": ["evaluate-gallery", gallery, probe, scrfd, onnx_recognizer],
    }
    out: dict[str, dict] = {}
    for mode, pythonpath in (("torch", None), ("blocked", blocked)):
        folder = tmp_path_factory.mktemp(mode)
        out[mode] = {name: (facekit(args, folder, pythonpath), folder) for name, args in commands.items()}
    return out


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_onnx_serving_runs_without_torch_and_matches(runs, command):
    """Ten subprocesses in all (about a minute on 2 cores)."""
    with_torch, folder = runs["torch"][command]
    without, blocked_folder = runs["blocked"][command]
    assert with_torch.returncode == 0, with_torch.stderr
    assert without.returncode == 0, without.stderr
    # the same faces, boxes, names and scores (results on stdout; build-db's summary on stderr)
    assert (without.stdout, without.stderr) == (with_torch.stdout, with_torch.stderr)
    assert with_torch.stdout.strip() or with_torch.stderr.strip()
    if command == "embed":
        np.testing.assert_array_equal(np.load(blocked_folder / "faces.npy"), np.load(folder / "faces.npy"))
        assert (blocked_folder / "faces.jsonl").read_text() == (folder / "faces.jsonl").read_text()


def test_detect_imports_no_torch_module(shared_data, scrfd, tmp_path):
    photo = shared_data / KNN / "test" / "obama1.jpg"
    command = [sys.executable, "-X", "importtime", "-m", "facekit", "detect", photo, "--model", scrfd]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    modules = [line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert "facekit.runtime.onnx_detector" in modules  # the listing is real
    assert [m for m in modules if m.split(".")[0] == "torch"] == []


def test_training_without_torch_says_so_in_one_line(shared_data, blocked, tmp_path):
    data = shared_data / "layouts/recognition_train_data"
    done = facekit(["train-recognize", data, tmp_path / "model"], tmp_path, blocked)
    assert done.returncode in (1, 2)
    assert done.stderr.strip() == "Error: facekit train-recognize needs PyTorch: pip install 'facekit[train]'"
    assert not (tmp_path / "model").exists()


def runtime_requirements() -> list[str]:
    """install_requires of setup.cfg: what a serving-only install gets."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


class ServingEnvError(RuntimeError):
    pass


@pytest.mark.slow
def test_serving_only_install_runs_onnx_models(shared_data, scrfd, onnx_recognizer, tmp_path):
    """A fresh venv with the runtime requirements only (cached, keyed by them), facekit installed into it from this
    tree non-editable (`pip install --no-deps --target`), then detect, build-db and recognize on ONNX models."""
    from cached_env import CACHE, cached_venv, clean_env

    requirements = runtime_requirements()
    assert not [r for r in requirements if r.startswith(("torch", "tensorboard", "insightface"))], requirements
    key = hashlib.sha256("\n".join(["setuptools>=70.1", *requirements]).encode()).hexdigest()[:12]
    venv = Path(os.environ.get("FACEKIT_SERVING_VENV", CACHE / f"serving-{key}"))
    try:
        python = cached_venv(
            venv, ["setuptools>=70.1", *requirements], "cv2, onnx, onnxruntime, h5py, faiss, yaml, click, tqdm",
            ServingEnvError, "serving-only", "FACEKIT_SERVING_VENV",
        )  # fmt: skip
    except ServingEnvError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    target = tmp_path / "site"
    install = [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", target]
    done = subprocess.run([*install, ROOT], capture_output=True, text=True, env=clean_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    env = {**clean_env(), "PYTHONPATH": str(target)}
    work = tmp_path / "work"
    work.mkdir()

    def run(*args: object) -> str:
        done = subprocess.run([python, *map(str, args)], cwd=work, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout

    where = "import facekit, importlib.util as u; print(facekit.__file__, u.find_spec('torch') is None)"
    assert run("-c", where).split() == [str(target / "facekit" / "__init__.py"), "True"]
    knn = shared_data / KNN
    assert '"faces": [{' in run("-m", "facekit", "detect", knn / "test" / "obama1.jpg", "--model", scrfd)
    run("-m", "facekit", "build-db", knn / "train", scrfd, onnx_recognizer, "gallery.h5")
    recognized = run("-m", "facekit", "recognize", knn / "test", "gallery.h5", scrfd, onnx_recognizer)
    assert recognized.count('"identity"') >= 5
