"""`facekit export`: every kind of facekit model directory (trained, or imported by import-model) becomes the ONNX
file insightface's model_zoo routes to the right class (SCRFD, ArcFaceONNX) and facekit's runtime loads, in
float32, float16 or int8; `--check` measures its parity with PyTorch on real photos."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from .helpers import clean_error, copy, copy_tree

RETINAFACE = "weights/pytorch_retinaface_mnet025/mobilenet0.25_Final.pth"
ORL = "faces/orl_aligned_112"
T1 = "faces/insightface_samples/t1.jpg"
DLIB_PHOTO = "faces/dlib_train/2008_002079.jpg"


def _route(path: Path) -> str:
    """The class name insightface.model_zoo.get_model gives the file, with no arguments but the CPU provider."""
    from insightface.model_zoo import get_model

    return type(get_model(str(path), providers=["CPUExecutionProvider"])).__name__


def _crops(shared_data: Path, people: range, photos: range = range(1, 11)) -> np.ndarray:
    root = shared_data / ORL
    return np.stack([cv2.imread(str(root / f"s{p}" / f"{i}.jpg")) for p in people for i in photos])


def _photo_list(shared_data: Path, path: Path, people: range) -> Path:
    """A .txt list of ORL's aligned crops of `people`."""
    path.write_text("".join(f"{shared_data / ORL}/s{p}/{i}.jpg\n" for p in people for i in range(1, 11)))
    return path


