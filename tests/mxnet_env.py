"""A cached virtual environment with the real MXNet 1.9.1, for checks against the reference implementation.

The environment lives at `$FACEKIT_MXNET_VENV` (default `~/.cache/facekit/mxnet-1.9.1`). It is built under a
temporary name and renamed into place once `import mxnet` works, under a file lock, so a killed or concurrent build
never leaves a half-made cache. Building needs the network; without it `MXNetEnvError` says so, and the tests fail.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REQUIREMENTS = ("mxnet==1.9.1", "numpy==1.23.5", "opencv-python-headless==4.11.0.86")


class MXNetEnvError(RuntimeError):
    """The MXNet environment cannot be built, or a script run in it failed."""


def venv_dir() -> Path:
    """Where the MXNet environment lives."""
    default = Path.home() / ".cache" / "facekit" / "mxnet-1.9.1"
    return Path(os.environ.get("FACEKIT_MXNET_VENV") or default).expanduser()


def _imports_mxnet(python: Path) -> bool:
    if not python.exists():
        return False
    return subprocess.run([python, "-c", "import mxnet"], capture_output=True, env=_clean_env()).returncode == 0


def _clean_env() -> dict[str, str]:
    """The environment for the MXNet interpreter: nothing from this interpreter's search path leaks in."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def _build(venv: Path) -> None:
    """Create the environment beside `venv` under a temporary name, check it, rename it to `venv`."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{venv.name}.", suffix=".tmp", dir=venv.parent))
    tmp.chmod(0o755)
    steps = [
        [sys.executable, "-m", "venv", "--clear", tmp],
        [tmp / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *REQUIREMENTS],
    ]
    try:
        for cmd in steps:
            done = subprocess.run(cmd, capture_output=True, text=True, env=_clean_env())
            if done.returncode != 0:
                raise MXNetEnvError(
                    f"cannot build the MXNet environment at {venv} (needs network access to PyPI and Python 3.11; "
                    f"set FACEKIT_MXNET_VENV to use another place): {' '.join(map(str, cmd))} failed:\n"
                    f"{done.stderr[-3000:]}"
                )
        if not _imports_mxnet(tmp / "bin" / "python"):
            raise MXNetEnvError(f"built {tmp} with {' '.join(REQUIREMENTS)} but `import mxnet` fails there")
        os.rename(tmp, venv)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@functools.cache
def mxnet_python() -> Path:
    """The python of the MXNet environment, built on first use."""
    venv = venv_dir()
    python = venv / "bin" / "python"
    if _imports_mxnet(python):
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _imports_mxnet(python):  # another process built it while we waited
            return python
        if venv.exists():
            raise MXNetEnvError(f"{venv} exists but `import mxnet` fails with its python: remove it to rebuild")
        for stale in venv.parent.glob(f".{venv.name}.*.tmp"):  # left by a build that was killed
            shutil.rmtree(stale, ignore_errors=True)
        _build(venv)
    return python


def run_mxnet(script: str, *args: str | os.PathLike, timeout: float = 600) -> str:
    """Run Python source `script` with `args` in the MXNet environment; its stdout. Raises with its stderr."""
    cmd = [mxnet_python(), "-c", script, *map(str, args)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=_clean_env(), timeout=timeout)
    if done.returncode != 0:
        raise MXNetEnvError(f"MXNet script failed (exit {done.returncode}):\n{done.stderr[-5000:]}")
    return done.stdout


def start_mxnet(script: str, *args: str | os.PathLike) -> subprocess.Popen:
    """Start `script` in the MXNet environment, talking to it by lines of text through its stdin and stdout."""
    cmd = [mxnet_python(), "-c", script, *map(str, args)]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=_clean_env())
