"""Identity folders: one sub-folder per person."""

from __future__ import annotations

import pytest

from facekit.data.folders import natural_key, scan_identity_folders
from facekit.errors import LayoutError, MissingDataError


def test_real_orl(shared_data):
    folders = scan_identity_folders(shared_data / "faces/orl")
    assert folders.identities[:3] == ["s1", "s2", "s3"] and folders.identities[-1] == "s40"
    assert len(folders) == 400
    assert folders.items[0][0].name == "1.pgm" and folders.items[1][0].name == "2.pgm"
    assert folders.items[9][0].name == "10.pgm" and folders.items[10][1] == 1
    label, data = folders[0]
    assert label == 0 and data.startswith(b"P5")


def test_real_knn_train(shared_data):
    folders = scan_identity_folders(shared_data / "faces/face_recognition_examples/examples/knn_examples/train")
    assert folders.identities == ["alex_lacamoire", "biden", "kit_harington", "obama", "rose_leslie"]
    assert len(folders) == 9


def test_skips_non_images_hidden_and_empty_folders(tmp_path):
    (tmp_path / "bob").mkdir()
    (tmp_path / "bob" / "a.png").write_bytes(b"x")
    (tmp_path / "bob" / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "a.png").write_bytes(b"x")
    (tmp_path / "loose.jpg").write_bytes(b"x")
    folders = scan_identity_folders(tmp_path)
    assert folders.identities == ["bob"] and folders.empty == ["empty"] and len(folders) == 1


def test_no_identities(tmp_path):
    with pytest.raises(LayoutError, match="no identity folders with images"):
        scan_identity_folders(tmp_path)
    with pytest.raises(MissingDataError):
        scan_identity_folders(tmp_path / "nope")


def test_natural_key():
    assert sorted(["s10", "s2", "S1"], key=natural_key) == ["S1", "s2", "s10"]
