"""Atomic output: every artefact is written to a temporary file beside its final name, then renamed."""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from facekit.errors import FacekitError

LOCK_POLL = 0.1  # seconds between tries while another process holds a write lock


def temp_beside(path: str | os.PathLike, mode: str = "w") -> IO:
    """An open temporary file in `path`'s folder (so the final os.replace is atomic). Text is UTF-8; a file name
    that is not (Python holds its bytes as surrogates) is written back as its own bytes, as on stdout."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the final file the usual mode
    text = {"encoding": "utf-8", "errors": "surrogateescape", "newline": "\n"}
    return open(name, mode, **({} if "b" in mode else text))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def commit(f: IO, path: str | os.PathLike) -> None:
    """Flush, fsync and close temporary file `f`, then rename it to `path`."""
    f.flush()
    os.fsync(f.fileno())
    f.close()
    os.replace(f.name, path)


def discard(f: IO) -> None:
    """Close and remove temporary file `f`."""
    f.close()
    Path(f.name).unlink(missing_ok=True)


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """`with atomic_write(p) as f:` writes `p` whole or not at all."""
    f = temp_beside(path, mode)
    try:
        yield f
    except BaseException:
        discard(f)
        raise
    commit(f, path)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """`with atomic_path(p) as tmp:` for writers that want a file name (h5py, ONNX): whatever is written to `tmp`
    replaces `p` (fsynced) when the block ends, or is removed if it raises."""
    f = temp_beside(path, "wb")
    f.close()
    tmp = Path(f.name)
    try:
        yield tmp
        with open(tmp, "rb+") as done:
            os.fsync(done.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes: the fingerprint galleries record for the models that built them."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def output_stream(out: str | os.PathLike | None) -> Iterator[IO]:
    """A text sink for results: file `out`, written atomically, or stdout when `out` is None."""
    if out is None:
        yield sys.stdout
        sys.stdout.flush()
    else:
        with atomic_write(out) as f:
            yield f


@contextmanager
def write_lock(
    path: str | os.PathLike, *, wait: float, what: str = "file", waiting: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold an exclusive lock on `path`.lock while the block rewrites `path`, so that processes writing it take
    turns. fcntl.flock: the kernel releases it when the process ends, however it ends, so a crash never leaves it
    stuck; the file stays (deleting it would let two processes lock two different files) and holds the last
    holder's pid. Waits up to `wait` seconds for another holder (`waiting` gets one notice), then raises a
    FacekitError naming it."""
    import fcntl

    path = Path(path)
    lock = path.with_name(path.name + ".lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise FacekitError(f"{lock}: cannot open the lock file of {path.name} ({exc.strerror})") from None
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                busy = f"{path}: {what} is being written by another process{_holder(fd)}"
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FacekitError(f"{busy}; try again or pass --wait SECONDS") from None
                if waiting is not None:
                    waiting(f"{busy}; waiting up to {left:.0f} s")
                    waiting = None
                time.sleep(min(LOCK_POLL, left))
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    """' (pid N)' as the lock file's holder wrote it, or '' before it has."""
    pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return f" (pid {pid})" if pid.isdigit() else ""
