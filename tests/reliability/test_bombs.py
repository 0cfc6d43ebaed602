"""Decompression bombs: a few bytes that declare a gigantic photo. facekit reads the width and height from the
header and refuses a photo over --max-pixels (100 MP by default) before decoding it; formats whose header it does not
read meet OpenCV's own limit (the same 100 MP, raised with --max-pixels), then facekit's check of the decoded size.
Memory stays bounded, the bomb is listed, and every good photo's result is written; a bomb that is the only photo is
a one-line error."""

from __future__ import annotations

import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from .helpers import BIDEN, OBAMA, OBAMA2, PEAK_CEILING_MB, clean_error, copy, measured, records, skipped

UNREADABLE = "warning: unreadable photos, skipped"
OVER = "pixels ({} MP) is over the --max-pixels limit of {} MP"


def png_bomb(width: int, height: int, rows: int | None = None) -> bytes:
    """A grey 8-bit PNG of width x height whose IDAT holds `rows` rows of zeros (all of them by default: about
    1 KB per MB decoded, for the deflate stream repeats one flushed block; else a stub that ends early)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = height if rows is None else rows
    block = 1000  # rows per deflate block: a multiple of it is built
    zeros = bytes((width + 1) * block)  # each row: filter byte 0, then the pixels
    deflate = zlib.compressobj(9)
    head = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    body = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)  # byte-aligned, history reset: repeatable
    total = (width + 1) * block * (rows // block)
    adler = (total % 65521) << 16 | 1  # adler32 of `total` zero bytes
    idat = head + body * (rows // block - 1) + b"\x03\x00" + struct.pack(">I", adler)  # an empty final block
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def hdr_bomb(width: int, height: int, rows: int | None = None) -> bytes:
    """A Radiance HDR (a format whose header facekit does not read) of width x height black pixels, run-length
    coded: 4 x 2 bytes per 127 pixels in, 12 bytes per pixel (float32 RGB) out; only `rows` rows when given."""
    runs, left = [], width
    while left:
        runs.append(bytes([128 + min(127, left), 0]))
        left -= min(127, left)
    line = bytes([2, 2, width >> 8, width & 255]) + b"".join(runs) * 4
    return b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y %d +X %d\n" % (height, width) + line * (rows or height)


@pytest.mark.slow
def test_bombs_among_photos_in_bounded_memory(shared_data, scrfd, tmp_path):
    """detect over a folder holding a 1 MB PNG that decodes to 32000 x 32000 (1 GB), a 50000 x 50000 PNG stub and a
    7 MB HDR of 10200 x 10200 (1.2 GB as floats), beside a real photo, in a real process: the three are listed (two
    by their header, the HDR by OpenCV's limit), the photo's result is written, exit 0, and the peak resident
    memory stays under the ceiling of a normal run's."""
    folder = tmp_path / "photos"
    copy(shared_data / OBAMA, folder / "obama.jpg")
    hdr = hdr_bomb(10200, 10200)
    bombs = {
        "big.png": (png_bomb(32000, 32000), f"32000 x 32000 {OVER.format(1024, 100)}"),
        "huge.png": (png_bomb(50000, 50000, rows=1000), f"50000 x 50000 {OVER.format(2500, 100)}"),
        "huge.hdr": (hdr, f"cannot decode image ({len(hdr)} bytes): over OpenCV's pixel limit (see --max-pixels)"),
    }
    for name, (data, _) in bombs.items():
        (folder / name).write_bytes(data)
    out = tmp_path / "faces.jsonl"
    code, output, peak = measured("detect", folder, "--model", scrfd, "--out", out, timeout=120)
    assert code == 0 and "Traceback" not in output, output
    for name, (_, why) in bombs.items():
        assert f"  - {folder / name}: {why}" in output, (name, output)
    assert peak < PEAK_CEILING_MB, (peak, output)
    assert sorted(records(out.read_text())) == ["obama.jpg"]


def test_a_bomb_alone_is_a_one_line_error(cli, scrfd, random_recognizer, knn_gallery, tmp_path):
    """A 32000 x 32000 PNG as the only photo of detect or recognize: `Error: PATH: 32000 x 32000 pixels (1024 MP)
    is over the --max-pixels limit of 100 MP`, exit 1, no --out written."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb(32000, 32000, rows=1000))
    out = tmp_path / "out.jsonl"
    message = f"{bomb}: 32000 x 32000 {OVER.format(1024, 100)}"
    assert clean_error(cli("detect", bomb, "--model", scrfd, "--out", out), 1) == f"Error: {message}"
    recognized = cli("recognize", bomb, knn_gallery, scrfd, random_recognizer, "--out", out)
    assert clean_error(recognized, 1) == f"Error: {message}"
    assert not out.exists()


def test_bomb_in_a_batch_keeps_the_good_results(cli, shared_data, scrfd, random_recognizer, tmp_path, monkeypatch):
    """A 50000 x 50000 PNG among good photos (it ended the whole job with a cv2.error traceback and an empty --out),
    and a photo on which detection raises OpenCV's error (injected: what a failure inside OpenCV looks like): build-db,
    recognize --out and detect --out list both and write every good photo's result. A 2 x 30000 strip, whose
    resizing once raised that error, is read and searched (no face)."""
    from facekit.runtime.onnx_detector import OnnxDetector

    people = tmp_path / "people"
    copy(shared_data / OBAMA, people / "obama/obama.jpg")
    copy(shared_data / BIDEN, people / "biden/biden2.jpg")
    failing = copy(shared_data / OBAMA2, people / "obama/obama2.jpg")  # 626 x 1200
    bomb = people / "obama/bomb.png"
    bomb.write_bytes(png_bomb(50000, 50000, rows=1000))
    thin = people / "biden/thin.png"
    assert cv2.imwrite(str(thin), np.zeros((2, 30000, 3), np.uint8))
    original = OnnxDetector._input

    def fails_on_obama2(self, image: np.ndarray, max_size: int | None):
        if image.shape[:2] == (1200, 626):
            raise cv2.error(
                "OpenCV(4.13.0) resize.cpp:4208: error: (-215:Assertion failed) !ssize.empty() in function 'resize'\n"
            )
        return original(self, image, max_size)

    monkeypatch.setattr(OnnxDetector, "_input", fails_on_obama2)
    why = {
        bomb: f"50000 x 50000 {OVER.format(2500, 100)}",
        failing: "OpenCV (-215:Assertion failed) !ssize.empty() in function 'resize'",
    }
    db, out, boxes = tmp_path / "g.h5", tmp_path / "faces.csv", tmp_path / "boxes.jsonl"
    runs = {
        "build-db": (cli("build-db", people, scrfd, random_recognizer, db), UNREADABLE),
        "recognize": (cli("recognize", people, db, scrfd, random_recognizer, "--out", out, "--format", "csv"),
                      UNREADABLE),
        "detect": (cli("detect", people, "--model", scrfd, "--out", boxes), "warning: skipped 2 unreadable images:"),
    }  # fmt: skip
    for name, (result, title) in runs.items():
        for path, reason in why.items():
            assert f"{path}: {reason}" in skipped(result, title, path), name
        assert str(thin) not in result.output.split(title)[1].split("warning")[0], (name, result.output)
    assert cli("db", "list", db).output == "biden\t1\nobama\t1\n"
    assert sorted({line.split(",")[0] for line in out.read_text().splitlines()[1:]}) == [
        str(people / "biden/biden2.jpg"),
        str(thin),
        str(people / "obama/obama.jpg"),
    ]
    found = records(boxes.read_text())
    assert sorted(found) == ["biden2.jpg", "obama.jpg", "thin.png"] and found["thin.png"]["faces"] == []


def test_max_pixels_sets_the_limit(cli, shared_data, scrfd, random_recognizer, knn_gallery, tmp_path):
    """--max-pixels lowers and raises the limit: at 1,000,000 obama.jpg (910 x 1137) is refused by its header
    (alone: a one-line error), at 1,100,000 it is read; build-db lists biden2.jpg (1200 x 1200) at 1,400,000 and
    enrols obama; an HDR of 1200 x 1000 is refused once decoded; 0 is a usage error (exit 2)."""
    photo = copy(shared_data / OBAMA, tmp_path / "people/obama/obama.jpg")
    copy(shared_data / BIDEN, tmp_path / "people/biden/biden2.jpg")  # 1200 x 1200
    message = f"{photo}: 910 x 1137 {OVER.format(1.035, 1)}"
    detect = ("detect", photo, "--model", scrfd)
    assert clean_error(cli(*detect, "--max-pixels", 1_000_000), 1) == f"Error: {message}"
    assert sorted(records(cli(*detect, "--max-pixels", 1_100_000).stdout)) == ["obama.jpg"]
    recognize = ("recognize", photo, knn_gallery, scrfd, random_recognizer)
    assert clean_error(cli(*recognize, "--max-pixels", 1_000_000), 1) == f"Error: {message}"
    assert sorted(records(cli(*recognize, "--max-pixels", 1_100_000).stdout)) == ["obama.jpg"]
    built = cli("build-db", tmp_path / "people", scrfd, random_recognizer, tmp_path / "g.h5", "--max-pixels", 1_400_000)
    assert skipped(built, UNREADABLE, "biden2.jpg").endswith(f"biden2.jpg: 1200 x 1200 {OVER.format(1.44, 1.4)}")
    assert cli("db", "list", tmp_path / "g.h5").output == "obama\t1\n"
    hdr = tmp_path / "small.hdr"  # a format whose header facekit does not read: checked once decoded
    hdr.write_bytes(hdr_bomb(1200, 1000))
    assert clean_error(cli("detect", hdr, "--model", scrfd, "--max-pixels", 1_000_000), 1) == (
        f"Error: {hdr}: 1200 x 1000 {OVER.format(1.2, 1)}"
    )
    clean_error(cli(*detect, "--max-pixels", 0), 2, "--max-pixels")


@pytest.mark.slow
def test_max_pixels_raises_opencv_limit(scrfd, tmp_path):
    """A --max-pixels above the default raises OpenCV's own limit too (else OpenCV would refuse what the flag lets
    through): a 12000 x 10000 HDR whose data ends after 3 rows is refused by OpenCV's limit at the default, and read
    (then found cut short) at --max-pixels 150000000. Real processes: OpenCV reads its limit when it is loaded."""
    hdr = tmp_path / "stub.hdr"
    hdr.write_bytes(hdr_bomb(12000, 10000, rows=3))
    runs = [("detect", hdr, "--model", scrfd), ("detect", hdr, "--model", scrfd, "--max-pixels", 150_000_000)]
    with ThreadPoolExecutor(2) as pool:
        (code, default, _), (raised_code, raised, _) = pool.map(lambda args: measured(*args, timeout=120), runs)
    assert code == raised_code == 1, (default, raised)
    cannot = f"Error: {hdr}: cannot decode image ({hdr.stat().st_size} bytes): "
    assert default.rstrip("\n").splitlines()[-1] == cannot + "over OpenCV's pixel limit (see --max-pixels)", default
    assert raised.rstrip("\n").splitlines()[-1].startswith(cannot + "truncated or corrupt"), raised
