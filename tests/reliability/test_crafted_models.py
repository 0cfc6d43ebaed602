"""ONNX models that are not what they claim: outputs of the wrong shape (declared, or only when run), weights edited
after export while the metadata still claims the original model's fingerprint. Every command answers with one line
naming the file and what was expected (never an IndexError or ValueError traceback), and a gallery is never matched
against embeddings of other weights."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from .helpers import KNN, OBAMA, clean_error, copy, temp_files

STRIDES = (8, 16, 32)
SCRFD_OUTPUTS = [f"{kind}_{stride}" for kind in ("score", "bbox", "kps") for stride in STRIDES]


def save(nodes: list, outputs: list, initializers: list, path: Path, input_shape: list) -> Path:
    """A one-input ("input.1", float) ONNX model of `nodes` at `path`."""
    graph = helper.make_graph(
        nodes, path.stem, [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, input_shape)], outputs,
        initializers,
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def const(name: str, values: object, dtype: type = np.int64) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, dtype), name)


def output(name: str, shape: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def pooled_detector(path: Path, widths: list[int], declared: list[list]) -> Path:
    """9 outputs, each the mean pixel broadcast to a fixed [5, widths[i]] (whatever the photo's size), declared
    as `declared[i]`."""
    nodes = [helper.make_node("ReduceMean", ["input.1"], ["mean"], keepdims=0)]
    initializers = []
    for name, width in zip(SCRFD_OUTPUTS, widths, strict=True):
        initializers.append(const(f"{name}_shape", [5, width]))
        nodes.append(helper.make_node("Expand", ["mean", f"{name}_shape"], [name]))
    outputs = [output(name, shape) for name, shape in zip(SCRFD_OUTPUTS, declared, strict=True)]
    return save(nodes, outputs, initializers, path, [1, 3, "height", "width"])


def recognizer(path: Path, head: list, out_shape: list, extra: list = ()) -> Path:
    """input [N, 3, 112, 112] -> channel means [N, 3] -> "e" [N, 8] (MatMul) -> `head` nodes -> "embedding"."""
    weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32), "weight")
    nodes = [
        helper.make_node("GlobalAveragePool", ["input.1"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "weight"], ["e"]),
        *head,
    ]
    return save(nodes, [output("embedding", out_shape)], [weight, *extra], path, ["N", 3, 112, 112])


def test_detector_with_wrong_output_shapes(cli, shared_data, random_recognizer, tmp_path):
    """A 9-output detector whose outputs are not SCRFD's [N, 1] scores, [N, 4] boxes, [N, 10] key points per stride:
    refused at load when the file declares the wrong shape; when it declares the right ones but returns others
    (a fixed [5, C] whatever the photo), refused at its first run, naming the output, what it gave and what the
    layout needs there. detect and build-db end with that one line, exit 1, no output and no gallery written."""
    photos = shared_data / KNN / "train"
    out, db = tmp_path / "out.jsonl", tmp_path / "g.h5"
    declared_wrong = pooled_detector(tmp_path / "declared.onnx", [3] * 9, [["N", 3]] * 9)
    line = clean_error(cli("detect", shared_data / OBAMA, "--model", declared_wrong, "--out", out), 1)
    assert line == (f"Error: {declared_wrong}: output 1 (score_8) has shape [5, 3]; a SCRFD-layout detector with 9 "
                    "outputs gives the scores of stride 8 there: [N, 1] or [1, N, 1]")  # fmt: skip

    widths = [1] * 3 + [4] * 3 + [10] * 3
    lying = pooled_detector(tmp_path / "lying.onnx", widths, [["N", w] for w in widths])
    line = clean_error(cli("detect", shared_data / OBAMA, "--model", lying, "--out", out), 1)
    # obama.jpg (910 x 1137, below --max-size) padded to multiples of 32: 928 x 1152, 116 x 144 positions of stride 8
    assert line == (f"Error: {lying}: output 1 (score_8) has shape [5, 1] for a 928x1152 input; the scores of "
                    "stride 8 are [33408, 1] there (116x144 positions x 2 anchors)")  # fmt: skip
    for model in (declared_wrong, lying):
        result = cli("build-db", photos, model, random_recognizer, db)
        clean_error(result, 1, f"{model}: output 1 (score_8) has shape [")
    assert not out.exists() and not db.exists() and temp_files(tmp_path) == []


def test_detector_that_outputs_nan(cli, shared_data, tmp_path):
    """A detector of the right layout (a strided convolution per level) whose boxes are log(-1) = NaN: one line
    naming the output, exit 1, instead of faces at NaN positions (or `NaN` in the JSON)."""
    nodes, initializers = [], []
    for stride in STRIDES:
        for kind, width, bias in (("score", 1, 5.0), ("bbox", 4, -1.0), ("kps", 10, 0.0)):
            name = f"{kind}_{stride}"
            initializers += [
                numpy_helper.from_array(np.zeros((2 * width, 3, stride, stride), np.float32), f"{name}_w"),
                numpy_helper.from_array(np.full(2 * width, bias, np.float32), f"{name}_b"),
                const(f"{name}_rows", [-1, width]),
            ]
            nodes += [
                helper.make_node("Conv", ["input.1", f"{name}_w", f"{name}_b"], [f"{name}_c"], strides=[stride] * 2),
                helper.make_node("Transpose", [f"{name}_c"], [f"{name}_t"], perm=[0, 2, 3, 1]),
                helper.make_node("Reshape", [f"{name}_t", f"{name}_rows"], [f"{name}_r"]),
                helper.make_node({"score": "Sigmoid", "bbox": "Log", "kps": "Identity"}[kind], [f"{name}_r"], [name]),
            ]
    outputs = [output(name, ["N", {"score": 1, "bbox": 4, "kps": 10}[name.split("_")[0]]]) for name in SCRFD_OUTPUTS]
    model = save(nodes, outputs, initializers, tmp_path / "nan_boxes.onnx", [1, 3, "height", "width"])
    out = tmp_path / "out.jsonl"
    line = clean_error(cli("detect", shared_data / OBAMA, "--model", model, "--out", out), 1)
    assert line == (f"Error: {model}: output 4 (bbox_8) holds NaN or infinite boxes; the model is broken (damaged "
                    "weights or a numeric overflow)")  # fmt: skip
    assert not out.exists()


@pytest.mark.parametrize(
    "case, head, declared, expected",
    [
        ("rank3", [helper.make_node("Unsqueeze", ["e", "axis2"], ["embedding"])], ["N", 8, 1],
         "output embedding has shape [N, 8, 1]; a recognizer's output is [N, D], one D-d embedding per crop"),
        ("rank1", [helper.make_node("ReduceSum", ["e", "axis1"], ["embedding"], keepdims=0)], ["N"],
         "output embedding has shape [N]; a recognizer's output is [N, D], one D-d embedding per crop"),
        # declared [N, 8] but [1, 8] for any batch: found by the first run (a batch of 9 crops)
        ("lying", [helper.make_node("Slice", ["e", "zero", "one", "zero"], ["embedding"])], ["N", 8],
         "output embedding has shape [1, 8] for a batch of 9 crops; a recognizer's output is [9, 8], one embedding "
         "per crop"),
    ],
)  # fmt: skip
def test_recognizer_whose_output_is_not_n_by_d(cli, shared_data, scrfd, tmp_path, case, head, declared, expected):
    """A recognizer whose output is [N, D, 1] or [N] (declared so), or declared [N, D] but [1, D] when run: build-db
    refuses with one line naming the file and the [N, D] it needs, exit 1, and writes no gallery."""
    extra = [const("axis1", [1]), const("axis2", [2]), const("zero", [0]), const("one", [1])]
    model = recognizer(tmp_path / f"{case}.onnx", head, declared, extra)
    db = tmp_path / "g.h5"
    line = clean_error(cli("build-db", shared_data / KNN / "train", scrfd, model, db), 1)
    assert line == f"Error: {model}: {expected}"
    assert not db.exists() and temp_files(tmp_path) == []


@pytest.fixture(scope="module")
def exported(random_recognizer, tmp_path_factory) -> Path:
    """The session's random recognizer exported as train-recognize exports it: its recognizer.onnx claims the
    fingerprint of the model.pt it came from (the knn_gallery's)."""
    from facekit.fileio import sha256_file
    from facekit.recognition.export import ONNX_FILE, export_arcface_onnx
    from facekit.runtime.recognizer import TorchRecognizer

    model = TorchRecognizer(random_recognizer)
    out = tmp_path_factory.mktemp("exported") / ONNX_FILE
    export_arcface_onnx(model.model, model.config, out, fingerprint=sha256_file(random_recognizer / "model.pt"))
    return out


def edited(source: Path, target: Path, drop: tuple[str, ...] = ()) -> Path:
    """`source` with every float weight changed (x 1.5, + 0.01) and its metadata kept (less the keys `drop`)."""
    model = onnx.load(str(source))
    for tensor in model.graph.initializer:
        if tensor.data_type == TensorProto.FLOAT:
            tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * 1.5 + 0.01, tensor.name))
    kept = [p for p in model.metadata_props if p.key not in drop]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, str(target))
    return target


