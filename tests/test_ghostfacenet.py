"""GhostFaceNetV1-1.3-1 (`--backbone ghostfacenet`): shapes, the paper's size and cost, determinism, its ONNX export
as insightface loads it, and a training run through the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from facekit.recognition.backbones import create_backbone
from facekit.recognition.ghostfacenet import GhostFaceNet


def mega_flops(model: nn.Module, size: int = 112) -> float:
    """Multiply-accumulates of the convs and linear layers for one [1, 3, size, size] image, in millions."""
    total = 0

    def count(module: nn.Module, _: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += out[0].numel() * module.in_channels // module.groups * kh * kw
        else:
            total += module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    return total / 1e6


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("embedding_size", [512, 128])
def test_embeddings_shape(embedding_size):
    torch.manual_seed(0)
    model = create_backbone("ghostfacenet", embedding_size=embedding_size)
    out = model(torch.randn(3, 3, 112, 112))  # train mode
    assert out.shape == (3, embedding_size) and bool(out.isfinite().all())
    assert model.fc.out_features == model.features.num_features == embedding_size


def test_size_and_cost_match_the_paper():
    """The paper's abstract puts GhostFaceNets at 60-275 MFLOPs, the V1 models at the low end (about 4 M
    parameters). Ours, convs and linear layers only (BN, PReLU and the SE products are the rest): 4.06 M / 211.9
    MFLOPs at stem stride 1, 4.04 M / 59.3 at stride 2. MobileFaceNet ("mbf"): 2.06 M / 437.5."""
    model = create_backbone("ghostfacenet")
    assert 4.0e6 < params(model) < 4.2e6
    assert 200 < mega_flops(model) < 225
    stride2 = GhostFaceNet(stem_stride=2)
    assert 4.0e6 < params(stride2) < 4.1e6 and 55 < mega_flops(stride2) < 65
    assert stride2.gdc[0].kernel_size == (4, 4) and model.gdc[0].kernel_size == (7, 7)  # 'same' strides: 7 -> 4


def test_eval_mode_is_deterministic():
    torch.manual_seed(0)
    model = create_backbone("ghostfacenet").eval()
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        first, second = model(x), model(x)
        alone = model(x[:1])
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    torch.testing.assert_close(alone, first[:1], rtol=1e-4, atol=1e-5)  # no batch statistics in eval mode


def test_onnx_export_matches_torch_and_insightface_routes_it(tmp_path):
    import onnxruntime as ort
    from insightface.model_zoo import get_model

    from facekit.recognition.config import RecognizerConfig
    from facekit.recognition.export import export_arcface_onnx

    torch.manual_seed(0)
    model = create_backbone("ghostfacenet")
    with torch.no_grad():  # a trained-looking BN state, so the comparison is not dominated by fresh statistics
        model.train()(torch.randn(8, 3, 112, 112))
    config = RecognizerConfig(backbone="ghostfacenet")
    path = export_arcface_onnx(model, config, tmp_path / "recognizer.onnx")
    x = torch.randn(4, 3, 112, 112)
    with torch.no_grad():
        ours = model.eval()(x).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (theirs,) = session.run(None, {"input.1": x.numpy()})
    cosines = np.sum(ours * theirs, 1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert theirs.shape == (4, 512) and cosines.min() >= 0.999
    routed = get_model(str(path), providers=["CPUExecutionProvider"])
    assert type(routed).__name__ == "ArcFaceONNX" and routed.input_size == (112, 112)


@pytest.mark.slow  # 90-135 s on 2 shared CPU cores (3 steps of 100 crops, the validation .bin)
def test_ghostfacenet_trains_through_the_cli(cli, shared_data, tmp_path):
    """Two steps of 20 images of `train-recognize --backbone ghostfacenet` on the ORL training layout (stopped with
    --stop-at-step, which still writes the model): a model folder whose recognizer.onnx insightface loads, a finite
    loss."""
    from insightface.model_zoo import get_model

    out = tmp_path / "model"
    args = ["--backbone", "ghostfacenet", "--embedding-size", 32, "--batch-size", 20, "--stop-at-step", 2]
    args += ["--workers", 0, "--no-augment", "--no-flip"]
    result = cli("train-recognize", shared_data / "layouts/recognition_train_data", out, *args)
    assert result.exit_code == 0, result.output
    assert {"model.pt", "config.yaml", "metrics.json", "recognizer.onnx"} <= {p.name for p in out.iterdir()}
    assert "backbone: ghostfacenet" in (out / "config.yaml").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and math.isfinite(metrics["final"]["loss"])
    assert type(get_model(str(out / "recognizer.onnx"), providers=["CPUExecutionProvider"])).__name__ == "ArcFaceONNX"
