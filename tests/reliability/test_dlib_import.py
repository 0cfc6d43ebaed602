"""`import-model dlib-resnet` refuses, in one line naming the file, a .dat that is truncated, damaged or another
dlib network (dlib's own mmod face detector and 5-point shape predictor), and leaves no model directory behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from dlib_env import dlib_models

from .helpers import clean_error

EXPECTED = "expected dlib's face recognition ResNet"


@pytest.fixture(scope="module")
def resnet_bytes() -> bytes:
    return (dlib_models() / "dlib_face_recognition_resnet_model_v1.dat").read_bytes()


def _import(cli, file: Path, out: Path, code: int, *fragments: str) -> str:  # the cli fixture
    line = clean_error(cli("import-model", "dlib-resnet", file, out), code, str(file), *fragments)
    assert not (out / "model.pt").exists() and not (out / "recognizer.onnx").exists()
    return line


@pytest.mark.parametrize("keep", [0, 40, 300, 11_000_000, -1])
def test_truncated_dat(cli, tmp_path, resnet_bytes, keep):
    """Cut anywhere (empty, among the versions, in the input layer's name, in a tensor, before the last byte)."""
    file = tmp_path / "cut.dat"
    file.write_bytes(resnet_bytes[:keep])
    _import(cli, file, tmp_path / "m", 1, "truncated: byte", f" of {file.stat().st_size} needs", EXPECTED)


def test_trailing_bytes(cli, tmp_path, resnet_bytes):
    file = tmp_path / "long.dat"
    file.write_bytes(resnet_bytes + b"\0" * 3)
    _import(cli, file, tmp_path / "m", 1, "3 bytes after the network's end")


def test_damaged_layer_name(cli, tmp_path, resnet_bytes):
    """The first conv's name changed (con_4 -> cxn_4): the layer and its byte offset are named."""
    at = resnet_bytes.index(b"con_4")
    file = tmp_path / "odd.dat"
    file.write_bytes(resnet_bytes[:at] + b"cxn_4" + resnet_bytes[at + 5 :])
    _import(cli, file, tmp_path / "m", 1, f"byte {at - 2}: a dlib 'cxn_4' layer")


def test_other_layer_settings(cli, tmp_path, resnet_bytes):
    """dlib layers of the right kinds but other settings (the first conv striding 1 down the rows): named."""
    at = resnet_bytes.index(b"con_4") + 5 + 11 + 4 * 4736  # its name, its parameter tensor's header and values
    assert resnet_bytes[at : at + 10] == bytes([1, 32, 1, 7, 1, 7, 1, 2, 1, 2])  # filters, rows, cols, strides
    file = tmp_path / "other.dat"
    file.write_bytes(resnet_bytes[: at + 7] + b"\x01" + resnet_bytes[at + 8 :])
    name_at = resnet_bytes.index(b"con_4") - 2  # its length before it
    fragment = f"layer 0 (byte {name_at}) is a dlib con_4 [32, 7, 7, 1, 2, 0, 0], not a con [32, 7, 7, 2, 2, 0, 0]"
    _import(cli, file, tmp_path / "m", 1, fragment)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("mmod_human_face_detector.dat", "a dlib network with a 'loss_mmod_' loss, not a metric-learning one"),
        ("shape_predictor_5_face_landmarks.dat", "not a dlib neural network file"),
    ],
)
def test_another_dlib_file(cli, tmp_path, name, fragment):
    _import(cli, dlib_models() / name, tmp_path / "m", 1, fragment, EXPECTED)


def test_not_dlib_at_all(cli, tmp_path):
    file = tmp_path / "photo.dat"
    file.write_bytes(b"\xff\xd8\xff\xe0" + bytes(200))
    _import(cli, file, tmp_path / "m", 1, "not a dlib integer")