def test_onnx_weights_edited_under_the_metadata(cli, shared_data, scrfd, knn_gallery, exported, tmp_path, caplog):
    """The knn gallery was built with the PyTorch model; its ONNX export is accepted (the claim holds for its
    weights). The same file with every weight edited and the metadata kept, or with the weights digest deleted as
    well, or an export written before facekit recorded the digest: the claim is reported (a warning naming the file)
    and ignored, so recognize and build-db --append refuse the gallery with one line; the gallery is unchanged."""
    from facekit.recognition.export import FINGERPRINT_KEY, TEMPLATE_KEY, WEIGHTS_KEY

    db = copy(knn_gallery, tmp_path / "g.h5")
    before = db.read_bytes()
    test, train = shared_data / KNN / "test", shared_data / KNN / "train"
    result = cli("recognize", test, db, scrfd, exported)
    assert result.exit_code == 0, result.output

    metadata = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    assert set(metadata) == {FINGERPRINT_KEY, WEIGHTS_KEY, TEMPLATE_KEY}
    claim = metadata[FINGERPRINT_KEY][:12]
    legacy = tmp_path / "legacy.onnx"  # as facekit wrote exports before: the same weights, the claim alone
    model = onnx.load(str(exported))
    onnx.helper.set_model_props(model, {FINGERPRINT_KEY: metadata[FINGERPRINT_KEY]})
    onnx.save(model, str(legacy))
    cases = {
        edited(exported, tmp_path / "edited.onnx"): "are not those its metadata describes",
        edited(exported, tmp_path / "undigested.onnx", drop=(WEIGHTS_KEY,)): "without a digest of the weights",
        legacy: "without a digest of the weights",
    }
    name = "facekit mobilefacenet (PyTorch)"
    for model, warning in cases.items():
        for args in (["recognize", test, db, scrfd, model], ["build-db", train, scrfd, model, db, "--append"]):
            caplog.clear()
            with caplog.at_level(logging.WARNING):
                line = clean_error(cli(*args), 1)
            assert line.startswith(f"Error: {db}: gallery was built by recognizer {name} (sha256 {claim}), not "
                                   f"ONNX {model.name} (")  # fmt: skip
            assert claim not in line.split(", not ")[1]
            warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1 and warnings[0].startswith(f"{model}: ") and warning in warnings[0], warnings
            assert claim in warnings[0] and "\n" not in warnings[0]
    assert db.read_bytes() == before


