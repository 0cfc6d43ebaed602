"""What every reliability test checks, and the bad inputs they make from real photos. Not collected by pytest."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

KNN = "faces/face_recognition_examples/examples/knn_examples"
OBAMA = f"{KNN}/train/obama/obama.jpg"  # 910 x 1137, one face
OBAMA2 = f"{KNN}/train/obama/obama2.jpg"  # 626 x 1200, one face; test_images/32bit.png is this photo with alpha
BIDEN = f"{KNN}/train/biden/biden2.jpg"  # 1200 x 1200, one face
ALPHA_PNG = "faces/face_recognition_examples/tests/test_images/32bit.png"
PROJECT = Path(__file__).resolve().parents[2]


def clean_error(result, code: int, *fragments: str) -> str:  # click.testing.Result
    """Assert `facekit` failed with exit `code` and one line `Error: ...` holding every fragment, no traceback;
    returns that line."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output, result.output
    last = result.output.rstrip("\n").splitlines()[-1]
    assert last.startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in last, (fragment, last)
    return last


def skipped(result, title: str, path: Path | str) -> str:
    """Assert a batch command ended 0 and listed `path` under the warning `title`; returns its line."""
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output, result.output
    assert title in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("  - ") and str(path) in line]
    assert len(lines) == 1, result.output
    return lines[0]


def records(text: str) -> dict[str, dict]:
    """JSON Lines of recognize / detect, by file name."""
    return {Path(r["image"]).name: r for r in map(json.loads, text.splitlines())}


def copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def copy_tree(src: Path, dst: Path) -> Path:
    """Copy files and folders, not their modes (../shared/data is read-only)."""
    for path in sorted(src.rglob("*")):
        if path.is_file():
            copy(path, dst / path.relative_to(src))
    return dst


def iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """`jpeg` with an APP1 Exif segment holding only the Orientation tag (0x0112), right after SOI."""
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    body = b"Exif\x00\x00" + b"MM\x00\x2a" + struct.pack(">I", 8) + ifd
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", 2 + len(body)) + body + jpeg[2:]


def no_face_photo(shared_data: Path, path: Path) -> Path:
    """A real photo with no face in it: obama.jpg below the chin (suit, shirt, flag)."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.imread(str(shared_data / OBAMA))[600:])
    return path


def environment() -> dict[str, str]:
    """For `python -m facekit` subprocesses: this checkout importable; one BLAS/OpenMP thread, which these tiny
    batches do not miss and which keeps them quick on a busy 2-core machine."""
    return {**os.environ, "PYTHONPATH": str(PROJECT), "OMP_NUM_THREADS": "1"}


def facekit(*args: object, **kwargs) -> subprocess.Popen:
    """`python -m facekit ARGS` in its own process group (so a signal reaches it and its DataLoader workers, as
    Ctrl-C in a terminal does)."""
    command = [sys.executable, "-m", "facekit", *map(str, args)]
    return subprocess.Popen(
        command, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, **kwargs,
    )  # fmt: skip


def wait_for(
    condition: Callable[[], bool], process: subprocess.Popen, timeout: float = 240, every: float = 0.01
) -> None:
    """Poll `condition` until it holds; fail if `process` ends first or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"facekit ended (exit {process.returncode}) before the moment came:\n{out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(every)


def temp_files(folder: Path) -> list[str]:
    """Temporary files of facekit's atomic writes left in `folder`."""
    return sorted(p.name for p in folder.glob(".*.tmp"))


def same_pixels(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool((a == b).all())


# A normal `facekit detect` of one photo peaks near 370 MB (Python, PyTorch, ONNX Runtime, OpenCV); a decoded bomb
# takes 1 GB and more on top. The address space is capped well above what a normal run maps, so that a regression
# (reading /dev/zero, decoding a bomb) ends that process, not the machine.
PEAK_CEILING_MB = 800
ADDRESS_SPACE_CAP = 8 << 30
# A small Python process caps the address space, runs the command and writes the command's peak resident memory
# (KiB) to a file. Measured on a child of pytest itself, the peak would include pytest's own pages (the kernel
# carries a process's high-water mark across fork and exec), which pass 1 GB late in a full run.
_PEAK = (
    "import resource, subprocess, sys; resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]),) * 2); "
    "code = subprocess.call(sys.argv[3:]); "
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); sys.exit(code)"
)


def measured(*args: object, timeout: float = 240) -> tuple[int, str, float]:
    """Run `python -m facekit ARGS` (address space capped; OpenCV's pixel limit as facekit sets it in a fresh shell,
    whatever this process did to it) to its end: (exit code, stdout + stderr, peak resident memory in MB). Fails
    when it outlives `timeout`."""
    import tempfile

    env = {k: v for k, v in environment().items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    with tempfile.TemporaryDirectory() as scratch:
        peak = Path(scratch) / "peak"
        command = [sys.executable, "-c", _PEAK, peak, ADDRESS_SPACE_CAP, sys.executable, "-m", "facekit", *args]
        with open(Path(scratch) / "output", "w+") as output:
            process = subprocess.Popen(list(map(str, command)), env=env, stdout=output, stderr=subprocess.STDOUT,
                                       text=True, start_new_session=True)  # fmt: skip
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()
                raise AssertionError(f"facekit {' '.join(map(str, args))} still running after {timeout} s") from None
            output.seek(0)
            return process.returncode, output.read(), int(peak.read_text()) / 1024
