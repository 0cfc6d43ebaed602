"""label.txt (RetinaFace and SCRFD labelv2) on the real layout and on malformed copies."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from facekit.data.labels import ImageLabels, read_labels, resolve_images, write_labels
from facekit.errors import DataFormatError, MissingDataError


@pytest.fixture
def detection_root(shared_data):
    return shared_data / "layouts/detection_train_data"


@pytest.mark.parametrize(("split", "images", "faces"), [("train", 12, 55), ("val", 3, 6), ("test", 3, 0)])
def test_real_splits(detection_root, split, images, faces):
    style, labels = read_labels(detection_root / split / "label.txt")
    assert style == "retinaface"
    assert len(labels) == images
    assert sum(im.num_faces for im in labels) == faces
    paths = resolve_images(detection_root / split / "label.txt", labels)
    assert all(p.is_file() and p.is_relative_to(detection_root / split / "images") for p in paths)


def test_real_first_face_values(detection_root):
    _, labels = read_labels(detection_root / "train/label.txt")
    first = labels[0]
    assert first.path == "0--dlib/2007_007763.jpg"
    # "194.0 90.0 37.0 37.0 205.000 105.667 0.000 217.167 105.667 ..." -> corners and points
    np.testing.assert_allclose(first.boxes[0], [194, 90, 231, 127])
    np.testing.assert_allclose(first.landmarks[0, :2], [[205.0, 105.667], [217.167, 105.667]], atol=1e-3)
    assert first.landmark_mask.all()
    assert first.scores[0] == 1.0
    # every labelled point of the real data lies inside its box (a sanity check of the parsing order)
    for im in labels:
        inside = (im.landmarks >= im.boxes[:, None, :2] - 1) & (im.landmarks <= im.boxes[:, None, 2:] + 1)
        assert inside.all(), im.path


def test_paths_only_test_split(detection_root):
    _, labels = read_labels(detection_root / "test/label.txt")
    assert [im.path for im in labels] == ["2--test/obama-480p.jpg", "2--test/alex_lacamoire1.jpg", "2--test/dogs.jpg"]
    assert all(im.boxes.shape == (0, 4) and im.landmarks.shape == (0, 5, 2) for im in labels)


def test_missing_landmarks_are_masked(tmp_path):
    path = tmp_path / "label.txt"
    path.write_text(
        "# a.jpg\n"
        "10 20 30 40 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 -1 0.5\n"
        "1 2 3 4\n"
        "5 5 10 10 6 6 0 8 6 1 7 8 0 6 10 0 8 10 0 0.9\n"
    )
    _, (im,) = read_labels(path)
    assert im.landmark_mask.tolist() == [False, False, True]
    assert (im.landmarks[0] == -1).all()
    np.testing.assert_allclose(im.boxes[2], [5, 5, 15, 15])
    np.testing.assert_allclose(im.scores, [0.5, 1.0, 0.9])


def test_labelv2(tmp_path):
    path = tmp_path / "label.txt"
    path.write_text(
        "# sub/a.jpg 640 480\n10 20 50 70\n10 20 50 70 1\n10 20 50 70 20 30 0 40 30 0 30 40 0 22 55 0 38 55 0\n"
    )
    style, (im,) = read_labels(path)
    assert style == "labelv2" and im.size == (640, 480) and im.path == "sub/a.jpg"
    np.testing.assert_allclose(im.boxes[0], [10, 20, 50, 70])
    assert im.landmark_mask.tolist() == [False, False, True]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "# a.jpg\n1 2 3\n",
            "label.txt:2: expected 4 or 20 numbers (x y w h [5 x (lx ly flag)] score) after '# a.jpg', got 3",
        ),
        ("1 2 3 4\n", "label.txt:1: face line before the first '# <image path>' line"),
        ("# a.jpg\n1 2 x 4\n", "label.txt:2: expected numbers after '# a.jpg'"),
        ("# a.jpg\n1 2 -3 4\n", "label.txt:2: negative box size"),
        ("#\n", "label.txt:1: '#' line without an image path"),
        ("# a.jpg\n1 2 nan 4\n", "label.txt:2: non-finite number"),
        ("# a.jpg 10 10\n1 2 3 4\n# b.jpg\n", "label.txt:3: retinaface image line in a labelv2 label file"),
        ("# a.jpg 10 10\n5 5 1 1\n", "label.txt:2: box corners reversed"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "label.txt"
    path.write_text(text)
    with pytest.raises(DataFormatError) as info:
        read_labels(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_malformed_copy_of_real_file(detection_root, tmp_path):
    lines = (detection_root / "train/label.txt").read_text().splitlines()
    lines[5] = " ".join(lines[5].split()[:7])  # truncate one face line of the real file
    path = tmp_path / "label.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"label.txt:6: expected 4 or 20 numbers .* got 7"):
        read_labels(path)


def test_missing_images_listed_once(detection_root, tmp_path):
    split = tmp_path / "train"
    shutil.copytree(detection_root / "train", split)
    for name in ("0--dlib/2007_007763.jpg", "1--pseudo/t1.jpg"):
        (split / "images" / name).unlink()
    _, labels = read_labels(split / "label.txt")
    with pytest.raises(MissingDataError, match=r"2 of 12 images missing .*0--dlib/2007_007763.jpg \(line 1\)"):
        resolve_images(split / "label.txt", labels)


def test_binary_file_is_a_clean_error(tmp_path):
    path = tmp_path / "label.txt"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataFormatError, match="not UTF-8"):
        read_labels(path)


@pytest.mark.parametrize("style", ["retinaface", "labelv2"])
def test_write_read_round_trip(detection_root, tmp_path, style):
    _, labels = read_labels(detection_root / "train/label.txt")
    labels.append(ImageLabels(path="empty.jpg"))
    for im in labels:
        im.size = (1000, 800)
    labels[1].landmark_mask[0] = False
    out = tmp_path / "label.txt"
    write_labels(out, labels, style=style)
    got_style, back = read_labels(out)
    assert got_style == style
    assert [im.path for im in back] == [im.path for im in labels]
    for a, b in zip(labels, back):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=2e-3)
        assert a.landmark_mask.tolist() == b.landmark_mask.tolist()
        np.testing.assert_allclose(a.landmarks[a.landmark_mask], b.landmarks[b.landmark_mask], atol=1e-3)
