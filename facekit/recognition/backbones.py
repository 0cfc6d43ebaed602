"""Recognition backbones: a registry of embedding networks whose parameter names are exactly arcface_torch's, so
the `backbone.pth` files of insightface's model zoo load with strict=True.

Every backbone maps aligned, normalised RGB crops [B, 3, 112, 112] (facekit.norms.ARCFACE) to embeddings [B, D],
not L2-normalised, except those that take other crops (INPUT_SIZES, TEMPLATES, NORMS: dlib's ResNet,
150x150 dlib chips normalised by facekit.norms.DLIB). All of them run in channels_last memory format too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facekit.align import DLIB_SIZE, DLIB_TEMPLATE
from facekit.errors import DataFormatError
from facekit.recognition.ghostfacenet import GhostFaceNet
from facekit.recognition.vit import VisionTransformer
from facekit.registry import Registry

BACKBONES: Registry[Callable[..., nn.Module]] = Registry("backbone")
INPUT_SIZES: dict[str, int] = {}  # the backbones whose crops are not facekit.align's ARCFACE_SIZE
TEMPLATES: dict[str, np.ndarray] = {}  # the backbones whose crops are not aligned to facekit.align's ArcFace template
NORMS: dict[str, str] = {}  # the backbones whose crops are not normalised by facekit.norms.ARCFACE


def create_backbone(name: str, *, embedding_size: int = 512, dropout: float = 0.0) -> nn.Module:
    """A freshly initialised registered backbone: `@BACKBONES.register()` adds a factory
    `(*, embedding_size, dropout) -> nn.Module` under its function name."""
    return BACKBONES[name](embedding_size=embedding_size, dropout=dropout)


# ---- IResNet (arcface_torch backbones/iresnet.py) -------------------------------------------------------------


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class IBasicBlock(nn.Module):
    """Improved residual block: BN, 3x3 conv, BN, PReLU, 3x3 conv (carrying the stride), BN, plus the shortcut
    (a strided 1x1 conv + BN as `downsample` when the shape changes). [B, cin, H, W] -> [B, cout, H/s, W/s]."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = _conv3x3(cin, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = _conv3x3(cout, cout, stride)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=1e-5))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """ArcFace's IResNet: 3x3 stem at full resolution, four stages of IBasicBlocks (64, 128, 256, 512 channels,
    each halving the size: 112 -> 7), then BN, flatten, dropout, fc and a BatchNorm1d `features` whose scale is
    fixed at 1 (arcface_torch freezes it)."""

    def __init__(self, layers: tuple[int, int, int, int], *, embedding_size: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv1 = _conv3x3(3, 64)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        self.layer1 = self._stage(64, 64, layers[0])
        self.layer2 = self._stage(64, 128, layers[1])
        self.layer3 = self._stage(128, 256, layers[2])
        self.layer4 = self._stage(256, 512, layers[3])
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(512 * 7 * 7, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-5)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.ones_(self.features.weight)
        self.features.weight.requires_grad = False

    @staticmethod
    def _stage(cin: int, cout: int, blocks: int) -> nn.Sequential:
        return nn.Sequential(IBasicBlock(cin, cout, 2), *(IBasicBlock(cout, cout) for _ in range(blocks - 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, 112, 112] -> [B, embedding_size]."""
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.bn2(x), 1)  # copies a channels_last tensor into NCHW order, as fc expects
        return self.features(self.fc(self.dropout(x)))


@BACKBONES.register()
def iresnet18(*, embedding_size: int = 512, dropout: float = 0.0) -> IResNet:
    return IResNet((2, 2, 2, 2), embedding_size=embedding_size, dropout=dropout)


@BACKBONES.register()
def iresnet34(*, embedding_size: int = 512, dropout: float = 0.0) -> IResNet:
    return IResNet((3, 4, 6, 3), embedding_size=embedding_size, dropout=dropout)


@BACKBONES.register()
def iresnet50(*, embedding_size: int = 512, dropout: float = 0.0) -> IResNet:
    return IResNet((3, 4, 14, 3), embedding_size=embedding_size, dropout=dropout)


@BACKBONES.register()
def iresnet100(*, embedding_size: int = 512, dropout: float = 0.0) -> IResNet:
    return IResNet((3, 13, 30, 3), embedding_size=embedding_size, dropout=dropout)


@BACKBONES.register()
def iresnet200(*, embedding_size: int = 512, dropout: float = 0.0) -> IResNet:
    return IResNet((6, 26, 60, 6), embedding_size=embedding_size, dropout=dropout)


# ---- MobileFaceNet (arcface_torch backbones/mobilefacenet.py, "mbf") ---------------------------------------------


