"""Image decoding of awkward inputs: grey, alpha, 16-bit, EXIF rotation, GIF, garbage, non-ASCII paths."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from facekit.data.images import decode_image, is_image_file, read_image
from facekit.errors import ImageDecodeError, MissingDataError


def test_real_grey_pgm(shared_data):
    image = read_image(shared_data / "faces/orl/s1/1.pgm")
    assert image.shape == (112, 92, 3) and image.dtype == np.uint8
    assert (image[..., 0] == image[..., 1]).all()


def test_real_png_with_alpha(shared_data):
    image = read_image(shared_data / "faces/face_recognition_examples/tests/test_images/32bit.png")
    assert image.shape == (1200, 626, 3)


def test_16_bit_png_scaled_to_8_bit():
    ok, buf = cv2.imencode(".png", np.full((4, 5), 40000, np.uint16))
    image = decode_image(buf.tobytes(), "x.png")
    assert image.shape == (4, 5, 3) and image.dtype == np.uint8 and image[0, 0, 0] == 40000 >> 8


def test_exif_orientation_applied():
    image = np.zeros((20, 40, 3), np.uint8)
    _, buf = cv2.imencode(".jpg", image)
    data = buf.tobytes()
    tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack("<I", 0)
    app1 = b"\xff\xe1" + struct.pack(">H", 8 + len(tiff)) + b"Exif\x00\x00" + tiff
    assert decode_image(data[:2] + app1 + data[2:], "rotated.jpg").shape == (40, 20, 3)


def test_gif(tmp_path):
    image = np.zeros((8, 6, 3), np.uint8)
    path = tmp_path / "a.gif"
    assert cv2.imwrite(str(path), image)
    assert is_image_file(path)
    assert read_image(path).shape == (8, 6, 3)


def test_non_ascii_path(tmp_path, shared_data):
    path = tmp_path / "Zoë Ñúñez 山田.jpg"
    path.write_bytes((shared_data / "faces/orl_aligned_112/s1/1.jpg").read_bytes())
    assert read_image(path).shape == (112, 112, 3)


@pytest.mark.parametrize("data", [b"", b"not an image", b"\xff\xd8\xff\xe0" + b"\0" * 50])
def test_garbage_is_a_clean_error(data):
    with pytest.raises(ImageDecodeError, match=r"bad.jpg: cannot decode image"):
        decode_image(data, "bad.jpg")


def test_missing_file(tmp_path):
    with pytest.raises(MissingDataError, match="no such image file"):
        read_image(tmp_path / "nope.jpg")
