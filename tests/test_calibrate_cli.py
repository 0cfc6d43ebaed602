"""facekit calibrate (and --write) and split-people from the command line, on real faces."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

ORL_ALIGNED = "faces/orl_aligned_112"
ORL_VAL = "layouts/recognition_train_data/orl_val.bin"
KNN = "faces/face_recognition_examples/examples/knn_examples"


def link_people(shared_data: Path, root: Path, people: list[str], data: str = ORL_ALIGNED) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for person in people:
        (root / person).symlink_to(shared_data / data / person)
    return root


@pytest.fixture
def people3(shared_data, tmp_path) -> Path:
    """Identity folders of the aligned ORL crops of s31-s33 (30 crops: 135 same, 300 different pairs)."""
    return link_people(shared_data, tmp_path / "s31-s33", ["s31", "s32", "s33"])


@pytest.fixture(scope="module")
def exported(random_recognizer, tmp_path_factory) -> Path:
    """random_recognizer with its recognizer.onnx, as train-recognize writes it."""
    from facekit.fileio import sha256_file
    from facekit.recognition.export import ONNX_FILE, export_arcface_onnx
    from facekit.runtime.recognizer import TorchRecognizer

    out = tmp_path_factory.mktemp("exported") / "model"
    shutil.copytree(random_recognizer, out)
    model = TorchRecognizer(out)
    export_arcface_onnx(model.model, model.config, out / ONNX_FILE, fingerprint=sha256_file(out / "model.pt"))
    return out


def onnx_metadata(path: Path) -> dict[str, str]:
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


@pytest.mark.slow
def test_calibrate_on_a_bin_and_on_identity_folders(cli, shared_data, random_recognizer, exported, people3):
    from facekit.runtime.recognizer import TorchRecognizer

    result = cli("calibrate", exported, shared_data / ORL_VAL, "--far", "0.01", "--json", "--backend", "onnx")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert (found["pairs"], found["same_pairs"], found["people"], found["rule"]) == (400, 200, None, "far=0.01")
    assert found["source"] == str(shared_data / ORL_VAL) and found["far"] <= 0.01 and found["detector"] is None
    assert found["embedder"] == "ONNX recognizer.onnx"

    result = cli("calibrate", random_recognizer, people3)
    assert result.exit_code == 0, result.output
    line = result.stdout.strip()
    assert line.startswith("threshold ") and line.endswith(
        f"on 435 pairs (135 same) of 3 people from {people3} (rule best-accuracy)"
    )
    # the rates it prints, measured again from scratch on every pair of the 30 crops
    from facekit.data.images import read_image

    paths = sorted(people3.glob("*/*.jpg"))
    embeddings = TorchRecognizer(random_recognizer).embed(np.stack([read_image(p) for p in paths]))
    sims = (embeddings @ embeddings.T)[np.triu_indices(len(paths), 1)]
    people = np.array([p.parent.name for p in paths])
    same = (people[:, None] == people[None, :])[np.triu_indices(len(paths), 1)]
    threshold = float(line.split()[1])
    tar, far = (sims[same] >= threshold).mean(), (sims[~same] >= threshold).mean()
    assert f"FAR {far:.3f}, TAR {tar:.3f}, balanced accuracy {(tar + 1 - far) / 2:.3f} on" in line
    # no threshold does better: the best balanced accuracy over every observed similarity
    best = max(((sims[same] >= t).mean() + 1 - (sims[~same] >= t).mean()) / 2 for t in sims)
    assert (tar + 1 - far) / 2 == pytest.approx(best)


def test_calibrate_on_raw_photos_detects_and_aligns_them(cli, shared_data, random_recognizer, scrfd, tmp_path):
    raw = link_people(shared_data, tmp_path / "raw", ["s31", "s32"], "faces/orl")
    result = cli("calibrate", random_recognizer, raw, "--detect", scrfd, "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert (found["pairs"], found["same_pairs"], found["people"]) == (190, 90, ["s31", "s32"])
    assert found["detector"] == "ONNX scrfd_500m_bnkps.onnx" and found["source"] == str(raw)


@pytest.mark.slow  # ~15 s; quick: test_write_on_bare_onnx_files_keeps_their_fingerprint
def test_write_keeps_galleries_of_the_model_working(cli, shared_data, exported, scrfd, people3, tmp_path):
    import yaml

    model = tmp_path / "model"
    shutil.copytree(exported, model)
    db = tmp_path / "g.h5"
    assert cli("build-db", shared_data / KNN / "train", scrfd, model, db).exit_code == 0
    fingerprint = json.loads(cli("db", "info", db, "--json").output)["recognizer_fingerprint"]
    for rule, label in ((["--far", "0.05"], "far=0.05"), ([], "best-accuracy")):  # twice: rewrite a rewritten one
        result = cli("calibrate", model, people3, "--write", *rule, "--json")
        assert result.exit_code == 0, result.output
        calibration = json.loads(result.stdout)
        assert calibration["rule"] == label and f"wrote threshold {calibration['threshold']:.4f} to" in result.output
        config = yaml.safe_load((model / "config.yaml").read_text())
        assert config["threshold"] == calibration["threshold"] and config["calibration"] == calibration
        meta = onnx_metadata(model / "recognizer.onnx")
        assert float(meta["facekit_threshold"]) == calibration["threshold"]
        assert json.loads(meta["facekit_calibration"]) == calibration
        assert meta["facekit_fingerprint"] == fingerprint
        for backend in ("torch", "onnx"):
            found = cli("recognize", shared_data / KNN / "test", db, scrfd, model, "--backend", backend)
            assert found.exit_code == 0, found.output
            assert f"threshold {calibration['threshold']:.4f} (calibrated on s31-s33, rule {label})" in found.output
    assert not list(model.glob(".*"))  # no temporary file left


def test_write_on_bare_onnx_files_keeps_their_fingerprint(cli, shared_data, exported, scrfd, people3, tmp_path):
    import onnx

    facekit_export = tmp_path / "exported.onnx"
    shutil.copy(exported / "recognizer.onnx", facekit_export)
    foreign = tmp_path / "foreign.onnx"  # an ONNX file with no facekit metadata, like insightface's
    graph = onnx.load(str(facekit_export))
    del graph.metadata_props[:]
    onnx.save(graph, str(foreign))
    for model in (facekit_export, foreign):
        db = tmp_path / f"{model.stem}.h5"
        assert cli("build-db", shared_data / KNN / "train", scrfd, model, db).exit_code == 0
        result = cli("calibrate", model, people3, "--write")
        assert result.exit_code == 0, result.output
        assert f"{float(onnx_metadata(model)['facekit_threshold']):.4f}" == result.stdout.split()[1]
        found = cli("recognize", shared_data / KNN / "test", db, scrfd, model)
        assert found.exit_code == 0 and "(calibrated on s31-s33, rule best-accuracy)" in found.output, found.output


def test_a_failed_write_leaves_every_file_as_it_was(cli, exported, people3, tmp_path, monkeypatch):
    import facekit.recognition.export

    model = tmp_path / "model"
    shutil.copytree(exported, model)
    before = {p.name: p.read_bytes() for p in model.iterdir()}

    def disk_full(*_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(facekit.recognition.export, "rewrite_metadata", disk_full)
    with pytest.raises(OSError, match="No space left"):
        cli("calibrate", model, people3, "--write")
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before


def write_bin(path: Path, crops: list, issame: list[bool]) -> Path:
    import cv2

    from facekit.data.verification import VerificationSet, write_bin

    images = [c if isinstance(c, bytes) else cv2.imencode(".jpg", c)[1].tobytes() for c in crops]
    write_bin(path, VerificationSet(images, issame))
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty folder", "{path}: no identity folders with images"),
        ("one person", "needs pairs of the same and of different people, got 45 same and 0 different pairs"),
        ("raw photos", "1.pgm: 92x112, not an aligned 112x112 crop (raw photos need a detector"),
        ("far too small", "FAR 0.001 cannot be measured on 300 different-person pairs (needs >= 1000)"),
        ("undecodable", "{path}: image 1: cannot decode image (4 bytes)"),
        ("wrong size", "{path}: crops of 100x100, the recognizer takes aligned 112x112 crops"),
        ("mixed sizes", "{path}: image 1 is 100x100, image 0 is 112x112; the crops of a verification set must share"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(cli, shared_data, exported, people3, tmp_path, case, message):
    model = tmp_path / "model"
    shutil.copytree(exported, model)
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    face = np.full((112, 112, 3), 128, np.uint8)
    args = []
    if case == "empty folder":
        path = tmp_path / "empty"
        path.mkdir()
    elif case == "one person":
        path = link_people(shared_data, tmp_path / "one", ["s31"])
    elif case == "raw photos":
        path = link_people(shared_data, tmp_path / "raw", ["s31", "s32"], "faces/orl")
    elif case == "far too small":
        path, args = people3, ["--far", "0.001"]
    elif case == "undecodable":
        path = write_bin(tmp_path / "x.bin", [face, b"junk", face, face], [True, False])
    elif case == "wrong size":
        path = write_bin(tmp_path / "x.bin", [face[:100, :100]] * 4, [True, False])
    else:
        path = write_bin(tmp_path / "x.bin", [face, face[:100, :100]], [True])
    result = cli("calibrate", model, path, "--write", *args)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("Error: "), result.output
    assert message.format(path=path) in result.output
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before


@pytest.mark.parametrize(
    "args", [["--far", "0"], ["--far", "1"], ["--far", "1.5"], ["--far", "0.1", "--best-accuracy"]]
)
def test_far_outside_the_open_unit_interval_is_a_usage_error(cli, random_recognizer, people3, args):
    result = cli("calibrate", random_recognizer, people3, *args)
    assert result.exit_code == 2 and ("--far" in result.output), result.output


def photos(root: Path, counts: dict[str, int]) -> Path:
    """Identity folders of empty .jpg files (split-people reads names, not pixels)."""
    for person, count in counts.items():
        (root / person).mkdir(parents=True)
        for n in range(1, count + 1):
            (root / person / f"{n}.jpg").write_bytes(b"")
    return root


def test_split_people_cuts_roles_in_natural_order(cli, tmp_path):
    people = photos(tmp_path / "people", {f"p{i}": 4 + i % 2 for i in range(1, 11)})
    out = tmp_path / "split"
    result = cli("split-people", people, out, "--skip", "2", "--calibration", "2", "--gallery", "3", "--unknown", "2",
                 "--gallery-photos", "3")  # fmt: skip
    assert result.exit_code == 0, result.output
    split = json.loads((out / "split.json").read_text())
    assert split["people"] == {"calibration": ["p3", "p4"], "gallery": ["p5", "p6", "p7"], "unknown": ["p8", "p9"]}
    assert sorted(p.name for p in (out / "calibration").iterdir()) == ["p3", "p4"]
    assert sorted(p.name for p in (out / "gallery" / "p5").iterdir()) == ["1.jpg", "2.jpg", "3.jpg"]
    assert sorted(p.name for p in (out / "probe" / "p5").iterdir()) == ["4.jpg", "5.jpg"]
    assert sorted(p.name for p in (out / "probe").iterdir()) == ["p5", "p6", "p7", "p8", "p9"]
    assert (out / "probe" / "p8" / "1.jpg").resolve() == (people / "p8" / "1.jpg").resolve()
    assert (out / "gallery" / "p6" / "1.jpg").is_symlink()
    assert split["photos"] == {"calibration": 9, "gallery": 9, "probe": 5 + 9}
    copied = tmp_path / "copied"
    assert cli("split-people", people, copied, "--copy", "--gallery", "1", "--calibration", "1",
               "--unknown", "0").exit_code == 0  # fmt: skip
    assert not (copied / "gallery" / "p2" / "1.jpg").is_symlink()
    for args, message in [
        ([out], f"Error: {out}: exists and is not an empty folder"),
        ([tmp_path / "new", "--skip", "5"], "10 people with photos, the split needs 55 (skip 5, calibration 20"),
    ]:
        result = cli("split-people", people, *args)
        assert result.exit_code == 1 and message in result.output, result.output
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".*"))