def test_recalibrated_model_pt_with_edited_weights(cli, shared_data, scrfd, knn_gallery, random_recognizer,
                                                   tmp_path, caplog):  # fmt: skip
    """calibrate --write rewrites model.pt and keeps, in its meta, the fingerprint galleries know it by: the
    knn gallery still accepts it. The recalibrated model.pt with its tensors edited and its meta kept: the claim is
    reported and ignored, recognize refuses the gallery with one line."""
    import torch

    people = tmp_path / "people"
    for person in ("s31", "s32", "s33"):
        (people / person).mkdir(parents=True)
        for photo in sorted((shared_data / "faces/orl_aligned_112" / person).iterdir())[:4]:
            copy(photo, people / person / photo.name)
    model = tmp_path / "model"
    shutil.copytree(random_recognizer, model)
    assert cli("calibrate", model, people, "--write").exit_code == 0
    test = shared_data / KNN / "test"
    result = cli("recognize", test, knn_gallery, scrfd, model)
    assert result.exit_code == 0 and "calibrated on people" in result.output, result.output

    payload = torch.load(model / "model.pt", weights_only=True)
    payload["state_dict"] = {k: v * 1.5 if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    torch.save(payload, model / "model.pt")
    with caplog.at_level(logging.WARNING):
        result = cli("recognize", test, knn_gallery, scrfd, model)
    clean_error(result, 1, f"{knn_gallery}: gallery was built by recognizer facekit mobilefacenet (PyTorch) (sha256 ")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(f"{model / 'model.pt'}: its weights (digest "), warnings
