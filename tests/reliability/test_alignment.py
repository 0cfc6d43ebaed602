"""Per-recognizer alignment: each recognizer's faces are warped onto its own 5-point template at its own input size
(a facekit model's config.template, an ONNX export's metadata, ArcFace's scaled for other ONNX files). build-db,
recognize and align make the crops facekit.align.align_face makes with that template; a gallery records it and
refuses a recognizer that takes other crops."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from .helpers import BIDEN, OBAMA, clean_error, copy

SIZE = 96
# a looser crop than ArcFace's, shifted down: no scaling of the ArcFace template gives it
POINTS = [[30.0, 40.0], [66.0, 40.0], [48.0, 58.0], [34.0, 74.0], [62.0, 74.0]]


def onnx_recognizer(path: Path, size: int, points: list | None) -> Path:
    """input [N, 3, size, size] -> 8x8 average pooling -> a seeded zero-mean projection -> "embedding" [N, 16]; with
    `points`, facekit's template metadata (as facekit's exports carry it)."""
    from facekit.recognition.export import TEMPLATE_KEY

    cells = 3 * (size // 8) ** 2
    weight = np.random.default_rng(0).normal(size=(cells, 16)).astype(np.float32)
    weight -= weight.mean(0)  # the crop's mean brightness does not count: its layout does
    nodes = [
        helper.make_node("AveragePool", ["input.1"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "weight"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes, path.stem, [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 16])],
        [numpy_helper.from_array(weight, "weight")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    if points is not None:
        helper.set_model_props(model, {TEMPLATE_KEY: json.dumps(points)})
    onnx.save(model, str(path))
    return path


@pytest.fixture
def people(shared_data, tmp_path) -> Path:
    """Two people, one photo each."""
    copy(shared_data / OBAMA, tmp_path / "people/obama/obama.jpg")
    copy(shared_data / BIDEN, tmp_path / "people/biden/biden2.jpg")
    return tmp_path / "people"


def test_own_template_through_build_db_and_recognize(cli, people, scrfd, tmp_path):
    from facekit.align import align_face
    from facekit.data.images import read_image
    from facekit.gallery.store import Gallery
    from facekit.runtime.recognizer import load_face_recognizer

    model = onnx_recognizer(tmp_path / "r96.onnx", SIZE, POINTS)
    db = tmp_path / "g.h5"
    result = cli("build-db", people, scrfd, model, db)
    assert result.exit_code == 0, result.output
    gallery = Gallery.load(db)
    assert gallery.crop_size == SIZE
    np.testing.assert_allclose(gallery.template, POINTS, atol=1e-3)
    with h5py.File(db) as f:  # stored in the 112 x 112 frame, as galleries always held it
        np.testing.assert_allclose(f.attrs["alignment_template"], np.array(POINTS) * 112 / SIZE, atol=1e-3)
    info = json.loads(cli("db", "info", db, "--json").stdout)
    assert (info["crop_size"], info["alignment_template"]) == (SIZE, POINTS)
    recognizer = load_face_recognizer(model)
    for source, landmarks, stored in zip(gallery.sources, gallery.landmarks, gallery.embeddings, strict=True):
        image = read_image(source)
        own = recognizer.embed(align_face(image, landmarks, SIZE, np.array(POINTS, np.float32))[None])[0]
        arcface = recognizer.embed(align_face(image, landmarks, SIZE)[None])[0]
        assert float(own @ stored) > 0.9999
        assert float(arcface @ stored) < 0.99  # the template matters to this recognizer
    result = cli("recognize", people / "obama/obama.jpg", db, scrfd, model, "--out", tmp_path / "r.jsonl")
    assert result.exit_code == 0, result.output
    (face,) = json.loads((tmp_path / "r.jsonl").read_text())["faces"]
    assert face["identity"] == "obama" and face["similarity"] > 0.9999  # the same crop as build-db's


def test_gallery_refuses_other_crops(cli, people, scrfd, random_recognizer, tmp_path):
    """A recognizer that takes other crops (another size, or the same size and another template) is refused by
    recognize and build-db --append with one line naming both; the gallery is unchanged."""
    model = onnx_recognizer(tmp_path / "r96.onnx", SIZE, POINTS)
    arcface96 = onnx_recognizer(tmp_path / "arcface96.onnx", SIZE, None)
    db = tmp_path / "g.h5"
    assert cli("build-db", people, scrfd, model, db).exit_code == 0
    before = db.read_bytes()
    ours = "gallery faces were aligned to 96x96 crops with the template (30, 40) (66, 40) (48, 58) (34, 74) (62, 74)"
    result = cli("recognize", people / "obama/obama.jpg", db, scrfd, arcface96)
    clean_error(result, 1, f"{db}: {ours}; recognizer ONNX arcface96.onnx takes 96x96 crops with the ArcFace template")
    result = cli("build-db", people, scrfd, random_recognizer, db, "--append")
    clean_error(result, 1, ours, "takes 112x112 crops with the ArcFace template", "rebuild the gallery with build-db")
    assert db.read_bytes() == before


def test_align_onto_a_recognizers_template(cli, people, scrfd, tmp_path):
    """align --recognizer: crops of the recognizer's size, warped onto its template (as build-db makes them)."""
    from facekit.align import align_face
    from facekit.data.images import read_image

    model = onnx_recognizer(tmp_path / "r96.onnx", SIZE, POINTS)
    result = cli("align", people, tmp_path / "out", "--detect", scrfd, "--recognizer", model, "--quality", 100)
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "out/alignment.json").read_text())
    assert meta["settings"]["size"] == SIZE and meta["settings"]["template"] == POINTS
    for record in meta["photos"]:
        crop = read_image(tmp_path / "out" / record["output"]).astype(np.float32)
        image = read_image(people / record["source"])
        landmarks = np.array(record["landmarks"], np.float32)
        own = align_face(image, landmarks, SIZE, np.array(POINTS, np.float32))
        assert crop.shape == (SIZE, SIZE, 3)
        assert np.abs(crop - own).mean() < 2  # JPEG, rounded landmarks
        assert np.abs(crop - align_face(image, landmarks, SIZE)).mean() > 10
    result = cli("align", people, tmp_path / "out2", "--detect", scrfd, "--recognizer", model, "--size", "96")
    assert result.exit_code == 2 and "give one" in result.output


