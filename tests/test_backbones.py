"""Every registered recognition backbone runs forward and backward in both memory formats; the IResNets carry
arcface_torch's exact parameter names and sizes, so its backbone.pth files load strictly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facekit.align import ARCFACE_SIZE
from facekit.errors import DataFormatError
from facekit.recognition.backbones import BACKBONES, INPUT_SIZES, create_backbone, load_backbone_weights
from facekit.recognition.config import RecognizerConfig

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@pytest.mark.parametrize(
    "name",  # the deep iresnets and the ViTs are slow; the shallow iresnets run the same blocks in make check, and
    # test_oracle_arcface_torch.py's vit_t forward and train step the ViT's
    [
        pytest.param(n, marks=pytest.mark.slow) if n in ("iresnet100", "iresnet200", "vit_t", "vit_s", "vit_b") else n
        for n in sorted(BACKBONES)
    ],
)
def test_backbone_forward_backward_channels_last(name):
    torch.manual_seed(0)
    model = create_backbone(name, embedding_size=128)  # train mode: a fresh IResNet overflows in eval mode
    size = INPUT_SIZES.get(name, ARCFACE_SIZE)
    x = torch.randn(2, 3, size, size)
    torch.manual_seed(1)  # the ViTs' token masking and stochastic depth draw the same in both runs
    out = model(x)
    assert out.shape == (2, 128)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    torch.manual_seed(1)
    with torch.no_grad():
        last = model.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
    out = out.detach()
    assert bool(out.isfinite().all()) and float(torch.cosine_similarity(last, out, dim=1).min()) > 0.9999


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown backbone 'vgg'; known: dlib_resnet, ghostfacenet, iresnet100"):
        create_backbone("vgg")
    with pytest.raises(ValueError, match="unknown backbone 'vgg'"):
        RecognizerConfig(backbone="vgg")


def _iresnet_keys(blocks: tuple[int, int, int, int]) -> list[str]:
    """arcface_torch's IResNet state-dict keys, written out from its module names."""
    keys = ["conv1.weight", *(f"bn1.{s}" for s in BN), "prelu.weight"]
    for stage, count in enumerate(blocks, 1):
        for b in range(count):
            p = f"layer{stage}.{b}"
            keys += [f"{p}.bn1.{s}" for s in BN] + [f"{p}.conv1.weight"] + [f"{p}.bn2.{s}" for s in BN]
            keys += [f"{p}.prelu.weight", f"{p}.conv2.weight"] + [f"{p}.bn3.{s}" for s in BN]
            if b == 0:
                keys += [f"{p}.downsample.0.weight"] + [f"{p}.downsample.1.{s}" for s in BN]
    return keys + [f"bn2.{s}" for s in BN] + ["fc.weight", "fc.bias"] + [f"features.{s}" for s in BN]


def test_iresnet50_matches_arcface_torch():
    model = create_backbone("iresnet50")
    state = model.state_dict()
    assert list(state) == _iresnet_keys((3, 4, 14, 3))
    assert state["fc.weight"].shape == (512, 512 * 7 * 7)
    assert state["layer3.0.downsample.0.weight"].shape == (256, 128, 1, 1)
    assert sum(p.numel() for p in model.parameters()) == 43_590_848  # w600k_r50 / ms1mv3_arcface_r50: 43.6M
    assert not model.features.weight.requires_grad and bool((model.features.weight == 1).all())


