"""`facekit import-model arcface-torch`: an insightface/arcface_torch backbone.pth becomes a facekit recognizer
directory whose embeddings are arcface_torch's own (its reference code in ../shared/oracles); a .pth with other
keys is one line naming the file."""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from .helpers import clean_error

ORL = "faces/orl_aligned_112"


@pytest.fixture(scope="module")
def arcface_torch_backbones(shared_data):  # a module
    """arcface_torch's backbones package from ../shared/oracles (fails under CI=true when missing)."""
    root = shared_data.parent / "oracles/arcface_torch/backbones"
    if not (root / "__init__.py").is_file():
        message = f"arcface_torch reference code not found at {root}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    spec = importlib.util.spec_from_file_location("arcface_torch_backbones", root / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_backbone_pth_embeds_as_arcface_torch(cli, shared_data, arcface_torch_backbones, tmp_path):
    torch.manual_seed(0)
    theirs = arcface_torch_backbones.get_model("r18", num_features=128).eval()
    for module in theirs.modules():  # random running statistics, so that BatchNorm matters
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    pth = tmp_path / "backbone.pth"
    torch.save(theirs.state_dict(), pth)
    out = tmp_path / "r18"
    result = cli("import-model", "arcface-torch", pth, out, "--backbone", "iresnet18")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "model.pt", "recognizer.onnx"]
    from facekit.norms import ARCFACE
    from facekit.runtime.recognizer import load_face_recognizer

    crops = np.stack([cv2.imread(str(shared_data / ORL / f"s{p}/1.jpg")) for p in range(1, 9)])
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its forward wraps torch.cuda.amp.autocast(False), deprecated
        expected = theirs(torch.from_numpy(np.stack([ARCFACE(c) for c in crops]))).numpy()
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    for backend in ("torch", "onnx"):
        ours = load_face_recognizer(out, backend=backend)
        assert ours.embedding_size == 128
        assert (ours.embed(crops) * expected).sum(1).min() >= 0.9999, backend


def test_pth_with_other_keys_is_one_line(cli, shared_data, tmp_path):
    pth = shared_data / "weights/pytorch_retinaface_mnet025/mobilenet0.25_Final.pth"
    result = cli("import-model", "arcface-torch", pth, tmp_path / "out", "--backbone", "iresnet50")
    clean_error(result, 1, f"{pth}: weights do not fit IResNet: ", "missing (first 'conv1.weight')", "unexpected")
    assert not (tmp_path / "out").exists()
    assert Path(pth).is_file()
