"""build-db, recognize, db and evaluate-gallery from the command line, on real photos."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

KNN = "faces/face_recognition_examples/examples/knn_examples"


def records(text: str) -> dict[str, dict]:
    return {Path(r["image"]).name: r for r in map(json.loads, text.splitlines())}


@pytest.mark.slow  # the session's ORL recognizer: 5 minutes of training
def test_knn_examples_end_to_end(cli, shared_data, orl_recognizer, scrfd, tmp_path):
    """The gallery is built with the PyTorch model directory and searched with its ONNX export: one fingerprint."""
    db = tmp_path / "db"
    built = cli("build-db", shared_data / KNN / "train", scrfd, orl_recognizer, f"{db}/")
    assert built.exit_code == 0, built.output
    assert "9 faces of 5 people" in built.output
    out = tmp_path / "out.jsonl"
    result = cli("recognize", shared_data / KNN / "test", db, scrfd, orl_recognizer / "recognizer.onnx", "--out", out,
                 "--save-annotated", tmp_path / "annotated")  # fmt: skip
    assert result.exit_code == 0, result.output
    threshold = json.loads((orl_recognizer / "metrics.json").read_text())["final"]["threshold"]
    assert f"threshold {threshold:.4f} (calibrated on orl_val.bin, rule best-accuracy)" in result.output
    found = records(out.read_text())
    assert sorted(found) == sorted(p.name for p in (shared_data / KNN / "test").iterdir())
    for name, record in found.items():
        # obama_and_biden.jpg also shows a girl's face in its corner: SCRFD finds it (3 faces)
        expected = {"obama_and_biden.jpg": 3, "kit_with_rose.jpg": 2}.get(name, 1)
        assert len(record["faces"]) == expected, name
        for face in record["faces"]:
            x1, y1, x2, y2 = face["box"]
            assert 0 <= x1 < x2 <= record["width"] and 0 <= y1 < y2 <= record["height"]
            assert len(face["landmarks"]) == 5 and len(face["candidates"]) == 5
            assert face["similarity"] == face["candidates"][0]["similarity"]
            assert face["identity"] in (None, face["candidates"][0]["identity"])
            assert (face["identity"] is None) == (face["similarity"] < threshold)
    assert len(list((tmp_path / "annotated").iterdir())) == 5


def blank(path: Path) -> None:
    """A photo of a bare wall: a grey gradient, no face."""
    import cv2
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.tile(np.linspace(60, 200, 320, dtype=np.uint8)[:, None, None], (1, 240, 3)))


@pytest.fixture
def knn_csv(shared_data, tmp_path) -> Path:
    """The knn train photos of alex_lacamoire, biden and obama as a CSV of path,identity."""
    lines = ["path,identity"] + [
        f"{p},{p.parent.name}"
        for person in ("alex_lacamoire", "biden", "obama")
        for p in sorted((shared_data / KNN / "train" / person).iterdir())
    ]
    path = tmp_path / "people.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_append_then_search_finds_the_new_people(cli, shared_data, random_recognizer, scrfd, knn_csv, tmp_path):
    import h5py

    db = tmp_path / "people.h5"
    assert cli("build-db", knn_csv, scrfd, random_recognizer, db).exit_code == 0
    with h5py.File(db, "r") as f:  # plain h5py, no facekit
        assert sorted(f["identities"].asstr()[()]) == ["alex_lacamoire", "biden", "obama"]
    more = tmp_path / "more"
    for person in ("kit_harington", "rose_leslie"):
        shutil.copytree(shared_data / KNN / "train" / person, more / person)
    result = cli("build-db", more, scrfd, random_recognizer, db, "--append")
    assert result.exit_code == 0, result.output
    listed = cli("db", "list", db).output.splitlines()
    assert listed == ["alex_lacamoire\t1", "biden\t2", "obama\t2", "kit_harington\t2", "rose_leslie\t2"]
    again = cli("build-db", more, scrfd, random_recognizer, db, "--append")
    assert "note: 4 photos were in the gallery already" in again.output
    assert cli("db", "list", db).output.splitlines() == listed
    photo = next((more / "rose_leslie").iterdir())
    result = cli("recognize", photo, db, scrfd, random_recognizer, "--index", "flat")
    (face,) = json.loads(result.stdout)["faces"]
    assert face["identity"] == "rose_leslie" and face["similarity"] > 0.999
    assert len(list(tmp_path.glob("people.h5.flat.*.faiss"))) == 1


@pytest.mark.slow  # quick: test_append_then_search_finds_the_new_people and the reliability gallery tests
def test_outputs_agree_across_match_index_and_format(cli, shared_data, random_recognizer, scrfd, knn_csv, tmp_path):
    db = tmp_path / "g.h5"
    assert cli("build-db", knn_csv, scrfd, random_recognizer, db, "--flip").exit_code == 0
    photos = tmp_path / "photos.txt"
    photos.write_text(f"{shared_data / KNN / 'test/obama_and_biden.jpg'}\n{shared_data / KNN / 'test/obama1.jpg'}\n")
    runs = {
        options: records(cli("recognize", photos, db, scrfd, random_recognizer, "--threshold", 0.5, *options).stdout)
        for options in [(), ("--index", "flat"), ("--index", "ivf"), ("--match", "template")]
    }
    exact = runs[()]
    assert runs[("--index", "flat")] == exact
    tops = {name: [f["identity"] for f in r["faces"]] for name, r in exact.items()}
    assert {name: [f["identity"] for f in r["faces"]] for name, r in runs[("--index", "ivf")].items()} == tops
    counts = [len(r["faces"]) for r in exact.values()]
    assert [len(r["faces"]) for r in runs[("--match", "template")].values()] == counts
    csv_out = tmp_path / "out.csv"
    assert cli("recognize", photos, db, scrfd, random_recognizer, "--threshold", 0.5, "--format", "csv", "--out",
               csv_out).exit_code == 0  # fmt: skip
    rows = csv_out.read_text().splitlines()
    assert rows[0] == "image,face,x1,y1,x2,y2,score,identity,similarity" and len(rows) == 1 + sum(counts)
    first = exact["obama_and_biden.jpg"]["faces"][0]
    assert rows[1].endswith(f",{first['identity'] or 'unknown'},{first['similarity']}")


def test_bad_photos_are_skipped_and_reported(cli, shared_data, random_recognizer, scrfd, tmp_path):
    people = tmp_path / "people"
    shutil.copytree(shared_data / KNN / "train" / "obama", people / "obama")
    (people / "obama" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    blank(people / "wall" / "wall.png")
    (people / "nobody").mkdir()
    report = tmp_path / "report.json"
    result = cli("build-db", people, scrfd, random_recognizer, tmp_path / "g.h5", "--report", report)
    assert result.exit_code == 0, result.output
    assert "warning: unreadable photos, skipped (1):" in result.output and "broken.jpg: cannot decode" in result.output
    assert "warning: photos without a face, skipped (1):" in result.output
    assert "warning: person folders without photos (1):" in result.output
    facts = json.loads(report.read_text())
    assert facts["faces_per_identity"] == {"obama": 2} and facts["empty_folders"] == ["nobody"]
    assert cli("db", "list", tmp_path / "g.h5").output == "obama\t2\n"


def test_no_face_at_all_writes_nothing(cli, shared_data, random_recognizer, scrfd, tmp_path):
    people = tmp_path / "people"
    blank(people / "wall" / "wall.png")
    result = cli("build-db", people, scrfd, random_recognizer, tmp_path / "g.h5")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == f"Error: {people}: no face found in 1 photos; no gallery written"
    assert not (tmp_path / "g.h5").exists()


@pytest.mark.slow  # the session's ORL recognizer: 5 minutes of training
def test_refuses_a_gallery_of_another_recognizer(cli, shared_data, random_recognizer, orl_recognizer, scrfd, tmp_path):
    import torch

    from facekit.recognition.backbones import create_backbone
    from facekit.recognition.config import RecognizerConfig
    from facekit.recognition.modelfile import save_recognizer

    db = tmp_path / "g.h5"
    assert cli("build-db", shared_data / KNN / "train", scrfd, random_recognizer, db).exit_code == 0
    before = db.read_bytes()
    torch.manual_seed(1)
    same_size = tmp_path / "other"
    save_recognizer(same_size, create_backbone("mobilefacenet", embedding_size=32), RecognizerConfig(embedding_size=32,
                    backbone="mobilefacenet"))  # fmt: skip
    for model, message in [
        (orl_recognizer, "gallery holds 32-d embeddings, recognizer facekit mobilefacenet (PyTorch) makes 512-d ones"),
        (same_size, "gallery was built by recognizer facekit mobilefacenet (PyTorch) (sha256 "),
    ]:
        for args in (["recognize", shared_data / KNN / "test", db, scrfd, model],
                     ["build-db", shared_data / KNN / "train", scrfd, model, db, "--append"]):  # fmt: skip
            result = cli(*args)
            assert result.exit_code == 1 and result.output.startswith(f"Error: {db}: {message}"), result.output
    assert db.read_bytes() == before


def test_db_info_remove_and_errors(cli, shared_data, random_recognizer, scrfd, tmp_path):
    db = tmp_path / "g.h5"
    assert cli("build-db", shared_data / KNN / "train", scrfd, random_recognizer, db).exit_code == 0
    info = json.loads(cli("db", "info", db, "--json").output)
    assert info["faces"] == 9 and info["identities"] == 5 and info["embedding_dim"] == 32
    assert info["detector"] == "ONNX scrfd_500m_bnkps.onnx" and len(info["recognizer_fingerprint"]) == 64
    inspected = json.loads(cli("inspect", db, "--json").output)
    assert inspected["layout"] == "gallery" and inspected["ok"] and inspected["summary"]["faces"] == 9
    result = cli("db", "remove", db, "obama", "biden")
    assert result.exit_code == 0 and "removed 4 faces of 2 people, 5 left" in result.output
    assert [line.split("\t")[0] for line in cli("db", "list", db).output.splitlines()] == [
        "alex_lacamoire", "kit_harington", "rose_leslie"]  # fmt: skip
    result = cli("db", "remove", db, "nobody")
    assert (
        result.exit_code == 1
        and result.output == f"Error: {db}: no identity nobody in the gallery (see facekit db list)\n"
    )
    (tmp_path / "x.h5").write_text("no")
    result = cli("recognize", shared_data / KNN / "test", tmp_path / "x.h5", scrfd, random_recognizer)
    assert result.exit_code == 1 and "x.h5: not an HDF5 file" in result.output


@pytest.mark.parametrize(
    ("script", "usage"),
    [
        ("run_generate_data_base.sh", "data_path detect_model_path recognize_model_path db_output_path"),
        ("run_face_recognition.sh", "data_path db_path detect_model_path recognize_model_path"),
    ],
)
def test_bin_scripts_usage(script, usage):
    bin_dir = Path(__file__).resolve().parents[1] / "bin"
    result = subprocess.run(["bash", str(bin_dir / script), "a", "b", "c"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith(f"usage: {script} {usage}")


def test_bin_scripts_run_the_workflow(shared_data, random_recognizer, scrfd, tmp_path):
    bin_dir = Path(__file__).resolve().parents[1] / "bin"
    env = {**os.environ, "FACEKIT": f"{sys.executable} -m facekit", "FACEKIT_RECOGNIZE_TOP_K": "2"}
    db = tmp_path / "db"
    build = [str(bin_dir / "run_generate_data_base.sh"), shared_data / KNN / "train", scrfd, random_recognizer, db]
    result = subprocess.run(["bash", *map(str, build), "--flip"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    run = [str(bin_dir / "run_face_recognition.sh"), shared_data / KNN / "test", db, scrfd, random_recognizer]
    result = subprocess.run(["bash", *map(str, run), "--threshold", "0.9"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    found = records(result.stdout)
    assert len(found) == 5 and all(len(f["candidates"]) == 2 for r in found.values() for f in r["faces"])


def split(cli, people: Path, out: Path, *args: object) -> dict:
    result = cli("split-people", people, out, *args)
    assert result.exit_code == 0, result.output
    return json.loads((out / "split.json").read_text())["people"]


def assert_honest(metrics: dict, people: dict, methods: tuple[str, ...]) -> None:
    """The metrics name the people of each role as split-people cut them, no person in two roles, and every method's
    threshold calibrated on the calibration people alone."""
    assert metrics["people"] == people
    roles = [set(names) for names in people.values()]
    assert sum(map(len, roles)) == len(set().union(*roles))
    assert sorted(metrics["results"]) == sorted(methods) and sorted(metrics["threshold_source"]) == sorted(methods)
    for name, source in metrics["threshold_source"].items():
        assert source["people"] == people["calibration"] and source["rule"] == "best-accuracy"
        assert source["embedder"] == ("eigenfaces" if name == "eigenfaces" else "facekit mobilefacenet (PyTorch)")
        assert metrics["results"][name]["threshold"] == round(source["threshold"], 5)


@pytest.mark.slow
def test_orl_open_set_with_unseen_people(cli, shared_data, orl_recognizer, scrfd, tmp_path):
    """ORL people the recognizer (trained on s1-s30) never saw: s31-s33 calibrate both thresholds, s34-s38 are
    enrolled with their first 3 raw photos and probed with the other 7, s39-s40 are unknowns. Eigenfaces is fitted on
    the recognizer's training crops and calibrated by the same rule on the same crops."""
    people = split(cli, shared_data / "faces/orl", tmp_path / "orl", "--skip", 30, "--calibration", 3, "--gallery", 5,
                   "--unknown", 2)  # fmt: skip
    out, orl, fit = tmp_path / "eval", tmp_path / "orl", shared_data / "layouts/recognition_train_data"
    result = cli("evaluate-gallery", orl / "gallery", orl / "probe", scrfd, orl_recognizer, "--calibration",
                 orl / "calibration", "--baseline-fit", fit, "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output and "note" not in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["gallery_faces"] == 15 and metrics["probe_faces"] == 35 + 20
    assert_honest(metrics, people, ("facekit", "eigenfaces"))
    assert metrics["threshold_source"]["facekit"]["pairs"] == 435  # every pair of the 30 calibration faces
    ours, eigen = metrics["results"]["facekit"], metrics["results"]["eigenfaces"]
    print(f"\nrank-1 facekit {ours['rank1']} vs eigenfaces {eigen['rank1']}; TAR@FAR1e-2 "
          f"{ours['tar_at_far']['0.01']} vs {eigen['tar_at_far']['0.01']}; unknowns rejected "
          f"{ours['rejection_rate']} vs {eigen['rejection_rate']}")  # fmt: skip
    # 5 people with 3 photos each is an easy closed set: both found every probe in our runs. The open-set figures
    # hang on the training run and the rule: a run of the default recipe ranked perfectly (TAR@FAR 1e-2 1.00 vs
    # eigenfaces' 0.94) but its best-accuracy threshold from 3 people rejected no unknown (eigenfaces: 0.55; --far
    # 0.01 on the same people: 0.95). Asserted is only what does not depend on one run.
    assert ours["rank1"] >= 0.9 and eigen["rank1"] >= 0.9
    assert None not in (ours["tar_at_far"]["0.01"], eigen["tar_at_far"]["0.01"])
    for name in ("cmc.png", "roc.png"):
        assert (out / name).stat().st_size > 10_000


@pytest.mark.slow
def test_celeba_split_of_unseen_people(cli, shared_data, random_recognizer, scrfd, tmp_path):
    """The fixed open-set split of celeba_subset's 50 evaluation people (7450..7499 in natural order): 20 calibrate,
    20 are enrolled with 3 photos each (their others are probes), 10 are unknowns. A random recognizer: this checks
    the protocol, not accuracy (the README's figures come from a recognizer trained on 7201..7449)."""
    people = split(cli, shared_data / "faces/celeba_subset", tmp_path / "split", "--skip", 249)
    names = lambda first, last: [str(i) for i in range(first, last + 1)]  # noqa: E731
    assert people == {"calibration": names(7450, 7469), "gallery": names(7470, 7489), "unknown": names(7490, 7499)}
    out, parts, fit = tmp_path / "eval", tmp_path / "split", shared_data / "layouts/recognition_train_data"
    result = cli("evaluate-gallery", parts / "gallery", parts / "probe", scrfd, random_recognizer, "--calibration",
                 parts / "calibration", "--baseline-fit", fit, "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "calibration people are also" not in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert_honest(metrics, people, ("facekit", "eigenfaces"))
    calibration = metrics["threshold_source"]["facekit"]
    assert calibration["source"] == str(parts / "calibration")
    assert calibration["detector"] == "ONNX scrfd_500m_bnkps.onnx"
    for r in metrics["results"].values():
        assert r["identities"] == 20 and r["unknown_probes"] >= 140 and r["tar_at_far"]["0.01"] is not None
        assert r["known_probes"] + r["unknown_probes"] == metrics["probe_faces"]


@pytest.fixture
def small_split(cli, shared_data, tmp_path) -> Path:
    """ORL s34-s36 raw: s34-s35 enrolled with 2 photos and probed with 1, s36 an unknown (2 photos)."""
    root = tmp_path / "people"
    for person in ("s34", "s35", "s36"):
        (root / person).mkdir(parents=True)
        for n in (1, 2, 3):
            (root / person / f"{n}.pgm").symlink_to(shared_data / f"faces/orl/{person}/{n}.pgm")
    split(cli, root, tmp_path / "split", "--calibration", 0, "--gallery", 2, "--unknown", 1, "--gallery-photos", 2)
    return tmp_path / "split"


@pytest.mark.slow
def test_evaluate_gallery_says_where_each_threshold_comes_from(cli, shared_data, random_recognizer, scrfd,
                                                                 small_split, tmp_path):  # fmt: skip
    model = tmp_path / "model"
    shutil.copytree(random_recognizer, model)
    fit = ["--baseline-fit", shared_data / "layouts/recognition_train_data"]
    run = lambda *args: cli("evaluate-gallery", small_split / "gallery", small_split / "probe", scrfd, model, *args)  # noqa: E731
    result = run(*fit)
    assert result.exit_code == 1 and result.output == (
        "Error: eigenfaces needs a calibration set and facekit mobilefacenet (PyTorch) records none: give "
        "--calibration\n"
    )
    sources = json.loads(run("--threshold", 0.5).stdout)["threshold_source"]
    assert sources == {"facekit": {"flag": 0.5}}
    assert json.loads(run().stdout)["threshold_source"] == {"facekit": {"default": 0.3}}
    calibration = tmp_path / "s31-s33"
    calibration.mkdir()
    for person in ("s31", "s32", "s33"):
        (calibration / person).symlink_to(shared_data / "faces/orl_aligned_112" / person)
    recorded = json.loads(cli("calibrate", model, calibration, "--far", 0.05, "--write", "--json").stdout)
    result = run(*fit)  # facekit keeps its threshold; eigenfaces is calibrated by its rule on its (aligned) set
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["threshold_source"]["facekit"] == recorded
    eigen = metrics["threshold_source"]["eigenfaces"]
    assert (eigen["rule"], eigen["source"], eigen["pairs"], eigen["detector"]) == ("far=0.05", str(calibration), 435,
                                                                                   None)  # fmt: skip
    assert metrics["people"] == {"calibration": ["s31", "s32", "s33"], "gallery": ["s34", "s35"], "unknown": ["s36"]}
    result = run("--calibration", small_split / "gallery")  # calibrated on the gallery people: dishonest
    assert result.exit_code == 0, result.output
    assert "warning: 2 calibration people are also gallery or probe people (s34, s35)" in result.output
    for args in (["--calibration", calibration, "--threshold", 0.4], ["--far", 0.1], ["--calibration", calibration,
                 "--far", 1.0]):  # fmt: skip
        assert run(*args).exit_code == 2
