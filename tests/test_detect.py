"""`facekit import-model` and `facekit detect` with the published Pytorch_Retinaface MobileNet-0.25 weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from detection_helpers import dlib_train_matches, run_detect

from facekit.detection.box_utils import box_iou

WEIGHTS = "weights/pytorch_retinaface_mnet025/mobilenet0.25_Final.pth"


@pytest.fixture(scope="module")
def mnet_dir(shared_data, tmp_path_factory):
    from facekit.detection.weights import import_pytorch_retinaface

    out = tmp_path_factory.mktemp("mnet")
    import_pytorch_retinaface(shared_data / WEIGHTS, out)
    return out


def test_import_model_cli(cli, shared_data, tmp_path):
    result = cli("import-model", "pytorch-retinaface", shared_data / WEIGHTS, tmp_path / "m")
    assert result.exit_code == 0
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.yaml", "model.pt"]
    assert "body: mobilenet0.25" in (tmp_path / "m/config.yaml").read_text()


def test_dlib_hand_labelled_faces(cli, shared_data, mnet_dir):
    """At least 17 of the 18 hand-drawn faces at IoU >= 0.4, at most 2 false positives over the 4 photos."""
    found, false_positives = dlib_train_matches(cli, shared_data, mnet_dir)
    assert found >= 17 and false_positives <= 2, (found, false_positives)


def test_group_photo_six_faces(cli, shared_data, mnet_dir, tmp_path):
    out = tmp_path / "faces.jsonl"
    result = cli(
        "detect",
        shared_data / "faces/insightface_samples/t1.jpg",
        "--model",
        mnet_dir,
        "--out",
        out,
        "--save-annotated",
        tmp_path / "ann",
    )
    assert result.exit_code == 0
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert (record["width"], record["height"]) == (1280, 886)
    assert len(record["faces"]) == 6
    face = record["faces"][0]
    assert set(face) == {"box", "score", "landmarks"} and len(face["landmarks"]) == 5 and face["score"] > 0.9
    x1, y1, x2, y2 = face["box"]
    # eyes above the mouth corners, left eye left of right eye, all inside the box
    (lx, ly), (rx, ry), _, (mlx, mly), (mrx, mry) = face["landmarks"]
    assert lx < rx and max(ly, ry) < min(mly, mry)
    assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in face["landmarks"])
    assert (tmp_path / "ann/t1.jpg").is_file()


def test_annotated_copies_keep_the_folder_structure(cli, shared_data, mnet_dir, tmp_path):
    train = shared_data / "faces/face_recognition_examples/examples/knn_examples/train"
    run_detect(cli, train, "--model", mnet_dir, "--save-annotated", tmp_path / "ann")
    written = sorted(p.relative_to(tmp_path / "ann").as_posix() for p in (tmp_path / "ann").rglob("*.jpg"))
    assert len(written) == 9 and "biden/biden2.jpg" in written and "obama/obama2.jpg" in written


def test_unreadable_images_skipped_and_reported(cli, shared_data, mnet_dir, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a/broken.jpg").write_bytes(b"\xff\xd8 nope")
    (tmp_path / "a/empty.png").write_bytes(b"")
    (tmp_path / "a/good.jpg").write_bytes(
        (shared_data / "faces/face_recognition_examples/examples/obama.jpg").read_bytes()
    )
    result = cli("detect", tmp_path / "a", "--model", mnet_dir)
    assert result.exit_code == 0
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["image"].rsplit("/", 1)[-1] for r in records] == ["good.jpg"] and len(records[0]["faces"]) == 1
    assert "skipped 2 unreadable images" in result.stderr and "broken.jpg: cannot decode image" in result.stderr


def test_wrong_model_is_a_clean_error(cli, shared_data, tmp_path):
    (tmp_path / "model.pt").write_bytes(b"junk")
    result = cli("detect", shared_data / "faces/insightface_samples/t1.jpg", "--model", tmp_path)
    assert result.exit_code == 1
    assert "model.pt: not a readable PyTorch file" in result.output


def test_onnx_export_matches_pytorch_and_insightface_loads_it(shared_data, mnet_dir, tmp_path):
    """detector.onnx in the SCRFD layout: insightface routes it to SCRFD and finds the same faces as PyTorch."""
    import cv2
    from insightface.model_zoo import get_model

    from facekit.detection.export import export_scrfd_onnx
    from facekit.detection.weights import load_detector
    from facekit.runtime.detector import DetectSettings, TorchDetector, load_face_detector

    model, config = load_detector(mnet_dir)
    onnx_path = export_scrfd_onnx(model, config, tmp_path / "detector.onnx")
    theirs = get_model(str(onnx_path), providers=["CPUExecutionProvider"])
    assert type(theirs).__name__ == "SCRFD"
    theirs.prepare(ctx_id=-1, input_size=(640, 640), det_thresh=0.5)
    ours = TorchDetector(model, config)
    ours_onnx = load_face_detector(onnx_path)
    photos = [*(shared_data / "faces/dlib_train").glob("20*.jpg"), shared_data / "faces/insightface_samples/t1.jpg"]
    for photo in photos:
        image = cv2.imread(str(photo))
        # insightface letterboxes into 640x640: give all three the same pixels, longest side 640
        scale = 640 / max(image.shape[:2])
        image = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)))
        expected = ours.detect(image, DetectSettings(max_size=640))
        boxes, points = theirs.detect(image)
        assert len(boxes) == len(expected), photo.name
        iou = box_iou(torch.tensor(boxes[:, :4]), torch.tensor(np.stack([f.box for f in expected])))
        best = iou.max(1)
        assert (best.values >= 0.95).all(), photo.name
        for k, j in enumerate(best.indices.tolist()):
            assert np.abs(points[k] - expected[j].landmarks).max() <= 2.0
        again = ours_onnx.detect(image, DetectSettings(max_size=640))
        assert len(again) == len(expected)
        assert np.abs(np.stack([f.box for f in again]) - np.stack([f.box for f in expected])).max() < 0.5


@pytest.mark.parametrize("backend", ["onnx", "scrfd"])
def test_detect_cli_onnx_backends(cli, shared_data, mnet_dir, backend):
    from facekit.detection.export import export_scrfd_onnx
    from facekit.detection.weights import load_detector

    if backend == "onnx":
        export_scrfd_onnx(*load_detector(mnet_dir), mnet_dir / "detector.onnx")
        args = ["--model", mnet_dir, "--backend", "onnx"]
    else:
        args = ["--model", shared_data / "weights/scrfd_500m_kps/scrfd_500m_bnkps.onnx"]
    (record,) = run_detect(cli, shared_data / "faces/insightface_samples/t1.jpg", *args)
    assert len(record["faces"]) == 6


def test_load_pretrained_sources(shared_data, mnet_dir, tmp_path):
    from facekit.detection.config import DetectorConfig
    from facekit.detection.weights import build_detector, load_pretrained
    from facekit.errors import DataFormatError

    model = build_detector(DetectorConfig.for_body("mobilenet0.25"))
    assert load_pretrained(model, mnet_dir) == "facekit detector"
    assert load_pretrained(model, shared_data / WEIGHTS) == "Pytorch_Retinaface detector"
    tar = shared_data / "weights/pytorch_retinaface_mnet025/mobilenetV1X0.25_pretrain.tar"
    assert load_pretrained(model, tar) == "ImageNet backbone"
    resnet = build_detector(DetectorConfig.for_body("resnet50"))
    with pytest.raises(DataFormatError, match="weights do not fit this detector"):
        load_pretrained(resnet, shared_data / WEIGHTS)
    torch.save({"something": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(DataFormatError, match="other.pth: weights fit neither the detector nor its backbone"):
        load_pretrained(model, tmp_path / "other.pth")