@pytest.mark.slow  # quick: test_oracle_arcface_torch.py loads arcface_torch's mobilefacenet strictly
def test_iresnet18_34_100_and_mobilefacenet_keys():
    for name, blocks in [("iresnet18", (2, 2, 2, 2)), ("iresnet34", (3, 4, 6, 3)), ("iresnet100", (3, 13, 30, 3))]:
        assert list(create_backbone(name).state_dict()) == _iresnet_keys(blocks), name
    mbf = create_backbone("mobilefacenet").state_dict()
    for key in [
        "layers.0.layers.0.weight",  # stem ConvBlock: conv, bn, prelu
        "layers.1.layers.2.weight",
        "layers.2.layers.0.layers.0.weight",  # DepthWise -> ConvBlock -> conv
        "layers.3.layers.3.layers.2.layers.1.running_var",  # Residual -> DepthWise 3 -> LinearBlock -> bn
        "conv_sep.layers.2.weight",
        "features.layers.0.layers.0.weight",  # GDC: 7x7 depthwise LinearBlock, flatten, linear, bn1d
        "features.layers.2.weight",
        "features.layers.3.running_mean",
    ]:
        assert key in mbf, key
    assert mbf["features.layers.2.weight"].shape == (512, 512) and "features.layers.2.bias" not in mbf


def test_load_backbone_weights_round_trip(tmp_path):
    torch.manual_seed(1)
    source = create_backbone("iresnet18", embedding_size=64)
    file = tmp_path / "backbone.pth"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, file)  # as saved from DDP
    target = create_backbone("iresnet18", embedding_size=64)
    load_backbone_weights(target, file)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_load_backbone_weights_mismatch_is_one_line(tmp_path):
    file = tmp_path / "r18.pth"
    torch.save(create_backbone("iresnet18").state_dict(), file)
    with pytest.raises(DataFormatError, match=r"r18\.pth: weights do not fit IResNet: 120 missing") as info:
        load_backbone_weights(create_backbone("iresnet34"), file)
    assert "\n" not in str(info.value)
    with pytest.raises(DataFormatError, match=r"'fc.weight' is \[512, 25088\] in the file, \[128, 25088\]"):
        load_backbone_weights(create_backbone("iresnet18", embedding_size=128), file)
    torch.save({"epoch": 3}, file)
    with pytest.raises(DataFormatError, match="expected a backbone state dict"):
        load_backbone_weights(create_backbone("iresnet18"), file)


def test_config_round_trip_and_template():
    config = RecognizerConfig(backbone="mobilefacenet", threshold=np.float64(0.3))  # as calibration returns it
    assert type(config.threshold) is float
    assert config.template[0] == (38.2946, 51.6963)
    assert config.as_dict()["template"][4] == [70.7299, 92.2041]
    assert RecognizerConfig.from_dict({"kind": "recognizer", **config.as_dict()}) == config
    with pytest.raises(ValueError, match="threshold"):
        RecognizerConfig(threshold=1.5)


@pytest.mark.slow  # ~45 s on 2 shared CPU cores; quick: test_oracle_arcface_torch.py's vit_t forward and train step
def test_vit_t_trains_through_the_cli_and_exports_onnx(cli, shared_data, tmp_path):
    """Three steps of `train-recognize --backbone vit_t` on 36 ORL crops; its recognizer.onnx (traced in eval mode,
    no masking) embeds like the torch model."""
    import shutil

    import cv2
    from insightface.model_zoo import get_model

    from facekit.runtime.recognizer import load_face_recognizer

    data = tmp_path / "three"
    for person in range(1, 4):
        shutil.copytree(shared_data / f"faces/orl_aligned_112/s{person}", data / f"s{person}")
    out = tmp_path / "model"
    args = ["--backbone", "vit_t", "--embedding-size", 32, "--workers", 0, "--batch-size", 10, "--epochs", 1]
    result = cli("train-recognize", data, out, *args, "--no-augment")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text())["steps"] == 3
    faces = np.stack([cv2.imread(str(shared_data / f"faces/orl_aligned_112/s40/{i}.jpg")) for i in range(1, 5)])
    ours = load_face_recognizer(out).embed(faces)
    onnx_model = get_model(str(out / "recognizer.onnx"), providers=["CPUExecutionProvider"])
    theirs = np.stack([onnx_model.get_feat(face)[0] for face in faces])
    theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
    assert (np.sum(ours * theirs, 1) >= 0.999).all()
