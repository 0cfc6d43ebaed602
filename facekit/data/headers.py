"""Width and height of a photo from its header, without decoding it: JPEG, PNG, GIF, BMP, WebP, TIFF and PNM/PAM/PFM.
Other formats (JPEG 2000, AVIF, OpenEXR, Radiance HDR, Sun raster) are left to OpenCV's own pixel limit."""

from __future__ import annotations

import re
import struct
from collections.abc import Callable

Size = tuple[int, int]  # (width, height)

# JPEG frame headers SOF0-SOF15 (not DHT C4, JPG C8, DAC CC): length, precision, then height and width
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_NO_LENGTH = frozenset([0x01, *range(0xD0, 0xD8)])  # TEM, RST0-7: markers without a segment
_PNM_NUMBER = re.compile(rb"(?:\s|#[^\n]*\n)+(\d+)")


def _jpeg(data: bytes) -> Size | None:
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker in _NO_LENGTH:
            i += 2
        elif marker in _SOF:
            height, width = struct.unpack_from(">HH", data, i + 5)
            return width, height
        elif marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before them
            return None
        else:
            i += 2 + struct.unpack_from(">H", data, i + 2)[0]
    return None


def _png(data: bytes) -> Size | None:
    return struct.unpack_from(">II", data, 16) if data[12:16] == b"IHDR" else None


def _gif(data: bytes) -> Size | None:
    return struct.unpack_from("<HH", data, 6)  # the logical screen, which every frame is drawn into


def _bmp(data: bytes) -> Size | None:
    if struct.unpack_from("<I", data, 14)[0] == 12:  # BITMAPCOREHEADER
        return struct.unpack_from("<HH", data, 18)
    width, height = struct.unpack_from("<ii", data, 18)  # height < 0: stored top-down
    return abs(width), abs(height)


def _webp(data: bytes) -> Size | None:
    chunk = data[12:16]
    if data[8:12] != b"WEBP":
        return None
    if chunk == b"VP8 ":  # lossy: 14-bit sizes after the frame tag and start code
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":  # lossless: signature 0x2f, then width-1 and height-1 in 14 bits each
        bits = struct.unpack_from("<I", data, 21)[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: the canvas, width-1 and height-1 in 24 bits each
        return (int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1)
    return None


def _tiff(data: bytes) -> Size | None:
    order = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack_from(order + "I", data, 4)
    (count,) = struct.unpack_from(order + "H", data, offset)
    found = {}
    for k in range(count):
        tag, kind = struct.unpack_from(order + "HH", data, offset + 2 + 12 * k)
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG (4)
            found[tag] = struct.unpack_from(order + ("H" if kind == 3 else "I"), data, offset + 10 + 12 * k)[0]
    return (found[256], found[257]) if len(found) == 2 else None


def _pnm(data: bytes) -> Size | None:
    if data[1:2] == b"7":  # PAM: WIDTH and HEIGHT lines before ENDHDR
        head = data[: data.find(b"ENDHDR")]
        width, height = (re.search(rb"\n%s\s+(\d+)" % key, head) for key in (b"WIDTH", b"HEIGHT"))
        return (int(width[1]), int(height[1])) if width and height else None
    if data[1:2] not in (b"1", b"2", b"3", b"4", b"5", b"6", b"F", b"f"):
        return None
    width = _PNM_NUMBER.match(data, 2)
    height = width and _PNM_NUMBER.match(data, width.end())
    return (int(width[1]), int(height[1])) if height else None


# signature at the start of the file -> the parser of its header
HEADERS: dict[bytes, Callable[[bytes], Size | None]] = {
    b"\xff\xd8": _jpeg,
    b"\x89PNG\r\n\x1a\n": _png,
    b"GIF87a": _gif,
    b"GIF89a": _gif,
    b"BM": _bmp,
    b"RIFF": _webp,
    b"II*\x00": _tiff,
    b"MM\x00*": _tiff,
    b"P": _pnm,
}


def image_size(data: bytes | memoryview) -> Size | None:
    """(width, height) from the header of an encoded photo; None when the format is not one of HEADERS or the
    header is cut short or malformed (OpenCV then finds out)."""
    data = data if isinstance(data, bytes) else bytes(data)
    for signature, parse in HEADERS.items():
        if data.startswith(signature):
            try:
                return parse(data)
            except (struct.error, IndexError):
                return None
    return None
