"""make_example_data: the synthetic example data reads back through facekit's readers and shows what its labels say."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from facekit.align import align_face
from facekit.data.images import decode_image, read_image
from facekit.data.labels import read_labels
from facekit.data.lst import Property, read_lst, read_property
from facekit.data.recset import open_recognition_set
from facekit.data.synthetic import ExampleSummary, canonical_crop, example_identities, make_example_data
from facekit.data.verification import bin_people, load_bin

SEED = 0
FACE_REGION = np.s_[8:104, 12:100]  # of a 112x112 aligned crop: the face and hair, little background


@pytest.fixture(scope="session")
def example(tmp_path_factory) -> tuple[Path, ExampleSummary]:
    root = tmp_path_factory.mktemp("example")
    return root, make_example_data(root, seed=SEED)


@pytest.fixture(scope="session")
def truth(example) -> dict:
    return json.loads((example[0] / "truth.json").read_text())


@pytest.fixture(scope="session")
def canonical() -> dict[str, np.ndarray]:
    """Every named identity's neutral aligned crop, unit-normalised over FACE_REGION: name -> float [D]."""
    return {name: _unit(canonical_crop(ident)) for name, ident in example_identities(SEED).items()}


def _unit(crop: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-norm vector of a crop's FACE_REGION, so dot products are normalised correlations."""
    v = crop[FACE_REGION].astype(np.float64).ravel()
    v -= v.mean()
    return v / np.linalg.norm(v)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_same_seed_same_bytes_other_seed_differs(example, tmp_path):
    """Generates twice more (about 6 s CPU each)."""
    root, summary = example
    assert make_example_data(tmp_path / "again", seed=SEED) == summary
    assert _files(tmp_path / "again") == _files(root)
    make_example_data(tmp_path / "other", seed=SEED + 1)
    other, ours = _files(tmp_path / "other"), _files(root)
    for name in ("detection_train_data/train/label.txt", "recognition_train_data/cele.rec", "gallery/person_00/0.jpg"):
        assert other[name] != ours[name], name


def _faces_per_image(label_txt: Path) -> list[int]:
    """Faces listed under each image of a retinaface label.txt, parsed here rather than by facekit's reader: a
    '# path' line opens an image, every other non-empty line is one face."""
    counts: list[int] = []
    for line in label_txt.read_text().splitlines():
        if line.startswith("#"):
            counts.append(0)
        elif line.strip():
            counts[-1] += 1
    return counts


def _photos(folder: Path) -> dict[str, int]:
    """Person folder name -> number of .jpg photos in it."""
    return {p.name: len(list(p.glob("*.jpg"))) for p in folder.iterdir()}


def test_counts_match_summary(example):
    """Every count of the summary, recounted from the files on disk."""
    root, summary = example
    detection = root / "detection_train_data"
    faces = {split: _faces_per_image(detection / split / "label.txt") for split in ("train", "val", "test")}
    images = {split: len(list((detection / split / "images").rglob("*.jpg"))) for split in faces}
    assert images == {split: len(counts) for split, counts in faces.items()}  # label.txt lists every image once
    assert all(1 <= n <= 4 for split in ("train", "val") for n in faces[split])  # 1 to 4 people per scene
    assert not any(faces["test"])  # the test split lists paths only, so its faces can only be bounded
    assert images["test"] <= summary.detection_faces["test"] <= 4 * images["test"]
    with closing(open_recognition_set(root / "recognition_train_data")) as rec:
        recognition = (len(rec), rec.num_classes)
    vset = load_bin(root / "recognition_train_data/example_val.bin")
    gallery, probe, calibration = (_photos(root / folder) for folder in ("gallery", "probe", "calibration"))
    strangers = [n for name, n in probe.items() if name.startswith("stranger_")]
    recounted = {
        "detection_images": images,
        "detection_faces": {split: sum(faces[split]) for split in ("train", "val")},
        "recognition_identities": recognition[1],
        "recognition_images": recognition[0],
        "verification_identities": len(set(bin_people(root / "recognition_train_data/example_val.bin"))),
        "verification_pairs": len(vset),
        "verification_same_pairs": sum(vset.issame),
        "gallery_people": len(gallery),
        "gallery_photos": sum(gallery.values()),
        "probe_known_photos": sum(n for name, n in probe.items() if name.startswith("person_")),
        "probe_unknown_people": len(strangers),
        "probe_unknown_photos": sum(strangers),
        "calibration_people": len(calibration),
        "calibration_photos": sum(calibration.values()),
    }
    reported = summary.as_dict()
    del reported["detection_faces"]["test"]
    assert reported == recounted
    del recounted["detection_faces"]  # depends on where the generator could place faces: recounted above instead
    assert recounted == {
        "detection_images": {"train": 80, "val": 20, "test": 10},
        "recognition_identities": 40,
        "recognition_images": 600,
        "verification_identities": 10,
        "verification_pairs": 300,
        "verification_same_pairs": 150,
        "gallery_people": 10,
        "gallery_photos": 30,
        "probe_known_photos": 30,
        "probe_unknown_people": 8,
        "probe_unknown_photos": 16,
        "calibration_people": 10,
        "calibration_photos": 60,
    }


@pytest.mark.parametrize("split", ["train", "val"])
def test_detection_labels(example, split):
    root = example[0] / "detection_train_data" / split
    lines = (root / "label.txt").read_text().splitlines()
    assert all(len(line.split()) == 20 for line in lines if not line.startswith("#"))
    style, images = read_labels(root / "label.txt")
    assert style == "retinaface"
    for im in images:
        height, width = read_image(root / "images" / im.path).shape[:2]
        assert 320 <= width <= 640 and 240 <= height <= 480
        assert im.landmark_mask.all() and ((im.scores > 0) & (im.scores <= 1)).all()
        x1, y1, x2, y2 = im.boxes.T
        assert ((x1 >= 0) & (y1 >= 0) & (x2 <= width) & (y2 <= height) & (x2 - x1 > 8) & (y2 - y1 > 8)).all()
        assert (im.landmarks >= im.boxes[:, None, :2]).all() and (im.landmarks <= im.boxes[:, None, 2:]).all()
        assert (im.landmarks >= 0).all() and (im.landmarks <= [width - 1, height - 1]).all()


def test_test_split_lists_paths_only(example):
    root = example[0] / "detection_train_data/test"
    lines = (root / "label.txt").read_text().splitlines()
    assert len(lines) == 10 and all(line.startswith("# ") for line in lines)
    assert all((root / "images" / line[2:]).is_file() for line in lines)


def test_eyes_are_drawn_at_the_labelled_points(example):
    """At every labelled eye centre (faces with eyes >= 16 px apart) the image is darker than the cheek below it,
    halfway to the mouth corner on the same side."""
    root = example[0] / "detection_train_data/train"
    _, images = read_labels(root / "label.txt")
    margins = []
    for im in images:
        grey = read_image(root / "images" / im.path).mean(2)
        for points in im.landmarks:
            if np.linalg.norm(points[1] - points[0]) < 16:
                continue
            for eye, mouth in ((0, 3), (1, 4)):
                margins.append(_patch(grey, (points[eye] + points[mouth]) / 2) - _patch(grey, points[eye]))
    assert len(margins) > 100
    assert min(margins) > 5 and np.median(margins) > 40  # seeds 0, 1, 2, 5: min 15-22, median about 88


def _patch(grey: np.ndarray, point: np.ndarray) -> float:
    """Mean of the 3x3 pixels around a point."""
    x, y = np.round(point).astype(int)
    return float(grey[y - 1 : y + 2, x - 1 : x + 2].mean())


def test_recognition_set_reads_back(example):
    root = example[0] / "recognition_train_data"
    with closing(open_recognition_set(root)) as rec:
        assert rec.convention == "insightface" and rec.num_classes == 40 and len(rec) == 600
        assert all(b - a == 15 for a, b in rec.identity_ranges.values())
        for index in range(0, 600, 37):
            label, data = rec[index]
            assert label == index // 15 and decode_image(data, "crop").shape == (112, 112, 3)
    assert read_property(root / "property") == Property(40, 112, 112)
    style, entries = read_lst(root / "cele.lst")
    assert style == "face2rec2" and len(entries) == 600
    assert [e.path for e in entries[15:17]] == ["id0001/0.jpg", "id0001/1.jpg"]
    assert all(int(e.path[2:6]) == e.label for e in entries)


def test_scene_faces_realign_to_their_identity(example, truth, canonical):
    """Gallery and probe faces of known people, aligned from their labelled landmarks, correlate with their own
    identity's neutral crop clearly more than with the other gallery people's."""
    people = sorted(name for name in canonical if name.startswith("person_"))
    own, others, best = [], [], []
    for path, entry in truth["images"].items():
        if not entry["in_gallery"]:
            continue
        crop = align_face(read_image(example[0] / path), np.array(entry["landmarks"][0], np.float32))
        scores = dict(zip(people, np.stack([canonical[p] for p in people]) @ _unit(crop)))
        own.append(scores.pop(entry["identity"]))
        others.extend(scores.values())
        best.append(own[-1] > max(scores.values()))
    assert len(own) == 60  # 10 gallery people x (3 gallery + 3 probe photos)
    assert np.mean(own) > 0.7 and min(own) > 0.4  # seeds 0, 1, 2, 5: mean 0.79-0.84, min 0.51-0.67
    assert np.mean(own) - np.mean(others) > 0.25  # 0.31-0.37
    assert np.mean(best) >= 0.85  # 0.94-1.0


def test_verification_pairs_are_held_out_identities(example, truth, canonical):
    root = example[0] / "recognition_train_data"
    vset = load_bin(root / "example_val.bin")
    pairs = truth["verification_pairs"]
    assert len(pairs) == len(vset) and [a == b for a, b in pairs] == vset.issame
    _, entries = read_lst(root / "cele.lst")
    trained = {e.path.split("/")[0] for e in entries}
    held_out = {name for pair in pairs for name in pair}
    assert len(held_out) == 10 and all(name.startswith("heldout_") for name in held_out) and not held_out & trained
    assert bin_people(root / "example_val.bin") == sorted(held_out)  # the sidecar lets training check for overlap
    assert {p.name for p in (example[0] / "calibration").iterdir()} == held_out  # their photos calibrate open set
    # and the pixels agree: each .bin image looks most like one of the held-out people, and mostly the named one
    names = sorted(trained | held_out)
    bank = np.stack([canonical[n] for n in names])
    crops = [decode_image(data, "bin image") for data in vset.images]
    assert all(c.shape == (112, 112, 3) for c in crops)
    nearest = [names[i] for i in (np.stack([_unit(c) for c in crops]) @ bank.T).argmax(1)]
    assert np.mean([n in held_out for n in nearest]) >= 0.85  # seeds 0, 1, 2, 5: 0.89-1.0
    assert np.mean([n == name for n, name in zip(nearest, (name for pair in pairs for name in pair))]) >= 0.85


def test_truth_matches_gallery_and_probe_folders(example, truth):
    root = example[0]
    assert truth["seed"] == SEED
    on_disk = {
        p.relative_to(root).as_posix()
        for folder in ("gallery", "probe", "calibration")
        for p in (root / folder).rglob("*.jpg")
    }
    assert set(truth["images"]) == on_disk
    gallery_people = {p.name for p in (root / "gallery").iterdir()}
    for path, entry in truth["images"].items():
        assert entry["identity"] == Path(path).parent.name
        assert entry["in_gallery"] == (entry["identity"] in gallery_people)
        height, width = read_image(root / path).shape[:2]
        (box,), (points,) = np.array(entry["boxes"]), np.array(entry["landmarks"])
        assert points.shape == (5, 2) and box[2] - box[0] >= 40
        assert (box >= 0).all() and box[2] <= width and box[3] <= height
        assert (points >= box[:2]).all() and (points <= box[2:]).all()
    assert {p.name for p in (root / "probe").iterdir()} == gallery_people | {f"stranger_{i:02d}" for i in range(8)}
