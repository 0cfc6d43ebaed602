"""Image decoding shared by every reader: BGR uint8 HxWx3 out, whatever came in (grey, alpha, 16-bit, EXIF)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from facekit.errors import ImageDecodeError, MissingDataError

# Extensions OpenCV's imread handles (GIF since OpenCV 4.11).
IMAGE_EXTENSIONS = frozenset(
    (
        ".bmp .dib .jpeg .jpg .jpe .jp2 .png .webp .avif .pbm .pgm .ppm .pxm .pnm .pfm .sr .ras .tiff .tif .exr .hdr"
        " .pic .gif"
    ).split()
)


def is_image_file(path: str | os.PathLike) -> bool:
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def decode_image(data: bytes | memoryview, context: str) -> np.ndarray:
    """Decode encoded image bytes to BGR uint8 [H, W, 3].

    OpenCV applies the EXIF orientation; 16-bit images are scaled to 8 bits, grey is replicated, alpha dropped.
    """
    import cv2

    buf = np.frombuffer(data, np.uint8)
    image = cv2.imdecode(buf, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR) if buf.size else None
    if image is None:
        why = "empty" if not buf.size else "truncated or corrupt, or not an image format OpenCV reads"
        raise ImageDecodeError(f"{context}: cannot decode image ({len(buf)} bytes): {why}")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file (any path, non-ASCII included) as BGR uint8 [H, W, 3]."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise MissingDataError(f"{path}: no such image file") from None
    except OSError as exc:
        raise ImageDecodeError(f"{path}: cannot read ({exc.strerror})") from None
    return decode_image(data, os.fspath(path))


def list_images(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Image files named directly, or found recursively (sorted) in named folders."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p))
        elif path.exists():
            found.append(path)
        else:
            raise MissingDataError(f"{path}: no such file or folder")
    return found


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageDecodeError(f"cannot JPEG-encode an image of shape {image.shape}")
    return buf.tobytes()


def read_each(
    paths: Sequence[str | os.PathLike], skipped: list[str], desc: str, progress: bool | None = None
) -> Iterator[tuple[int, Path, np.ndarray]]:
    """(position, path, BGR image) of each readable image, with a progress bar on stderr (progress None: only on a
    terminal). Unreadable images are left out and their one-line errors appended to `skipped`."""
    import sys

    from tqdm import tqdm

    from facekit.errors import FacekitError

    disable = None if progress is None else not progress
    for i, path in enumerate(tqdm(paths, desc=desc, unit="img", disable=disable, file=sys.stderr)):
        try:
            yield i, Path(path), read_image(path)
        except FacekitError as exc:
            skipped.append(str(exc))