class ConvBlock(nn.Module):
    """Conv (no bias), BN, PReLU; kept in `layers` for arcface_torch's names."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.PReLU(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class LinearBlock(nn.Module):
    """Conv (no bias) and BN, no activation."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False), nn.BatchNorm2d(cout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DepthWise(nn.Module):
    """Inverted bottleneck: 1x1 expand to `groups` channels, 3x3 depthwise (carrying the stride), 1x1 linear
    projection; with `residual` the input is added back."""

    def __init__(self, cin: int, cout: int, *, groups: int, stride: int = 2, residual: bool = False) -> None:
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBlock(cin, groups),
            ConvBlock(groups, groups, 3, stride, 1, groups=groups),
            LinearBlock(groups, cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x) if self.residual else self.layers(x)


class Residual(nn.Module):
    """`blocks` stride-1 residual DepthWise blocks at constant width."""

    def __init__(self, channels: int, blocks: int, *, groups: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *(DepthWise(channels, channels, groups=groups, stride=1, residual=True) for _ in range(blocks))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class GDC(nn.Module):
    """Global depthwise conv head: 7x7 depthwise LinearBlock, flatten, Linear (no bias), BatchNorm1d."""

    def __init__(self, embedding_size: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            LinearBlock(512, 512, kernel=7, groups=512),
            nn.Flatten(),
            nn.Linear(512, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MobileFaceNet(nn.Module):
    """arcface_torch's MobileFaceNet ("mbf": width scale 2, blocks 1, 4, 6, 2): 112 -> 7 in four stride-2 steps,
    a 1x1 conv to 512 channels and the GDC head."""

    def __init__(self, *, embedding_size: int = 512) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [
                ConvBlock(3, 128, 3, 2, 1),
                ConvBlock(128, 128, 3, 1, 1, groups=64),
                DepthWise(128, 128, groups=128),
                Residual(128, 4, groups=128),
                DepthWise(128, 256, groups=256),
                Residual(256, 6, groups=256),
                DepthWise(256, 256, groups=512),
                Residual(256, 2, groups=256),
            ]
        )
        self.conv_sep = ConvBlock(256, 512)
        self.features = GDC(embedding_size)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, 112, 112] -> [B, embedding_size]."""
        for layer in self.layers:
            x = layer(x)
        return self.features(self.conv_sep(x))


@BACKBONES.register()
def mobilefacenet(*, embedding_size: int = 512, dropout: float = 0.0) -> MobileFaceNet:
    if dropout:
        raise ValueError("mobilefacenet has no dropout layer; use dropout=0")
    return MobileFaceNet(embedding_size=embedding_size)


# ---- GhostFaceNetV1 (Alansari et al. 2023; the model is facekit/recognition/ghostfacenet.py) ---------------------
# width 1.3, stem stride 1: the paper's most accurate V1 (GhostFaceNetV1-1.3-1), whose GDC sees a 7x7 map.


@BACKBONES.register()
def ghostfacenet(*, embedding_size: int = 512, dropout: float = 0.0) -> GhostFaceNet:
    return GhostFaceNet(width=1.3, stem_stride=1, embedding_size=embedding_size, dropout=dropout)


# ---- ViT (arcface_torch backbones/__init__.py's vit_t, vit_s, vit_b; the model is facekit/recognition/vit.py) ----
# 112x112 ArcFace crops cut into 9x9 patches; drop_path (stochastic depth) and mask_ratio (random token dropping)
# are arcface_torch's training-time settings for each name and act in train mode only.


def _vit(embed_dim: int, depth: int, checkpointing: bool = False) -> Callable[..., VisionTransformer]:
    """A ViT factory of one width and depth, 8 heads, with arcface_torch's training-time settings as defaults."""

    def factory(
        *, embedding_size: int = 512, dropout: float = 0.0, drop_path: float = 0.1, mask_ratio: float = 0.1
    ) -> VisionTransformer:
        return VisionTransformer(
            embed_dim=embed_dim, depth=depth, num_heads=8, embedding_size=embedding_size, dropout=dropout,
            drop_path=drop_path, mask_ratio=mask_ratio, checkpointing=checkpointing,
        )  # fmt: skip

    return factory


BACKBONES.add("vit_t", _vit(256, 12))  # width 256, 12 blocks
BACKBONES.add("vit_s", _vit(512, 12))  # width 512, 12 blocks
BACKBONES.add("vit_b", _vit(512, 24, checkpointing=True))  # 24 blocks, activation checkpointing (as arcface_torch)


# ---- dlib's face recognition ResNet (dlib_face_recognition_resnet_model_v1.dat; dnn_face_recognition_ex.cpp) ----


class Affine(nn.Module):
    """dlib's `affine_` layer, a batch norm folded into a per-channel scale and shift: [B, C, H, W] -> same."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class DlibResidual(nn.Module):
    """dlib's `ares` block, relu(affine(conv3x3(relu(affine(conv3x3(x))))) + x), or with `down` its `ares_down`:
    the first conv strides 2 without padding (dlib pads stride-1 convs only), the shortcut is a 2x2 average pool,
    and dlib's add_prev sums tensors of different shapes by zero-filling each at the end of every axis: the pooled
    shortcut's missing channels, and `fill` rows and columns of the block's output (1 when the input size is even:
    the conv makes H / 2 - 1, the pool H / 2). [B, cin, H, W] -> [B, cout, H', W'] with H' = H or H // 2."""

    def __init__(self, cin: int, cout: int, *, down: bool = False, fill: int = 0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, 2 if down else 1, 0 if down else 1)
        self.affine1 = Affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.affine2 = Affine(cout)
        self.pool = nn.AvgPool2d(2, 2) if down else nn.Identity()
        self.extra_channels, self.fill = cout - cin, fill

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        out = _zero_fill(_zero_fill(out, 2, self.fill), 3, self.fill)
        return F.relu(out + _zero_fill(self.pool(x), 1, self.extra_channels))


def _zero_fill(x: torch.Tensor, dim: int, count: int) -> torch.Tensor:
    """`x` with `count` (at most its size) zero slices appended along `dim`; F.pad would do, but its ONNX export
    warns (facekit's tests turn warnings into errors)."""
    return torch.cat([x, torch.zeros_like(x.narrow(dim, 0, count))], dim) if count else x


class DlibResNet(nn.Module):
    """dlib's face recognition ResNet-29 (`anet_type` of dlib's dnn_face_recognition_ex.cpp) for RGB 150x150
    chips normalised as facekit.norms.DLIB: a 7x7/2 conv (32), affine, relu and 3x3/2 max pool (150 -> 72 -> 35),
    residual stages of 32 (3 blocks), 64 (4), 128 (3), 256 (3) and 256 (1) channels, each but the first halving
    the size (35 -> 17 -> 8 -> 4 -> 2), a global average pool and a bias-free fc to `embedding_size` (dlib: 128).
    Like dlib's input_rgb_image_sized<150>, it takes that one size only."""

    STAGES = ((32, 3), (64, 4), (128, 3), (256, 3), (256, 1))

    def __init__(self, *, embedding_size: int = 128, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 7, 2, 0)
        self.affine1 = Affine(32)
        self.pool = nn.MaxPool2d(3, 2)
        blocks, cin, size = [], 32, 35
        for stage, (cout, count) in enumerate(self.STAGES):
            if stage:  # a downsampling block, then `count - 1` plain ones
                fill = size // 2 - ((size - 3) // 2 + 1)
                blocks.append(DlibResidual(cin, cout, down=True, fill=fill))
                size //= 2
            blocks += [DlibResidual(cout, cout) for _ in range(count - bool(stage))]
            cin = cout
        self.layers = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, embedding_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, 150, 150] -> [B, embedding_size], not L2-normalised."""
        x = self.layers(self.pool(F.relu(self.affine1(self.conv1(x)))))
        return self.fc(self.dropout(x.mean(dim=(2, 3))))


@BACKBONES.register()
def dlib_resnet(*, embedding_size: int = 128, dropout: float = 0.0) -> DlibResNet:
    return DlibResNet(embedding_size=embedding_size, dropout=dropout)


# the .dat's chips
INPUT_SIZES["dlib_resnet"], TEMPLATES["dlib_resnet"], NORMS["dlib_resnet"] = DLIB_SIZE, DLIB_TEMPLATE, "dlib"

# ---- weights ----------------------------------------------------------------------------------------------------


def load_backbone_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Initialise `model` from an arcface_torch `backbone.pth` (a plain state dict, keys optionally `module.`-
    prefixed), an arcface_torch training checkpoint (`state_dict_backbone`) or a facekit recognizer model."""
    from facekit.modeldir import apply_state_dict, is_facekit_model, load_model, read_torch_file

    file = Path(path)
    obj = read_torch_file(file)  # torch.load(weights_only=True), one-line errors
    if is_facekit_model(obj):
        obj = load_model(file, "recognizer", obj)["state_dict"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict_backbone"), dict):
        obj = obj["state_dict_backbone"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DataFormatError(f"{file}: expected a backbone state dict of tensors (arcface_torch backbone.pth)")
    apply_state_dict(
        model, {str(k).removeprefix("module."): v for k, v in obj.items()}, file, f"do not fit {type(model).__name__}"
    )