@pytest.fixture(scope="module")
def imported_detector(shared_data, tmp_path_factory) -> Path:
    """Pytorch_Retinaface's MobileNet-0.25 made a facekit detector directory by import-model."""
    from click.testing import CliRunner

    from facekit.cli import main

    out = tmp_path_factory.mktemp("export") / "mnet"
    result = CliRunner().invoke(main, ["import-model", "pytorch-retinaface", str(shared_data / RETINAFACE), str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow  # ~30 s; quick: test_detect.py::test_onnx_export_matches_pytorch_and_insightface_loads_it
def test_imported_detector_exports_in_the_scrfd_layout(cli, shared_data, imported_detector):
    """import-model's directory had no detector.onnx; export writes one that insightface routes to SCRFD and that
    finds PyTorch's faces (--check: every face matched at IoU >= 0.95, landmarks within 2 px). float16 too."""
    result = cli("export", imported_detector, "--check", shared_data / T1, "--check", shared_data / DLIB_PHOTO)
    assert result.exit_code == 0, result.output
    assert "parity with PyTorch: " in result.output and " faces matched on 2 photos" in result.output
    onnx_file = imported_detector / "detector.onnx"
    assert _route(onnx_file) == "SCRFD"
    half = cli("export", imported_detector, "--fp16", "--check", shared_data / T1)
    assert half.exit_code == 0, half.output
    fp16_file = imported_detector / "detector.fp16.onnx"
    assert _route(fp16_file) == "SCRFD"
    meta = {p.key: p.value for p in onnx.load(str(fp16_file)).metadata_props}
    assert meta["facekit_precision"] == "fp16"
    faces = [cli("detect", shared_data / T1, "--model", f).output for f in (onnx_file, fp16_file)]
    assert faces[0].count('"box"') == faces[1].count('"box"') == 6


@pytest.mark.slow  # quick: test_recognizer_runtime.py exports a recognizer and checks torch, ONNX and insightface agree
def test_recognizer_export_keeps_its_fingerprint_and_routes_to_arcface(cli, shared_data, random_recognizer, tmp_path):
    """A recognizer directory without recognizer.onnx gets one: ArcFaceONNX at its own input size, the model's
    fingerprint kept (galleries accept both forms); --check on ORL crops gives the cosine; float16 keeps >= 0.999."""
    from facekit.runtime.recognizer import load_face_recognizer

    rec = copy_tree(random_recognizer, tmp_path / "rec")
    result = cli("export", rec, "--check", shared_data / ORL / "s1")
    assert result.exit_code == 0, result.output
    cosine = re.search(r"10 face crops from 10 photos: embedding cosine >= ([\d.]+)", result.output)
    assert cosine and float(cosine.group(1)) >= 0.999, result.output
    assert _route(rec / "recognizer.onnx") == "ArcFaceONNX"
    torch_rec, onnx_rec = load_face_recognizer(rec), load_face_recognizer(rec, backend="onnx")
    assert onnx_rec.fingerprint == torch_rec.fingerprint and onnx_rec.input_size == 112
    assert cli("export", rec, "--fp16", "--check", shared_data / ORL / "s2").exit_code == 0
    half = load_face_recognizer(rec / "recognizer.fp16.onnx")
    assert _route(half.path) == "ArcFaceONNX" and half.fingerprint != torch_rec.fingerprint
    crops = _crops(shared_data, range(31, 41), range(1, 4))
    assert (torch_rec.embed(crops) * half.embed(crops)).sum(1).min() >= 0.999


@pytest.mark.slow
def test_int8_recognizer(cli, shared_data, orl_recognizer, tmp_path):
    """int8 calibrated on training people's crops (ORL s1-s30) keeps cosine >= 0.99 with the float32 model on unseen
    people (s31-s40), loads in facekit's runtime and insightface's, and loses at most 0.5 points of accuracy on
    orl_val.bin's pairs."""
    from facekit.data.verification import load_bin
    from facekit.recognition.verification import decode_crops, verification_metrics
    from facekit.runtime.recognizer import load_face_recognizer

    rec = copy_tree(orl_recognizer, tmp_path / "rec")
    calibration = _photo_list(shared_data, tmp_path / "calibration.txt", range(1, 31))
    check = _photo_list(shared_data, tmp_path / "check.txt", range(31, 41))
    result = cli("export", rec, "--int8", calibration, "--check", check)
    assert result.exit_code == 0, result.output
    int8_file = rec / "recognizer.int8.onnx"
    model = onnx.load(str(int8_file))
    assert any(node.op_type == "QuantizeLinear" for node in model.graph.node)
    assert _route(int8_file) == "ArcFaceONNX"
    fp32, int8 = load_face_recognizer(rec), load_face_recognizer(int8_file)
    crops = _crops(shared_data, range(31, 41))
    assert (fp32.embed(crops) * int8.embed(crops)).sum(1).min() >= 0.99
    assert int8_file.stat().st_size < (rec / "recognizer.onnx").stat().st_size / 2
    pairs = load_bin(shared_data / "layouts/recognition_train_data/orl_val.bin")  # s31-s40, 400 pairs
    faces = decode_crops(pairs.images, 0, "orl_val.bin")
    accuracy = {
        name: verification_metrics(r.embed(faces), pairs.issame).accuracy
        for name, r in [("fp32", fp32), ("int8", int8)]
    }
    assert accuracy["int8"] >= accuracy["fp32"] - 0.005, accuracy  # at most 0.5 points lost (measured: 91.75 -> 92.50)


def test_export_refuses_what_it_cannot_do(cli, shared_data, random_recognizer, tmp_path):
    """--fp16 with --int8, an output onto the model's own model.pt or config.yaml or onto a --check photo (exit 2),
    a folder that holds no facekit model and a checkpoint that is not one (exit 1): nothing written."""
    rec = copy_tree(random_recognizer, tmp_path / "rec")
    crop = copy(shared_data / ORL / "s1/1.jpg", tmp_path / "crops/1.jpg")
    pth = shared_data / "weights/pytorch_retinaface_mnet025/mobilenet0.25_Final.pth"
    clean_error(cli("export", rec, "--fp16", "--int8", crop), 2, "--fp16 and --int8 exclude each other")
    clean_error(cli("export", rec, "--out", rec / "model.pt"), 2, f"{rec / 'model.pt'}: is the recognizer model file")
    clean_error(cli("export", rec, "--out", rec / "config.yaml"), 2, "config.yaml: is the recognizer model's config")
    clean_error(cli("export", rec, "--check", crop.parent, "--out", crop), 2, f"{crop}: is a photo in the --check")
    clean_error(cli("export", tmp_path / "crops"), 1, "crops: no such file (expected model.pt in the folder)")
    clean_error(cli("export", pth), 1, f"{pth}: not a facekit model")
    assert sorted(p.name for p in rec.iterdir()) == ["config.yaml", "model.pt"]


@pytest.mark.slow
def test_int8_calibrated_on_the_wrong_photos_fails_its_check(cli, shared_data, orl_recognizer, tmp_path):
    """int8 calibrated on one black picture clips real faces' activations: --check on real crops fails with one line
    naming the crop and its cosine; the int8 file is not written."""
    rec = copy_tree(orl_recognizer, tmp_path / "rec")
    black = tmp_path / "black.png"
    cv2.imwrite(str(black), np.zeros((112, 112, 3), np.uint8))
    result = cli("export", rec, "--int8", black, "--check", shared_data / ORL / "s31")
    clean_error(result, 1, "recognizer.int8.onnx: the int8 export does not match PyTorch: ", "embedding cosine",
                "(expected >= 0.99)", "; not written")  # fmt: skip
    assert not (rec / "recognizer.int8.onnx").exists()


def test_export_check_skips_a_bad_photo(cli, shared_data, random_recognizer, tmp_path):
    crops = copy_tree(shared_data / ORL / "s1", tmp_path / "crops")
    (crops / "bad.jpg").write_bytes((crops / "1.jpg").read_bytes()[:300])
    rec = copy_tree(random_recognizer, tmp_path / "rec")
    result = cli("export", rec, "--check", crops)
    assert result.exit_code == 0, result.output
    assert "bad.jpg: cannot decode image" in result.output and "10 face crops from 10 photos" in result.output


def test_export_of_a_cascade_detector_is_refused(cli, mtcnn_dir):
    """MTCNN runs three networks over an image pyramid: no single SCRFD-layout graph; one line, nothing written."""
    clean_error(cli("export", mtcnn_dir), 1, f"{mtcnn_dir}: a facekit mtcnn detector; export writes the SCRFD layout")
    assert not (mtcnn_dir / "detector.onnx").exists()
