"""`facekit inspect` on every real layout, and on broken copies."""

from __future__ import annotations

import json
import shutil

import pytest


def inspect_json(cli, path):
    result = cli("inspect", path, "--json")
    return result.exit_code, json.loads(result.output)


def test_recognition_train_data(cli, shared_data):
    code, report = inspect_json(cli, shared_data / "layouts/recognition_train_data")
    assert code == 0 and report["ok"]
    summary = report["summary"]
    assert report["layout"] == "recognition_train_data"
    assert summary["images"] == 300 and summary["identities"] == 30
    assert summary["image_sizes"] == {"112x112": 300}
    assert summary["verification_sets"]["orl_val.bin"]["pairs"] == 400


def test_recognition_human_output(cli, shared_data):
    result = cli("inspect", shared_data / "layouts/recognition_train_data")
    assert result.exit_code == 0
    assert "images:                 300" in result.output and "identities:             30" in result.output
    assert "112x112 300" in result.output and "problems: none" in result.output


@pytest.mark.parametrize("sub", ["face2rec2", "scalar_label", "plain"])
def test_mxnet_fixtures(cli, shared_data, sub):
    code, report = inspect_json(cli, shared_data / "fixtures/mxnet_recordio" / sub)
    assert code == 0
    assert report["summary"]["images"] == 30 and report["summary"]["identities"] == 5
    assert report["summary"]["convention"] == ("plain" if sub == "plain" else "insightface")


def test_detection_train_data(cli, shared_data):
    code, report = inspect_json(cli, shared_data / "layouts/detection_train_data")
    assert code == 0 and report["layout"] == "detection_train_data"
    s = report["summary"]
    assert (s["train"]["images"], s["train"]["faces"], s["train"]["landmark_coverage"]) == (12, 55, 1.0)
    assert (s["val"]["images"], s["val"]["faces"]) == (3, 6)
    assert (s["test"]["images"], s["test"]["faces"]) == (3, 0)


def test_detection_single_split(cli, shared_data):
    code, report = inspect_json(cli, shared_data / "layouts/detection_train_data/val")
    assert code == 0 and report["summary"]["val"]["faces"] == 6


def test_identity_folders_and_bin(cli, shared_data):
    code, report = inspect_json(cli, shared_data / "faces/orl")
    assert code == 0 and report["layout"] == "identity_folders"
    assert report["summary"]["identities"] == 40 and report["summary"]["image_sizes"] == {"92x112": 400}
    code, report = inspect_json(cli, shared_data / "layouts/recognition_train_data/orl_val.bin")
    assert code == 0 and report["summary"] == {
        "pairs": 400,
        "same": 200,
        "different": 200,
        "image_sizes": {"112x112": 800},
    }


def test_broken_detection_copy_reports_every_problem(cli, shared_data, tmp_path):
    root = tmp_path / "detection_train_data"
    shutil.copytree(shared_data / "layouts/detection_train_data", root)
    (root / "train/images/1--pseudo/t1.jpg").unlink()
    (root / "train/images/0--dlib/2008_001009.jpg").write_bytes(b"\xff\xd8 truncated")
    (root / "val/label.txt").write_text("# 1--pseudo/kit_with_rose.jpg\n1 2 3\n")
    code, report = inspect_json(cli, root)
    assert code == 1 and not report["ok"]
    problems = "\n".join(report["problems"])
    assert "train/label.txt: 1 of 12 images missing" in problems
    assert "2008_001009.jpg: cannot decode image" in problems
    assert "val/label.txt:2: expected 4 or 20 numbers" in problems
    assert report["summary"]["test"]["images"] == 3


def test_broken_recognition_copy(cli, shared_data, tmp_path):
    root = tmp_path / "rec"
    shutil.copytree(shared_data / "layouts/recognition_train_data", root)
    (root / "property").write_text("31,112,112\n")
    code, report = inspect_json(cli, root)
    assert code == 1
    assert any("says 31 classes, the records hold labels 0..29" in p for p in report["problems"])
    (root / "property").unlink()
    code, report = inspect_json(cli, root)
    assert code == 1 and any("no property file" in p for p in report["problems"])


def test_truncated_rec_is_a_problem_not_a_crash(cli, shared_data, tmp_path):
    root = tmp_path / "rec"
    shutil.copytree(shared_data / "layouts/recognition_train_data", root)
    data = (root / "cele.rec").read_bytes()
    (root / "cele.rec").write_bytes(data[: len(data) // 2])
    code, report = inspect_json(cli, root)
    assert code == 1
    assert "past the end of cele.rec" in report["problems"][0]


def test_unknown_layout(cli, tmp_path):
    (tmp_path / "x.txt").write_text("hello")
    result = cli("inspect", tmp_path)
    assert result.exit_code == 1 and "not a layout facekit knows" in result.output
