"""Caches under `~/.cache/facekit` for checks against reference implementations: virtual environments with the real
dlib or MXNet (tests/dlib_env.py, tests/mxnet_env.py) and the files they need (tests/pypi_files.py).

A cache entry is built under a temporary name beside its place and renamed into place once complete, under a file
lock, so a killed or concurrent build never leaves a half-made cache.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

CACHE = Path.home() / ".cache" / "facekit"


def clean_env() -> dict[str, str]:
    """The environment for another interpreter: nothing from this interpreter's search path leaks in."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def cached(target: Path, ready: Callable[[Path], bool], build: Callable[[Path], None], error: type[Exception]) -> Path:
    """`target` once `ready(target)`, made by `build(tmp)` under a lock and renamed into place; `error` says why not."""
    if ready(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready(target):  # another process made it while we waited
            return target
        if target.exists():
            raise error(f"{target} exists but is incomplete: remove it to build it again")
        for stale in target.parent.glob(f".{target.name}.*.tmp"):  # left by a build that was killed
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            tmp.chmod(0o755)
            build(tmp)
            if not ready(tmp):
                raise error(f"made {tmp} but it is not complete")
            os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def cached_venv(
    venv: Path, requirements: Sequence[str], imports: str, error: type[Exception], name: str, env_var: str
) -> Path:
    """The python of a virtual environment at `venv` with `requirements` installed, built on first use; it is ready
    once `import IMPORTS` works there. `error` names the environment (`name`) and the variable that moves it."""

    def ready(folder: Path) -> bool:
        python = folder / "bin" / "python"
        if not python.exists():
            return False
        done = subprocess.run([python, "-c", f"import {imports}"], capture_output=True, env=clean_env())
        return done.returncode == 0

    def build(tmp: Path) -> None:
        pip = [tmp / "bin" / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        for cmd in ([sys.executable, "-m", "venv", "--clear", tmp], [*pip, *requirements]):
            done = subprocess.run(cmd, capture_output=True, text=True, env=clean_env())
            if done.returncode != 0:
                raise error(
                    f"cannot build the {name} environment at {venv} (needs network access to PyPI and "
                    f"{' '.join(requirements)} for Python {sys.version_info.major}.{sys.version_info.minor}; set "
                    f"{env_var} to use another place): {' '.join(map(str, cmd))} failed:\n{done.stderr[-3000:]}"
                )

    return cached(venv, ready, build, error) / "bin" / "python"


def run_script(
    python: Path, script: str, args: Sequence[str | os.PathLike], timeout: float, error: type[Exception], name: str
) -> str:
    """Run Python source `script` with `args` by `python`; its stdout. Raises `error` with its stderr."""
    done = subprocess.run(
        [python, "-c", script, *map(str, args)], capture_output=True, text=True, env=clean_env(), timeout=timeout
    )
    if done.returncode != 0:
        raise error(f"{name} script failed (exit {done.returncode}):\n{done.stderr[-5000:]}")
    return done.stdout
