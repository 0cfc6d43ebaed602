"""`facekit pack-rec`: identity folders -> insightface RecordIO."""

from __future__ import annotations

import shutil

import cv2
import numpy as np

from facekit.data.lst import Property, read_lst, read_property
from facekit.data.recordio import unpack
from facekit.data.recset import open_recognition_set


def test_pack_orl_aligned(cli, shared_data, tmp_path):
    out = tmp_path / "rec"
    result = cli("pack-rec", shared_data / "faces/orl_aligned_112", out)
    assert result.exit_code == 0, result.output
    assert "packed 400 images of 40 identities" in result.output
    with open_recognition_set(out) as rset:
        assert rset.convention == "insightface"
        header, _ = unpack(rset.reader.read(0))
        assert header.label == (401.0, 441.0)
        assert rset.identity_ranges[0] == (1, 11) and rset.identity_ranges[39] == (391, 401)
        label, data = rset.read(11)
    assert label == 1 and data == (shared_data / "faces/orl_aligned_112/s2/1.jpg").read_bytes()  # stored as is
    assert read_property(out / "property") == Property(40, 112, 112)
    style, entries = read_lst(out / "cele.lst")
    assert style == "face2rec2" and entries[10].path == "s2/1.jpg" and entries[10].label == 1
    assert sorted(p.name for p in out.iterdir()) == ["cele.idx", "cele.lst", "cele.rec", "property"]
    assert cli("inspect", out).exit_code == 0


def test_wrong_size_refused_unless_resize(cli, shared_data, tmp_path):
    result = cli("pack-rec", shared_data / "faces/orl", tmp_path / "rec")
    assert result.exit_code == 1
    assert "400 of 400 images are not 112x112 (e.g. s1/1.pgm (92x112)" in result.output
    assert not (tmp_path / "rec" / "cele.rec").exists()
    result = cli("pack-rec", shared_data / "faces/orl", tmp_path / "rec", "--resize")
    assert result.exit_code == 0
    with open_recognition_set(tmp_path / "rec") as rset:
        image = cv2.imdecode(np.frombuffer(rset.read(1)[1], np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (112, 112, 3)


def test_bad_images_skipped_and_reported(cli, shared_data, tmp_path):
    src = tmp_path / "faces"
    for person in ("s1", "s2", "s3"):
        shutil.copytree(shared_data / "faces/orl_aligned_112" / person, src / person)
    (src / "s1" / "3.jpg").write_bytes(b"")
    for f in (src / "s2").iterdir():
        f.write_bytes(b"broken")
    result = cli("pack-rec", src, tmp_path / "rec")
    assert result.exit_code == 0
    assert "packed 19 images of 2 identities" in result.output
    assert "skipped 11 unreadable images" in result.output and "s1/3.jpg: cannot decode image" in result.output
    assert "1 person folders contributed no image: s2" in result.output
    with open_recognition_set(tmp_path / "rec") as rset:
        assert rset.identity_ranges == {0: (1, 10), 1: (10, 20)}


def test_existing_output_survives_a_failed_pack(cli, shared_data, tmp_path):
    out = tmp_path / "rec"
    assert cli("pack-rec", shared_data / "faces/orl_aligned_112", out).exit_code == 0
    before = (out / "cele.rec").read_bytes()
    assert cli("pack-rec", shared_data / "faces/orl", out).exit_code == 1
    assert (out / "cele.rec").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
