"""Recognizers at inference time: a facekit model directory run by PyTorch, its ONNX export run by ONNX Runtime
and by insightface's own ArcFaceONNX give the same embeddings of real aligned faces (ORL, 112x112)."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from facekit.errors import DataFormatError
from facekit.recognition.backbones import create_backbone
from facekit.recognition.config import RecognizerConfig
from facekit.recognition.export import ONNX_FILE, export_arcface_onnx
from facekit.recognition.modelfile import save_recognizer
from facekit.runtime.recognizer import RAW_RGB, OnnxRecognizer, TorchRecognizer, load_face_recognizer

# insightface's 5-point ArcFace template at 112 x 112 (left eye, right eye, nose, mouth left, mouth right), typed from
# insightface's python-package/insightface/utils/face_align.py (`arcface_dst`, used by its norm_crop): the expectation,
# written independently of facekit.align.
ARCFACE_DST = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)


def test_expected_template_is_insightfaces():
    from insightface.utils.face_align import arcface_dst

    np.testing.assert_allclose(ARCFACE_DST, arcface_dst, rtol=0, atol=1e-4)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    return (a * (b / np.linalg.norm(b, axis=1, keepdims=True))).sum(1)


@pytest.fixture(scope="module")
def crops(shared_data) -> np.ndarray:
    """12 aligned BGR crops [12, 112, 112, 3]: 4 people x 3 photos."""
    root = shared_data / "faces" / "orl_aligned_112"
    return np.stack([cv2.imread(str(root / f"s{p}" / f"{i}.jpg")) for p in range(1, 5) for i in range(1, 4)])


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A randomly initialised iresnet18 recognizer directory with its recognizer.onnx."""
    torch.manual_seed(0)
    config = RecognizerConfig(backbone="iresnet18", threshold=0.3)
    backbone = create_backbone(config.backbone, embedding_size=config.embedding_size)
    out = tmp_path_factory.mktemp("r18")
    save_recognizer(out, backbone, config, meta={"note": "random weights"})
    export_arcface_onnx(backbone, config, out / ONNX_FILE)
    return out


def test_torch_onnx_and_insightface_agree(model_dir, crops):
    from insightface.model_zoo import get_model
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX

    torch_rec = load_face_recognizer(model_dir)
    onnx_rec = load_face_recognizer(model_dir, backend="onnx")
    theirs = get_model(str(model_dir / ONNX_FILE))  # no extra arguments: routed by shape alone
    assert isinstance(theirs, ArcFaceONNX)
    assert (theirs.input_mean, theirs.input_std, theirs.input_size) == (127.5, 127.5, (112, 112))
    ours = torch_rec.embed(crops)
    assert ours.shape == (12, 512) and ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-5)
    assert _cosines(onnx_rec.embed(crops), ours).min() >= 0.999
    assert _cosines(theirs.get_feat(list(crops)), ours).min() >= 0.999
    same, other = float(ours[0] @ ours[1]), float(ours[0] @ ours[3])
    assert same != pytest.approx(other)  # embeddings depend on the face


def test_load_face_recognizer_dispatch_and_attributes(model_dir):
    torch_rec = load_face_recognizer(model_dir / "model.pt")
    assert isinstance(torch_rec, TorchRecognizer) and torch_rec.name == "facekit iresnet18 (PyTorch)"
    assert torch_rec.config.threshold == 0.3
    np.testing.assert_allclose(torch_rec.config.template, ARCFACE_DST, rtol=0, atol=1e-4)
    onnx_rec = load_face_recognizer(model_dir / ONNX_FILE)
    assert isinstance(onnx_rec, OnnxRecognizer) and onnx_rec.fixed_batch is None
    for rec, file in [(torch_rec, "model.pt"), (onnx_rec, ONNX_FILE)]:
        assert (rec.embedding_size, rec.input_size) == (512, 112)
        assert rec.fingerprint == hashlib.sha256((model_dir / file).read_bytes()).hexdigest()
    assert isinstance(load_face_recognizer(model_dir / "model.pt", backend="onnx"), OnnxRecognizer)
    with pytest.raises(ValueError, match="unknown backend 'tf'"):
        load_face_recognizer(model_dir, backend="tf")
    with pytest.raises(ValueError, match="expected uint8 crops"):
        torch_rec.embed(np.zeros((2, 96, 96, 3), np.uint8))


def test_flip_averaging(model_dir, crops):
    rec, some = TorchRecognizer(model_dir), crops[::3]
    plain, flipped = rec.embed(some), rec.embed(some, flip=True)
    np.testing.assert_allclose(np.linalg.norm(flipped, axis=1), 1.0, rtol=1e-5)
    assert _cosines(plain, flipped).max() < 0.999
    np.testing.assert_allclose(rec.embed(np.ascontiguousarray(some[:, :, ::-1]), flip=True), flipped, atol=1e-5)


