"""Image decoding shared by every reader: BGR uint8 HxWx3 out, whatever came in (grey, alpha, 16-bit, EXIF)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from facekit import DEFAULT_JPEG_QUALITY, DEFAULT_MAX_PIXELS
from facekit.data.headers import image_size
from facekit.errors import FacekitError, ImageDecodeError, MissingDataError, ModelError

# Extensions OpenCV's imread handles (GIF since OpenCV 4.11).
IMAGE_EXTENSIONS = frozenset(
    (
        ".bmp .dib .jpeg .jpg .jpe .jp2 .png .webp .avif .pbm .pgm .ppm .pxm .pnm .pfm .sr .ras .tiff .tif .exr .hdr"
        " .pic .gif"
    ).split()
)


def is_image_file(path: str | os.PathLike) -> bool:
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def decode_image(data: bytes | memoryview, context: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes to BGR uint8 [H, W, 3], refusing a photo whose header declares more than
    `max_pixels` before decoding it (a decompression bomb: a few KB that declare 32000 x 32000).

    OpenCV applies the EXIF orientation; 16-bit images are scaled to 8 bits, grey is replicated, alpha dropped.
    """
    import cv2

    _check_pixels(image_size(data), context, max_pixels)
    buf = np.frombuffer(data, np.uint8)
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR) if buf.size else None
    except cv2.error as exc:  # OpenCV's own limit (formats whose header facekit does not read), and the like
        why = "over OpenCV's pixel limit (see --max-pixels)" if "CV_IO_MAX_IMAGE" in str(exc) else _last_line(exc)
        raise ImageDecodeError(f"{context}: cannot decode image ({len(buf)} bytes): {why}") from None
    except MemoryError:
        raise ImageDecodeError(f"{context}: cannot decode image ({len(buf)} bytes): out of memory") from None
    if image is None:
        why = "empty" if not buf.size else "truncated or corrupt, or not an image format OpenCV reads"
        raise ImageDecodeError(f"{context}: cannot decode image ({len(buf)} bytes): {why}")
    _check_pixels(image.shape[1::-1], context, max_pixels)  # formats whose header is not read: OpenCV's limit held
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def _check_pixels(size: tuple[int, int] | None, context: str, max_pixels: int) -> None:
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageDecodeError(
            f"{context}: {size[0]} x {size[1]} pixels ({_mp(size[0] * size[1])} MP) is over the --max-pixels limit "
            f"of {_mp(max_pixels)} MP"
        )


def _mp(pixels: int) -> str:
    return f"{pixels / 1e6:.4g}"


def _last_line(error: Exception) -> str:
    """OpenCV's error on one line, without its source location: "OpenCV (-215:Assertion failed) ..."."""
    text = " ".join(str(error).split())
    return "OpenCV " + text.partition(" error: ")[2] if " error: " in text else text


# Whatever the format, a pixel takes at most 16 bytes in a file (32-bit float RGBA, uncompressed: OpenEXR), and
# metadata some MB: a larger file cannot hold a photo within the pixel limit, so it is refused without being read.
BYTES_PER_PIXEL = 16
METADATA_BYTES = 1 << 24
_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def _not_regular(mode: int) -> str | None:
    """What a file of st_mode `mode` is ("a FIFO", "a character device", ...), or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), f"mode {stat.filemode(mode)}")


def file_problem(path: str | os.PathLike) -> str | None:
    """Why `path` cannot be read as a photo file, without opening it: "PATH: not a regular file (a FIFO)" (or a
    device, a socket, a folder), "PATH: broken symbolic link (to X)", "PATH: cannot read (Too many levels of
    symbolic links)"; None for a regular file, or a symbolic link to one."""
    try:
        kind = _not_regular(os.stat(path).st_mode)
    except FileNotFoundError:
        return f"{path}: broken symbolic link (to {os.readlink(path)})" if os.path.islink(path) else None
    except OSError as exc:
        return f"{path}: cannot read ({exc.strerror})"
    return f"{path}: not a regular file ({kind})" if kind else None


