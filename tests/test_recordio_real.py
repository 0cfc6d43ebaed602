"""RecordIO files written by the real MXNet 1.9.1 (../shared/data) read by facekit."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facekit.data.lst import read_lst
from facekit.data.recordio import IRHeader, unpack
from facekit.data.recset import open_recognition_set

FIXTURES = "fixtures/mxnet_recordio"
NUM_IDS, PER_ID = 5, 6  # make_fixture.py


def decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


@pytest.mark.parametrize(
    "name, convention, first_key, first_header",
    [
        ("face2rec2", "insightface", 1, IRHeader(2, (0.0, 1.0), 1, 0)),  # images written first, key 0 after them
        ("scalar_label", "insightface", 1, IRHeader(0, 0.0, 1, 0)),
        ("plain", "plain", 0, IRHeader(0, 0.0, 0, 0)),  # RecBuilder style: no header record
    ],
)
def test_mxnet_fixtures(shared_data: Path, name: str, convention: str, first_key: int, first_header: IRHeader):
    root = shared_data / FIXTURES
    with open_recognition_set(root / name) as rset:
        assert rset.convention == convention
        assert rset.image_keys == list(range(first_key, first_key + NUM_IDS * PER_ID))
        assert rset.num_classes == NUM_IDS
        if convention == "insightface":
            assert rset.identity_ranges == {i: (1 + PER_ID * i, 1 + PER_ID * (i + 1)) for i in range(NUM_IDS)}
            assert unpack(rset.reader.read(0))[0] == IRHeader(2, (31.0, 36.0))
        else:
            assert rset.identity_ranges == {}
        assert unpack(rset.reader.read(first_key))[0] == first_header
        _, lst = read_lst(root / name / "train.lst")
        for i, key in enumerate(rset.image_keys):
            label, image = rset.read(key)
            jpeg = root / "images" / f"id{i // PER_ID:03d}" / f"{i % PER_ID}.jpg"
            assert label == i // PER_ID == lst[i].label and (root / name / lst[i].path).resolve() == jpeg
            assert unpack(rset.reader.read(key))[0].id == key
            # pack_img(quality=95) and cv2.imwrite(quality 95) encoded the same array with the same libjpeg.
            assert image == jpeg.read_bytes()
            assert np.array_equal(decode(image), cv2.imread(str(jpeg)))


def test_face2rec2_header_is_not_first_in_file(shared_data: Path):
    with open_recognition_set(shared_data / FIXTURES / "face2rec2") as rset:
        assert rset.reader.offsets[1] == 0 and rset.reader.offsets[0] > rset.reader.offsets[30]


def test_recognition_train_data(shared_data: Path):
    root = shared_data / "layouts/recognition_train_data"
    with open_recognition_set(root) as rset:
        assert rset.convention == "insightface" and len(rset) == 300 and rset.image_keys == list(range(1, 301))
        assert unpack(rset.reader.read(0))[0] == IRHeader(2, (301.0, 331.0))
        assert rset.identity_ranges == {i: (1 + 10 * i, 11 + 10 * i) for i in range(30)}
        assert rset.num_classes == 30 and (rset.prop.num_classes, rset.prop.height, rset.prop.width) == (30, 112, 112)
        _, lst = read_lst(root / "cele.lst")
        assert len(lst) == 300
        for key, entry in zip(rset.image_keys, lst):
            label, data = rset.read(key)
            assert label == entry.label == (key - 1) // 10 and entry.path == f"s{label + 1}/{(key - 1) % 10 + 1}.jpg"
            assert unpack(rset.reader.read(key))[0] == IRHeader(2, (float(label), 1.0), key, 0)
            image = decode(data)
            assert image.shape == (112, 112, 3)
            # The .rec holds a quality-95 re-encode of the aligned photo: within 2 levels, mean error about 0.05.
            diff = np.abs(image.astype(int) - cv2.imread(str(shared_data / "faces/orl_aligned_112" / entry.path)))
            assert diff.max() <= 2 and diff.mean() < 0.1
