"""Training-crop augmentation (facekit/recognition/augment.py) on real face crops: keyed draws, each change on its
own, the CLI's documented defaults, and the keyed dataset the trainer reads."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from facekit.recognition.augment import Augment, augment

NONE = Augment(**{f.name: 0.0 for f in dataclasses.fields(Augment)})


@pytest.fixture(scope="module")
def face(shared_data):
    """A real in-the-wild colour crop (CelebA), resized to 112 x 112."""
    path = sorted((shared_data / "faces/celeba_subset/7201").glob("*.jpg"))[0]
    return cv2.resize(cv2.imread(str(path)), (112, 112))


def keyed(seed, epoch, index):
    return np.random.default_rng([seed, epoch, index])


def test_same_key_same_crop_other_key_other_crop(face):
    a = augment(face, keyed(0, 3, 17), Augment())
    assert a.dtype == np.uint8 and a.shape == face.shape and a.flags.c_contiguous
    assert np.array_equal(a, augment(face, keyed(0, 3, 17), Augment()))
    assert not np.array_equal(a, augment(face, keyed(0, 4, 17), Augment()))
    assert not np.array_equal(a, augment(face, keyed(1, 3, 17), Augment()))


def test_all_off_is_the_identity(face):
    assert np.array_equal(augment(face, keyed(0, 0, 0), NONE), face)
    assert not NONE.active and NONE.describe() == "none"


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(Augment)])
def test_each_change_alone(face, name):
    aug = dataclasses.replace(NONE, **{name: 1.0})
    outs = [augment(face, keyed(0, 0, i), aug) for i in range(4)]
    assert all(not np.array_equal(out, face) for out in outs), name
    if name == "flip":
        assert all(np.array_equal(out, face[:, ::-1]) for out in outs)
    if name == "grey":
        assert all((out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all() for out in outs)
    if name in ("blur", "lowres"):  # less fine detail: smaller Laplacian energy
        assert all(cv2.Laplacian(out, cv2.CV_64F).var() < cv2.Laplacian(face, cv2.CV_64F).var() for out in outs)
    if name == "erase":  # one rectangle changed, the rest untouched
        for out in outs:
            rows, cols = np.nonzero((out != face).any(-1))
            assert 0.005 < len(rows) / face[..., 0].size <= 0.2
            box = np.s_[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
            assert (out[box] != face[box]).any(-1).mean() > 0.9


def test_crop_moves_and_scales_within_its_strength():
    """A dot at the centre moves by the shift only (the zoom is about the centre): at most 0.08 x 112 = 9 px."""
    dot = np.zeros((112, 112, 3), np.uint8)
    dot[55:57, 55:57] = 255
    moved = []
    for i in range(20):
        out = augment(dot, keyed(0, 0, i), dataclasses.replace(NONE, crop=0.08)).max(-1).astype(float)
        ys, xs = np.indices(out.shape)
        moved.append(np.hypot((xs * out).sum() / out.sum() - 55.5, (ys * out).sum() / out.sum() - 55.5))
    assert 0.5 < max(moved) <= 0.08 * 112 * np.sqrt(2) + 0.5


def test_rotate_turns_about_the_centre_within_its_strength():
    """Two dots on a horizontal line through the centre end up on a line turned by at most 10 degrees."""
    dots = np.zeros((112, 112, 3), np.uint8)
    dots[55:57, [25, 26, 85, 86]] = 255
    angles = []
    for i in range(20):
        out = augment(dots, keyed(0, 0, i), dataclasses.replace(NONE, rotate=10.0)).max(-1).astype(float)
        ys, xs = np.indices(out.shape)
        left, right = xs < 56, xs >= 56
        centres = [
            ((xs * out * m).sum() / (out * m).sum(), (ys * out * m).sum() / (out * m).sum()) for m in (left, right)
        ]
        (x0, y0), (x1, y1) = centres
        angles.append(abs(np.degrees(np.arctan2(y1 - y0, x1 - x0))))
    assert 1.0 < max(angles) <= 10.5


def test_strengths_are_checked():
    with pytest.raises(ValueError, match="erase must lie in"):
        Augment(erase=1.5)
    with pytest.raises(ValueError, match=r"rotate must lie in \[0, 180\]"):
        Augment(rotate=200)


def test_cli_defaults_are_augment_defaults():
    from facekit.cli.train_recognize import train_recognize_cmd

    defaults = {p.name: p.default for p in train_recognize_cmd.params}
    assert {f.name: defaults[f"aug_{f.name}"] for f in dataclasses.fields(Augment)} == dataclasses.asdict(Augment())


def test_keyed_faces_repeat_per_epoch_and_sample(shared_data):
    from facekit.data.recset import open_recognition_set
    from facekit.recognition.trainset import KeyedFaces

    with open_recognition_set(shared_data / "layouts/recognition_train_data") as rset:
        faces = KeyedFaces(rset, seed=0, aug=Augment())
        image, label = faces[(2, 5)]
        assert image.shape == (3, 112, 112) and label == 0
        assert image.equal(faces[(2, 5)][0]) and not image.equal(faces[(3, 5)][0])