def test_fixed_batch_and_batching(model_dir, crops, tmp_path):
    model = onnx.load(str(model_dir / ONNX_FILE))
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_value = 1  # like older packs exported with batch 1
    onnx.save(model, str(tmp_path / "fixed.onnx"))
    fixed = OnnxRecognizer(tmp_path / "fixed.onnx")
    assert fixed.fixed_batch == 1
    dynamic = OnnxRecognizer(model_dir / ONNX_FILE)
    expected = dynamic.embed(crops[:7])
    np.testing.assert_allclose(fixed.embed(crops[:3]), expected[:3], atol=1e-5)
    dynamic.batch_size = 3
    np.testing.assert_allclose(dynamic.embed(crops[:7]), expected, atol=1e-5)


def test_graph_that_normalises_inside_gets_raw_pixels(crops, tmp_path):
    """MXNet-converted recognizers start with nodes named _minus*/_mul*: insightface then feeds raw RGB pixels."""
    from insightface.model_zoo import get_model

    weight = np.random.default_rng(0).normal(size=(8, 3, 112, 112)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Sub", ["data", "mean"], ["centred"], name="_minus0"),
            helper.make_node("Mul", ["centred", "scale"], ["scaled"], name="_mul0"),
            helper.make_node("Conv", ["scaled", "weight"], ["conv"], name="conv0"),
            helper.make_node("Flatten", ["conv"], ["fc1"], name="flatten0"),
        ],
        "mxnet_style",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 8])],
        [
            numpy_helper.from_array(np.float32(127.5), "mean"),
            numpy_helper.from_array(np.float32(1 / 127.5), "scale"),
            numpy_helper.from_array(weight, "weight"),
        ],
    )
    path = tmp_path / "mxnet_style.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    theirs = get_model(str(path))
    assert (theirs.input_mean, theirs.input_std) == (0.0, 1.0)
    rec = OnnxRecognizer(path)
    assert rec.norm == RAW_RGB and rec.embedding_size == 8
    assert _cosines(rec.embed(crops[:4]), np.concatenate([theirs.get_feat(c) for c in crops[:4]])).min() >= 0.9999


def test_other_training_normalisation_is_converted_in_the_export(crops, tmp_path):
    torch.manual_seed(0)
    config = RecognizerConfig(backbone="mobilefacenet", embedding_size=128, normalization="scrfd")
    backbone = create_backbone("mobilefacenet", embedding_size=128)
    save_recognizer(tmp_path, backbone, config)
    export_arcface_onnx(backbone, config, tmp_path / ONNX_FILE)
    ours = TorchRecognizer(tmp_path).embed(crops[:4])
    assert _cosines(OnnxRecognizer(tmp_path / ONNX_FILE).embed(crops[:4]), ours).min() >= 0.999


def test_bad_onnx_files_are_one_line_errors(shared_data, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    with pytest.raises(DataFormatError, match=r"broken\.onnx: not a loadable ONNX model") as info:
        load_face_recognizer(broken)
    assert "\n" not in str(info.value)
    detector = shared_data / "weights" / "scrfd_500m_kps" / "scrfd_500m_bnkps.onnx"
    with pytest.raises(DataFormatError, match="not an ArcFaceONNX recognizer .* and 9 outputs"):
        OnnxRecognizer(detector)


def test_insightface_crops_and_when_a_recognizer_needs_its_canvas():
    from facekit.recognition.export import insightface_template, needs_canvas

    # insightface's estimate_norm: sizes divisible by 112 scale the template by size / 112; others by size / 128
    # and shift it 8 size / 128 px to the right
    np.testing.assert_allclose(insightface_template(224), ARCFACE_DST * 2, rtol=0, atol=1e-4)
    np.testing.assert_allclose(insightface_template(128), ARCFACE_DST + [8, 0], rtol=0, atol=1e-4)
    assert insightface_template(150) is None
    assert not needs_canvas(RecognizerConfig(backbone="iresnet18"))
    assert needs_canvas(RecognizerConfig(backbone="dlib_resnet", embedding_size=128))  # 150, dlib's chips
    shifted = [[x + 1, y] for x, y in ARCFACE_DST]  # insightface would align it otherwise
    assert needs_canvas(RecognizerConfig(backbone="iresnet18", template=shifted))


def test_canvas_input_resamples_insightface_crops_onto_the_recognizers_own():
    """A recognizer whose template is ArcFace's at 112, wrapped: insightface's 256 crop of a face, resampled, is
    the 112 crop of that face (the grid is the exact similarity between two ArcFace templates)."""
    from facekit.align import align_face, template
    from facekit.recognition.export import CanvasInput, insightface_template

    rng = np.random.default_rng(0)
    photo = cv2.GaussianBlur(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8), (0, 0), 3)
    landmarks = template(112) * 1.7 + 40
    canvas = align_face(photo, landmarks, 256, insightface_template(256)).astype(np.float32)
    own = align_face(photo, landmarks, 112).astype(np.float32)
    wrapped = CanvasInput(torch.nn.Identity(), 112, template(112))
    resampled = wrapped(torch.from_numpy(canvas).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    assert np.abs(resampled - own)[8:-8, 8:-8].mean() < 0.5  # 0.004; a template 2 px off gives 4.1
