"""GhostFaceNetV1 (Alansari et al., "GhostFaceNets: Lightweight Face Recognition Model From Cheap Operations",
IEEE Access 2023): GhostNetV1 (Han et al., CVPR 2020) for 112x112 ArcFace crops, every ReLU a per-channel PReLU,
the ImageNet classifier replaced by the modified GDC head (a depthwise conv over the whole final map, BN, a 1x1
conv to the embedding, BN).

Built as the authors' public Keras code builds it (GhostFaceNets.py `buildin_models("ghostnetv1")` with
bn_momentum 0.9, bn_epsilon 1e-5, then `replace_ReLU_with_PReLU`): ghost modules of `out // 2` primary channels
and as many cheap ones, SE blocks gated by Keras's hard sigmoid clip(0.2 x + 0.5, 0, 1), and a depthwise + 1x1
shortcut in every block whose shape changes.
"""

from __future__ import annotations

import torch
from torch import nn

# GhostNetV1's 16 bottlenecks (Han et al., Table 1): depthwise kernel, stride, expansion and output channels at
# width 1, squeeze-and-excitation ratio; as in GhostFaceNets' Keras code the last expands to 512, not 960.
STAGES: tuple[tuple[int, int, int, int, float], ...] = (
    (3, 1, 16, 16, 0.0),
    (3, 2, 48, 24, 0.0),
    (3, 1, 72, 24, 0.0),
    (5, 2, 72, 40, 0.25),
    (5, 1, 120, 40, 0.25),
    (3, 2, 240, 80, 0.0),
    (3, 1, 200, 80, 0.0),
    (3, 1, 184, 80, 0.0),
    (3, 1, 184, 80, 0.0),
    (3, 1, 480, 112, 0.25),
    (3, 1, 672, 112, 0.25),
    (5, 2, 672, 160, 0.25),
    (5, 1, 960, 160, 0.0),
    (5, 1, 960, 160, 0.25),
    (5, 1, 960, 160, 0.0),
    (5, 1, 512, 160, 0.25),
)
LAST_CHANNELS = 512  # the 1x1 conv before the head, at width 1 (GhostNetV1: 960; GhostFaceNets: the last expansion)


def make_divisible(value: float, divisor: int = 4) -> int:
    """`value` rounded to the nearest multiple of `divisor` (at least `divisor`), never more than 10 % below it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn(cin: int, cout: int, kernel: int = 1, stride: int = 1, *, depthwise: bool = False) -> list[nn.Module]:
    """A bias-free 'same'-padded conv (depthwise when `depthwise`, then cin == cout) and its BatchNorm."""
    groups = cin if depthwise else 1
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]


class GhostModule(nn.Module):
    """Half the output from a 1x1 conv, the other half from a cheap 3x3 depthwise conv of that half, concatenated:
    [B, cin, H, W] -> [B, cout, H, W]; BN after each conv, PReLU too when `act`."""

    def __init__(self, cin: int, cout: int, *, act: bool) -> None:
        super().__init__()
        half = cout // 2  # cout is a multiple of 4
        self.primary = nn.Sequential(*conv_bn(cin, half), *([nn.PReLU(half)] if act else []))
        self.cheap = nn.Sequential(*conv_bn(half, half, 3, depthwise=True), *([nn.PReLU(half)] if act else []))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.primary(x)
        return torch.cat([x, self.cheap(x)], 1)


class SqueezeExcite(nn.Module):
    """Channel gates from the global mean: 1x1 conv to `reduced`, PReLU, 1x1 conv back, Keras's hard sigmoid.
    [B, C, H, W] -> same."""

    def __init__(self, channels: int, ratio: float) -> None:
        super().__init__()
        reduced = make_divisible(channels * ratio)
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.act = nn.PReLU(reduced)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.expand(self.act(self.reduce(x.mean((2, 3), keepdim=True))))
        return x * torch.clamp(0.2 * gate + 0.5, 0.0, 1.0)  # exports as ONNX HardSigmoid's defaults


class GhostBottleneck(nn.Module):
    """Ghost module (expand, PReLU), a strided depthwise conv + BN when `stride` is 2, SE when `se` > 0, a linear
    ghost module (project), plus the input, through a depthwise conv + BN + 1x1 conv + BN when the shape changes.
    [B, cin, H, W] -> [B, cout, ceil(H / stride), ceil(W / stride)]."""

    def __init__(self, cin: int, cout: int, *, kernel: int, stride: int, expand: int, se: float) -> None:
        super().__init__()
        layers: list[nn.Module] = [GhostModule(cin, expand, act=True)]
        if stride > 1:
            layers += conv_bn(expand, expand, kernel, stride, depthwise=True)
        if se > 0:
            layers.append(SqueezeExcite(expand, se))
        layers.append(GhostModule(expand, cout, act=False))
        self.layers = nn.Sequential(*layers)
        self.shortcut = (
            nn.Sequential(*conv_bn(cin, cin, kernel, stride, depthwise=True), *conv_bn(cin, cout))
            if stride > 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x) + self.shortcut(x)


class GhostFaceNet(nn.Module):
    """GhostFaceNetV1-`width`-`stem_stride`: a 3x3 stem (PReLU), GhostNetV1's 16 bottlenecks (four of them halve
    the size), a 1x1 conv + BN + PReLU to 512 x width channels, and the GDC head: a depthwise conv as large as the
    final map (7x7 for 112x112 input at stem stride 1, 4x4 at stride 2), BN, dropout, a bias-free linear layer
    (the paper's 1x1 conv) and a BatchNorm1d."""

    def __init__(
        self, *, width: float = 1.3, stem_stride: int = 1, input_size: int = 112, embedding_size: int = 512,
        dropout: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__()
        channels = make_divisible(16 * width)
        self.stem = nn.Sequential(*conv_bn(3, channels, 3, stem_stride), nn.PReLU(channels))
        blocks, size = [], -(-input_size // stem_stride)
        for kernel, stride, expand, out, se in STAGES:
            out, expand = make_divisible(out * width), make_divisible(expand * width)
            blocks.append(GhostBottleneck(channels, out, kernel=kernel, stride=stride, expand=expand, se=se))
            channels, size = out, -(-size // stride)
        self.blocks = nn.Sequential(*blocks)
        last = make_divisible(LAST_CHANNELS * width)
        self.conv = nn.Sequential(*conv_bn(channels, last), nn.PReLU(last))
        self.gdc = nn.Sequential(*conv_bn(last, last, size, depthwise=True))
        self.gdc[0].padding = (0, 0)  # 'valid': one value per channel
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(last, embedding_size, bias=False)
        self.features = nn.BatchNorm1d(embedding_size)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")  # Keras: VarianceScaling(2)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.PReLU):
                nn.init.constant_(m.weight, 0.25)
        nn.init.xavier_normal_(self.fc.weight)  # Keras: glorot_normal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, 112, 112] -> [B, embedding_size], not L2-normalised."""
        x = self.gdc(self.conv(self.blocks(self.stem(x))))
        return self.features(self.fc(self.dropout(torch.flatten(x, 1))))