def read_file(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """The bytes of the photo file `path` (a symbolic link is followed). Anything but a regular file (a FIFO, a
    device, a socket) is refused before it is opened, so nothing blocks or runs forever; so is a file larger than a
    photo within `max_pixels` can be. No more than the size the open file had is read: a file that grows meanwhile
    is refused."""
    problem = file_problem(path)  # before opening: opening a FIFO blocks, a device may act
    if problem:
        raise ImageDecodeError(problem)
    limit = BYTES_PER_PIXEL * max_pixels + METADATA_BYTES
    try:
        # O_NONBLOCK: should a FIFO have taken the file's place since, opening it does not block; fstat then tells
        with open(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)), "rb") as f:
            status = os.fstat(f.fileno())
            kind = _not_regular(status.st_mode)
            if kind:
                raise ImageDecodeError(f"{path}: not a regular file ({kind})")
            if status.st_size > limit:
                raise ImageDecodeError(
                    f"{path}: {status.st_size} bytes, more than any photo within the --max-pixels limit takes "
                    f"({limit}); not read"
                )
            data = f.read(status.st_size + 1)  # read(n) allocates n bytes first; one more: did it grow since?
    except FileNotFoundError:
        raise MissingDataError(f"{path}: no such image file") from None
    except OSError as exc:
        raise ImageDecodeError(f"{path}: cannot read ({exc.strerror})") from None
    if len(data) > status.st_size:
        raise ImageDecodeError(f"{path}: grew while read (still being written?)")
    return data


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file (any path, non-ASCII included) as BGR uint8 [H, W, 3]; read_file's checks, then
    decode_image's."""
    return decode_image(read_file(path, max_pixels), os.fspath(path), max_pixels)


def list_images(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Image files named directly, or found recursively (sorted) in named folders. In a folder, whatever has an
    image's name and is not a folder is listed, FIFOs, devices, sockets and broken symbolic links included, so that
    reading it says what it is (read_file); a path named directly must be a file or a folder."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if is_image_file(p) and not p.is_dir())
        elif path.is_file():
            found.append(path)
        elif path.exists():
            raise ImageDecodeError(file_problem(path))
        else:
            raise MissingDataError(f"{path}: no such file or folder")
    return found


def encode_jpeg(image: np.ndarray, quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageDecodeError(f"cannot JPEG-encode an image of shape {image.shape}")
    return buf.tobytes()


def read_each(
    paths: Sequence[str | os.PathLike],
    skipped: list[str],
    desc: str,
    progress: bool | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[tuple[int, Path, np.ndarray]]:
    """(position, path, BGR image) of each readable image (read_image), with a progress bar on stderr (progress
    None: only on a terminal). Unreadable images are left out and their one-line errors appended to `skipped`."""
    import sys

    from tqdm import tqdm

    disable = None if progress is None else not progress
    errors = photo_errors()
    for i, path in enumerate(tqdm(paths, desc=desc, unit="img", disable=disable, file=sys.stderr)):
        try:
            image = read_image(path, max_pixels)
        except errors as exc:
            skipped.append(photo_failure(path, exc))
            continue
        yield i, Path(path), image


class NoReadablePhotos(ImageDecodeError):
    """Not one photo of a batch job could be read (nothing was written); `unreadable` holds each one's error."""

    def __init__(self, unreadable: list[str]) -> None:
        super().__init__(f"none of the {len(unreadable)} photos could be read")
        self.unreadable = unreadable


def photo_errors() -> tuple[type[BaseException], ...]:
    """What working on one photo may raise that skips that photo in a batch job: facekit's errors, OpenCV's, and
    running out of memory on it."""
    import cv2

    return FacekitError, cv2.error, MemoryError


def photo_failure(path: str | os.PathLike, error: BaseException) -> str:
    """The one line a batch job lists for a photo that raised one of photo_errors(); a ModelError (the model is
    broken, not the photo) is raised again, which ends the job."""
    if isinstance(error, ModelError):
        raise error
    if isinstance(error, FacekitError):
        return str(error)
    return f"{path}: {'out of memory' if isinstance(error, MemoryError) else _last_line(error)}"
