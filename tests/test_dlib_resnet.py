"""`import-model dlib-resnet` against the real dlib: the imported network (PyTorch and its ONNX export) embeds the
same 150x150 chips as dlib's own compute_face_descriptor, on ORL and CelebA photos; and the model directory is a
facekit recognizer like any other (config, fingerprint, ONNX at the model's own size)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from dlib_env import dlib_models, run_dlib

from facekit.runtime.recognizer import load_face_recognizer

pytestmark = pytest.mark.slow

DLIB_DESCRIPTORS = """
import sys
import dlib
import numpy as np

model = dlib.face_recognition_model_v1(sys.argv[1])
chips = np.load(sys.argv[2])  # RGB uint8 [N, 150, 150, 3]
np.save(sys.argv[3], np.array(model.compute_face_descriptor(list(chips)), np.float32))
"""


def _chips(paths: list[Path]) -> np.ndarray:
    """BGR uint8 [N, 150, 150, 3]: each photo's centred square, resized (a check of the network, not alignment)."""
    chips = []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        h, w = image.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        chips.append(cv2.resize(image[top : top + side, left : left + side], (150, 150), interpolation=cv2.INTER_AREA))
    return np.stack(chips)


def test_import_writes_a_150px_dlib_recognizer(dlib_dir):
    assert sorted(p.name for p in dlib_dir.iterdir()) == ["config.yaml", "model.pt", "recognizer.onnx"]
    config = yaml.safe_load((dlib_dir / "config.yaml").read_text())
    assert config["backbone"] == "dlib_resnet" and config["embedding_size"] == 128
    assert config["input_size"] == 150 and config["normalization"] == "dlib"
    torch_model, onnx_model = load_face_recognizer(dlib_dir), load_face_recognizer(dlib_dir, backend="onnx")
    assert (onnx_model.input_size, onnx_model.embedding_size) == (150, 128)
    assert onnx_model.fingerprint == torch_model.fingerprint  # one model, two forms: galleries accept both


@pytest.mark.parametrize(("folder", "people"), [("orl", "s*"), ("celeba_subset", "74[5-9]?")])
def test_dlib_equivalence(dlib_dir, shared_data, tmp_path, folder, people):
    """cosine >= 0.999 with dlib's descriptor for every chip, through PyTorch and through the ONNX export: the
    first photo of 20 ORL people and of 20 CelebA evaluation people (dlib takes about 0.4 s a chip here)."""
    paths = [min(person.iterdir()) for person in sorted((shared_data / "faces" / folder).glob(people))[:20]]
    assert len(paths) == 20
    chips = _chips(paths)
    np.save(tmp_path / "chips.npy", chips[..., ::-1])  # dlib takes RGB
    dat = dlib_models() / "dlib_face_recognition_resnet_model_v1.dat"
    run_dlib(DLIB_DESCRIPTORS, dat, tmp_path / "chips.npy", tmp_path / "dlib.npy")
    reference = np.load(tmp_path / "dlib.npy")
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    for backend in ("torch", "onnx"):
        cosine = (load_face_recognizer(dlib_dir, backend=backend).embed(chips) * reference).sum(1)
        assert cosine.min() >= 0.999, (backend, cosine.min(), paths[int(cosine.argmin())])
