"""Width and height from photo headers (data/headers.py), for every format of its table, as OpenCV and Pillow write
them; cut-short headers and formats it does not read give None."""

from __future__ import annotations

import io
import struct

import cv2
import numpy as np
import pytest
from PIL import Image

from facekit.data.headers import HEADERS, image_size

PIXELS = np.random.default_rng(0).integers(0, 256, (37, 53, 3), np.uint8)  # 53 wide, 37 high


def pillow(fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(PIXELS).save(out, fmt, **options)
    return out.getvalue()


def opencv(ext: str, grey: bool = False) -> bytes:
    ok, data = cv2.imencode(ext, PIXELS[..., 0] if grey else PIXELS)
    assert ok
    return data.tobytes()


def big_endian_tiff(width: int, height: int) -> bytes:
    """A minimal big-endian TIFF header: one IFD with ImageWidth (SHORT) and ImageLength (LONG)."""
    entries = struct.pack(">HHIHH", 256, 3, 1, width, 0) + struct.pack(">HHII", 257, 4, 1, height)
    return b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 2) + entries + struct.pack(">I", 0)


ENCODED = {
    "jpeg": lambda: opencv(".jpg"),
    "progressive jpeg": lambda: cv2.imencode(".jpg", PIXELS, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes(),
    "jpeg with exif": lambda: pillow("JPEG", exif=Image.Exif().tobytes()),
    "png": lambda: opencv(".png"),
    "gif": lambda: opencv(".gif"),
    "gif87a": lambda: b"GIF87a" + struct.pack("<HH", 53, 37) + pillow("GIF")[10:],
    "bmp": lambda: opencv(".bmp"),
    "webp lossy": lambda: opencv(".webp"),
    "webp lossless": lambda: pillow("WEBP", lossless=True),
    "webp extended": lambda: pillow("WEBP", exif=b"Exif\x00\x00II*\x00"),
    "tiff": lambda: opencv(".tiff"),
    "big-endian tiff": lambda: big_endian_tiff(53, 37),
    "ppm": lambda: opencv(".ppm"),
    "pgm": lambda: opencv(".pgm", grey=True),
    "pbm": lambda: opencv(".pbm", grey=True),
    "pnm with a comment": lambda: b"P6\n# made by hand\n53 37\n255\n" + PIXELS.tobytes(),
    "pam": lambda: opencv(".pam"),
    "pfm": lambda: cv2.imencode(".pfm", PIXELS.astype(np.float32))[1].tobytes(),
}


@pytest.mark.parametrize("name", ENCODED)
def test_size_from_the_header(name):
    assert image_size(ENCODED[name]()) == (53, 37)


def test_every_signature_is_covered():
    covered = {sig for sig in HEADERS if any(ENCODED[name]().startswith(sig) for name in ENCODED)}
    assert covered == set(HEADERS)


@pytest.mark.parametrize("name", ["jpeg", "png", "webp lossy", "tiff", "bmp", "gif"])
def test_cut_short_header_gives_none(name):
    assert image_size(ENCODED[name]()[:8]) is None


def test_formats_not_read_give_none():
    assert image_size(cv2.imencode(".hdr", PIXELS.astype(np.float32))[1].tobytes()) is None
    assert image_size(cv2.imencode(".ras", PIXELS)[1].tobytes()) is None
    assert image_size(b"") is None and image_size(b"not an image") is None
