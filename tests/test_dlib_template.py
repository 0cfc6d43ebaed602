"""dlib's chip geometry as facekit's DLIB_TEMPLATE, against the real dlib: the transform read back from dlib's chip
details remakes dlib's own chips; a refit on people the constant was not fitted on lands on it; faces warped onto it
embed like dlib's chips; and `import-model dlib-resnet` aligns with it and translates dlib's threshold."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from dlib_chips import CHIP_SIZE, dlib_faces, fit_template

from facekit.align import DLIB_TEMPLATE, align_face, template

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def eval_photos(shared_data) -> list[Path]:
    """The first photo of each CelebA evaluation person (7450-7499): people DLIB_TEMPLATE was not fitted on."""
    people = sorted((shared_data / "faces" / "celeba_subset").glob("74[5-9]?"))
    assert len(people) == 50
    return [min(person.iterdir()) for person in people]


@pytest.fixture(scope="module")
def scrfd_detector(scrfd):
    from facekit.runtime.detector import load_face_detector

    return load_face_detector(scrfd)


@pytest.fixture(scope="module")
def geometry(eval_photos, tmp_path_factory) -> tuple[list[dict | None], np.ndarray]:
    """dlib's face of each photo (None: not found) with its chip transform, and dlib's chips (RGB [N, 150, 150, 3])."""
    work = tmp_path_factory.mktemp("geometry")
    faces = dlib_faces(eval_photos, "geometry", work)
    return faces, np.load(work / "dlib_geometry.json.npy")


def test_chip_transform_remakes_dlibs_chips(eval_photos, geometry):
    faces, chips = geometry
    found = [(path, face) for path, face in zip(eval_photos, faces, strict=True) if face is not None]
    assert len(found) == len(chips) >= 40
    for (path, face), chip in zip(found, chips, strict=True):
        image = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)[..., ::-1]
        ours = cv2.warpAffine(image, np.asarray(face["affine"]), (CHIP_SIZE, CHIP_SIZE))
        assert np.abs(ours.astype(np.float32) - chip).mean() < 2.0, path  # bilinear both; a wrong angle gives ~6


def test_refit_on_unseen_people_lands_on_the_template(eval_photos, scrfd_detector, geometry):
    fit = fit_template(eval_photos, geometry[0], scrfd_detector)
    assert fit.faces >= 40
    shift = np.linalg.norm(fit.template - DLIB_TEMPLATE, axis=1)
    assert shift.max() < 1.5, (fit.template, shift)  # per point, in 150-px chip pixels
    assert fit.chip_error < 10.0  # 6.9 px over the 477 faces of the fit


def test_aligned_faces_embed_like_dlibs_chips(eval_photos, scrfd_detector, geometry, dlib_dir):
    """facekit's crop (SCRFD landmarks onto DLIB_TEMPLATE) vs dlib's chip of the same face, both through the
    imported network: near dlib's own pipeline, and far nearer than with ArcFace's template."""
    from dlib_chips import _matching

    from facekit.runtime.recognizer import load_face_recognizer

    faces, chips = geometry[0], geometry[1][..., ::-1]
    recognizer = load_face_recognizer(dlib_dir)
    rows, landmarks = [], []
    for index, (path, face) in enumerate((p, f) for p, f in zip(eval_photos, faces, strict=True) if f is not None):
        image = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
        points = _matching(scrfd_detector, image, face["box"])
        if points is not None:
            rows.append(index)
            landmarks.append((image, points))
    reference = recognizer.embed(np.ascontiguousarray(chips[rows]))
    cosines = {}
    for name, points in (("dlib", DLIB_TEMPLATE), ("arcface", template(CHIP_SIZE))):
        crops = np.stack([align_face(image, lm, CHIP_SIZE, points) for image, lm in landmarks])
        cosines[name] = (recognizer.embed(crops) * reference).sum(1)
    assert np.median(cosines["dlib"]) >= 0.99 and np.median(cosines["arcface"]) < 0.95, cosines


def test_import_aligns_to_dlibs_chips_with_dlibs_threshold(dlib_dir):
    from facekit.runtime.recognizer import load_face_recognizer

    config = yaml.safe_load((dlib_dir / "config.yaml").read_text())
    np.testing.assert_allclose(config["template"], DLIB_TEMPLATE, atol=1e-4)
    assert config["threshold"] == pytest.approx(1 - 0.6**2 / (2 * 1.48**2), abs=1e-4)
    assert config["calibration"]["rule"] == "dlib-distance=0.6"
    onnx = load_face_recognizer(dlib_dir, backend="onnx")
    np.testing.assert_allclose(onnx.template, DLIB_TEMPLATE, atol=1e-4)


@pytest.mark.filterwarnings("ignore:`estimate` is deprecated:FutureWarning")  # insightface's norm_crop, skimage 0.26
def test_insightface_export_routes_and_embeds_like_facekit(eval_photos, scrfd, dlib_dir, cli, tmp_path):
    """`export --insightface`: insightface's model_zoo routes the file as ArcFaceONNX at 256x256, and its own
    alignment (norm_crop) then the graph's resampling embed each face like facekit's dlib-chip pipeline."""
    from insightface.app.common import Face as InsightfaceFace
    from insightface.model_zoo import get_model

    from facekit.runtime.pipeline import load_pipeline, pick_face

    out = tmp_path / "dlib.insightface.onnx"
    result = cli("export", dlib_dir, "--insightface", "--out", out)
    assert result.exit_code == 0, result.output
    theirs = get_model(str(out), providers=["CPUExecutionProvider"])
    assert (type(theirs).__name__, theirs.input_size) == ("ArcFaceONNX", (256, 256))
    pipeline = load_pipeline(scrfd, dlib_dir)
    cosines = []
    for path in eval_photos[:12]:
        image = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
        face = pick_face(pipeline.detect(image), "center", image.shape[:2])
        ours = pipeline.embed([image], [face])[0]
        feature = theirs.get(image, InsightfaceFace(bbox=face.box, kps=np.asarray(face.landmarks)))
        cosines.append(float(ours @ feature) / float(np.linalg.norm(feature)))
    assert np.median(cosines) >= 0.999 and min(cosines) >= 0.99, cosines  # 100 faces: mean 0.9995, min 0.993


def test_insightface_export_of_dlib_refuses_check(dlib_dir, cli, shared_data, tmp_path):
    crops = shared_data / "faces" / "orl_aligned_112" / "s1"
    result = cli("export", dlib_dir, "--insightface", "--check", crops, "--out", tmp_path / "x.onnx")
    assert result.exit_code == 1 and not (tmp_path / "x.onnx").exists()
    assert result.output.strip().splitlines()[-1] == (
        f"Error: {dlib_dir}: its --insightface file takes insightface's 256x256 crops, not the model's own, so --check "
        "and --int8 do not apply; export it without --insightface"
    )