def test_bad_template_metadata(cli, people, scrfd, tmp_path):
    model = onnx_recognizer(tmp_path / "r.onnx", SIZE, [[1, 2], [3, 4]])
    clean_error(cli("build-db", people, scrfd, model, tmp_path / "g.h5"), 1,
                f"{model}: metadata facekit_template is [[1, 2], [3, 4]], expected 5 (x, y) points inside the 96x96 "
                "crop, the eyes apart")  # fmt: skip
    assert not (tmp_path / "g.h5").exists()


def test_export_carries_the_template(random_recognizer, tmp_path):
    """A facekit model with its own template: its ONNX export carries it in metadata (insightface still loads the
    file as an ArcFaceONNX recognizer), and both forms align onto it."""
    from dataclasses import replace

    from insightface.model_zoo import get_model
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX

    from facekit.recognition.export import export_arcface_onnx
    from facekit.recognition.modelfile import save_recognizer
    from facekit.runtime.recognizer import load_face_recognizer

    torch_rec = load_face_recognizer(random_recognizer)
    points = tuple((x, y + 6.0) for x, y in torch_rec.config.template)
    config = replace(torch_rec.config, template=points)
    save_recognizer(tmp_path / "model", torch_rec.model, config)
    export_arcface_onnx(torch_rec.model, config, tmp_path / "model/recognizer.onnx")
    for backend in ("torch", "onnx"):
        rec = load_face_recognizer(tmp_path / "model", backend=backend)
        np.testing.assert_allclose(rec.template, points, atol=1e-4)
    assert isinstance(get_model(str(tmp_path / "model/recognizer.onnx")), ArcFaceONNX)


def test_bad_template_in_config(cli, people, scrfd, random_recognizer, tmp_path):
    from dataclasses import replace

    from facekit.recognition.modelfile import save_recognizer
    from facekit.runtime.recognizer import load_face_recognizer

    torch_rec = load_face_recognizer(random_recognizer)
    model = save_recognizer(tmp_path / "model", torch_rec.model, replace(torch_rec.config, template=((1e6, 0.0),) * 5))
    clean_error(cli("build-db", people, scrfd, tmp_path / "model", tmp_path / "g.h5"), 1,
                f"{model}: config template is ((1000000.0, 0.0), (1000000.0, 0.0), ",
                "expected 5 (x, y) points inside the 112x112 crop, the eyes apart")  # fmt: skip
