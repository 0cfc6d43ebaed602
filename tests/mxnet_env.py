"""A cached virtual environment with the real MXNet 1.9.1, for checks against the reference implementation.

The environment lives at `$FACEKIT_MXNET_VENV` (default `~/.cache/facekit/mxnet-1.9.1`), made by tests/cached_env.py
so that a killed or concurrent build never leaves a half-made cache. Building needs the network; without it
`MXNetEnvError` says so, and the tests fail.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

from cached_env import CACHE, cached_venv, clean_env, run_script

REQUIREMENTS = ("mxnet==1.9.1", "numpy==1.23.5", "opencv-python-headless==4.11.0.86")


class MXNetEnvError(RuntimeError):
    """The MXNet environment cannot be built, or a script run in it failed."""


def venv_dir() -> Path:
    """Where the MXNet environment lives."""
    return Path(os.environ.get("FACEKIT_MXNET_VENV") or CACHE / "mxnet-1.9.1").expanduser()


@functools.cache
def mxnet_python() -> Path:
    """The python of the MXNet environment, built on first use."""
    return cached_venv(venv_dir(), REQUIREMENTS, "mxnet", MXNetEnvError, "MXNet", "FACEKIT_MXNET_VENV")


def run_mxnet(script: str, *args: str | os.PathLike, timeout: float = 600) -> str:
    """Run Python source `script` with `args` in the MXNet environment; its stdout. Raises with its stderr."""
    return run_script(mxnet_python(), script, args, timeout, MXNetEnvError, "MXNet")


def start_mxnet(script: str, *args: str | os.PathLike) -> subprocess.Popen:
    """Start `script` in the MXNet environment, talking to it by lines of text through its stdin and stdout."""
    cmd = [mxnet_python(), "-c", script, *map(str, args)]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=clean_env())
