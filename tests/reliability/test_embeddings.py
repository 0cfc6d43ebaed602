"""Embeddings that are not numbers, and JSON that is not JSON. A recognizer that makes NaN, infinite or zero-length
embeddings is refused where they are made, with one line naming it, before anything is stored or written; what
facekit writes as JSON or JSON Lines reads with a strict parser (no NaN, Infinity)."""

from __future__ import annotations

import ast
import hashlib
import json
import math
from pathlib import Path

import h5py
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from .helpers import KNN, OBAMA, PROJECT, clean_error, copy, temp_files

BROKEN = {  # the last nodes of a recognizer: "e" [N, 32] -> "embedding"
    # log(-|e| - 1): NaN for every face
    "nan": ([helper.make_node("Abs", ["e"], ["abs"]), helper.make_node("Neg", ["abs"], ["neg"]),
             helper.make_node("Sub", ["neg", "one"], ["below"]), helper.make_node("Log", ["below"], ["embedding"])],
            "NaN or infinite"),
    # e / 0: +-infinity
    "inf": ([helper.make_node("Div", ["e", "zero"], ["embedding"])], "NaN or infinite"),
    # e x 0: all zeros, no direction to compare
    "zero": ([helper.make_node("Mul", ["e", "zero"], ["embedding"])], "zero-length"),
}  # fmt: skip


def broken_recognizer(path: Path, case: str) -> Path:
    """A 32-d recognizer: channel means [N, 3] x a fixed [3, 32] matrix, then BROKEN[case]'s nodes."""
    weight = np.random.default_rng(0).normal(size=(3, 32)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input.1"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("MatMul", ["flat", "weight"], ["e"]),
         *BROKEN[case][0]],
        case,
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 32])],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(np.float32(1), "one"),
         numpy_helper.from_array(np.float32(0), "zero")],
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def strict(text: str) -> object:
    """json.loads that refuses NaN, Infinity and -Infinity (Python's json reads them; JSON has no such values)."""

    def refuse(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_build_db_refuses_a_recognizer_that_makes_no_numbers(cli, shared_data, scrfd, tmp_path, case):
    """build-db with a recognizer whose embeddings are NaN, infinite or all zeros (every face): one line naming the
    model and how many faces of the batch, exit 1; no gallery (it used to write an all-NaN gallery, exit 0), no
    --report, no temporary file."""
    model = broken_recognizer(tmp_path / f"{case}.onnx", case)
    db, report = tmp_path / "g.h5", tmp_path / "report.json"
    result = cli("build-db", shared_data / KNN / "train", scrfd, model, db, "--report", report)
    line = clean_error(result, 1)
    assert line == (f"Error: {model}: the recognizer made {BROKEN[case][1]} embeddings for 9 of a batch of 9 face "
                    "crops; the model is broken (damaged weights or a numeric overflow)")  # fmt: skip
    assert not db.exists() and not report.exists() and temp_files(tmp_path) == []


def test_recognize_refuses_nan_embeddings_of_probe_faces(cli, shared_data, scrfd, knn_gallery, tmp_path):
    """A gallery whose recognizer now makes NaN (the knn gallery, stamped with the broken model's fingerprint):
    recognize stops with one line instead of printing "similarity": NaN; no --out file is left."""
    model = broken_recognizer(tmp_path / "nan.onnx", "nan")
    db = copy(knn_gallery, tmp_path / "g.h5")
    db.chmod(0o644)
    with h5py.File(db, "r+") as f:
        f.attrs["recognizer_fingerprint"] = hashlib.sha256(model.read_bytes()).hexdigest()
    out = tmp_path / "out.jsonl"
    clean_error(cli("recognize", shared_data / KNN / "test", db, scrfd, model, "--out", out), 1,
                f"{model}: the recognizer made NaN or infinite embeddings for ")  # fmt: skip
    assert not out.exists() and temp_files(tmp_path) == []


def test_recognize_detect_and_db_info_write_strict_json(cli, shared_data, scrfd, random_recognizer, knn_gallery,
                                                        tmp_path):  # fmt: skip
    """recognize's and detect's JSON Lines, db info --json and build-db --report read with a parser that refuses
    NaN and Infinity, and hold finite numbers."""
    out = tmp_path / "out.jsonl"
    result = cli("recognize", shared_data / KNN / "test", knn_gallery, scrfd, random_recognizer, "--out", out)
    assert result.exit_code == 0, result.output
    records = [strict(line) for line in out.read_text().splitlines()]
    faces = [face for record in records for face in record["faces"]]
    assert len(records) == 5 and faces
    assert all(math.isfinite(face["similarity"]) and -1 <= face["similarity"] <= 1 for face in faces)
    result = cli("detect", shared_data / OBAMA, "--model", scrfd)
    assert result.exit_code == 0 and len(strict(result.stdout)["faces"]) == 1, result.output
    assert strict(cli("db", "info", knn_gallery, "--json").stdout)["faces"] == 9
    report = tmp_path / "report.json"
    assert cli("build-db", shared_data / KNN / "train", scrfd, random_recognizer, tmp_path / "g.h5", "--report",
               report).exit_code == 0  # fmt: skip
    assert strict(report.read_text())["photos"] == 9


def test_strict_json_writes_null_for_values_that_are_not_numbers():
    from facekit import strict_json

    value = {"loss": math.nan, "ap": [math.inf, 0.5, (-math.inf, 1)], "name": "NaN", "n": 3, "x": np.float64("nan")}
    text = strict_json.dumps(value)
    assert strict(text) == {"loss": None, "ap": [None, 0.5, [None, 1]], "name": "NaN", "n": 3, "x": None}


# JSON facekit keeps inside a PyTorch checkpoint (read back only by its own json.loads, to resume), and a message
CHECKPOINT_STRINGS = {
    ("facekit/training.py", "json.dumps(np.random.get_state()[1].tolist())"),
    ("facekit/training.py", "json.dumps(random.getstate()[1])"),
    ("facekit/recognition/train.py", "json.dumps(self.history)"),
    ("facekit/recognition/train.py", "json.dumps(self.calibration.as_dict() if self.calibration else None)"),
    ("facekit/recognition/train.py", "json.dumps(asdict(self.s))"),
    ("facekit/detection/train.py", "json.dumps(self.history)"),
    ("facekit/detection/train.py", "json.dumps(asdict(self.s))"),
    ("facekit/runtime/prepare.py", "json.dumps(record)"),  # in the message about a bad alignment.json record
}


def test_every_json_writer_goes_through_strict_json():
    """No module of facekit calls json.dump / json.dumps itself (they write NaN and Infinity) but strict_json and
    the checkpoint strings above: a new writer of JSON has to choose."""
    found = set()
    for path in sorted((PROJECT / "facekit").rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            func = node.func if isinstance(node, ast.Call) else None
            if isinstance(func, ast.Attribute) and func.attr in ("dump", "dumps") and ast.unparse(func.value) == "json":
                found.add((path.relative_to(PROJECT).as_posix(), ast.get_source_segment(source, node)))
    strict_module = {item for item in found if item[0] == "facekit/strict_json.py"}
    assert len(strict_module) == 2
    assert found - strict_module == CHECKPOINT_STRINGS
