"""MTCNN (Zhang et al., 2016): the three nets of the cascade, its settings, its box geometry, and the import of the
weights facenet-pytorch ships (`facenet_pytorch/data/{pnet,rnet,onet}.pt`, MIT licence, converted from the authors'
Caffe models). The cascade itself runs in facekit.runtime.mtcnn.

The nets take RGB `(pixel - 127.5) / 128` (the "scrfd" normalisation) as facenet-pytorch feeds them. Their weights
were converted for images seen transposed (Caffe's column-major origin), which is why R-Net and O-Net flatten their
last feature map as [N, W, H, C] before the dense layers.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from facekit.errors import DataFormatError, MissingDataError
from facekit.modeldir import apply_state_dict, read_torch_file, save_model
from facekit.norms import NORMALIZATIONS, Normalization

ARCHITECTURE = "mtcnn"
STAGES = {"pnet": "P-Net", "rnet": "R-Net", "onet": "O-Net"}
WHEEL_FOLDER = "facenet_pytorch/data"
CELL, STRIDE = 12, 2  # P-Net sees 12x12 windows every 2 pixels


@dataclass(frozen=True)
class MtcnnConfig:
    """min_face_size: smallest face side searched for (pixels of the image the cascade sees); factor: scale step of
    the image pyramid; thresholds: face probability each stage keeps (P-Net, R-Net, O-Net); nms: IoU above which a
    weaker box goes (P-Net within one scale, P-Net across scales, R-Net, O-Net: there over the smaller box's area)."""

    architecture: str = ARCHITECTURE
    min_face_size: int = 20
    factor: float = 0.709
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    nms: tuple[float, float, float, float] = (0.5, 0.7, 0.7, 0.7)
    normalization: str = "scrfd"

    def __post_init__(self) -> None:
        if self.architecture != ARCHITECTURE:
            raise ValueError(f"architecture is {self.architecture!r}, expected {ARCHITECTURE!r}")
        if self.min_face_size < CELL:
            raise ValueError(f"min_face_size is {self.min_face_size}, expected {CELL} or more (pixels)")
        if not 0.1 <= self.factor < 1:
            raise ValueError(f"factor is {self.factor}, expected at least 0.1 and under 1")
        if len(self.thresholds) != 3 or len(self.nms) != 4 or not all(0 <= v <= 1 for v in self.thresholds + self.nms):
            raise ValueError("expected 3 thresholds and 4 NMS overlaps, each from 0 to 1")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {self.normalization!r}; known: {', '.join(NORMALIZATIONS)}")

    @property
    def norm(self) -> Normalization:
        return NORMALIZATIONS[self.normalization]

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> MtcnnConfig:
        known = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in known.items()})


class PNet(nn.Module):
    """Proposal net, fully convolutional: [N, 3, H, W] -> box offsets [N, 4, h, w] and face probability [N, h, w],
    one 12x12 window every 2 pixels (h = ceil((H - 2) / 2) - 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = nn.functional.max_pool2d(self.prelu1(self.conv1(x)), 2, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), self.conv4_1(x).softmax(1)[:, 1]


class RNet(nn.Module):
    """Refinement net: 24x24 crops [N, 3, 24, 24] -> box offsets [N, 4] and face probability [N]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = nn.functional.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = nn.functional.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = self.prelu3(self.conv3(x)).permute(0, 3, 2, 1).flatten(1)
        x = self.prelu4(self.dense4(x))
        return self.dense5_2(x), self.dense5_1(x).softmax(1)[:, 1]


class ONet(nn.Module):
    """Output net: 48x48 crops [N, 3, 48, 48] -> box offsets [N, 4], landmarks [N, 10] (5 x, then 5 y, as fractions
    of the crop) and face probability [N]."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = nn.functional.max_pool2d(self.prelu1(self.conv1(x)), 3, 2, ceil_mode=True)
        x = nn.functional.max_pool2d(self.prelu2(self.conv2(x)), 3, 2, ceil_mode=True)
        x = nn.functional.max_pool2d(self.prelu3(self.conv3(x)), 2, 2, ceil_mode=True)
        x = self.prelu4(self.conv4(x)).permute(0, 3, 2, 1).flatten(1)
        x = self.prelu5(self.dense5(x))
        return self.dense6_2(x), self.dense6_3(x), self.dense6_1(x).softmax(1)[:, 1]


class Mtcnn(nn.Module):
    """The three nets; the cascade that chains them is facekit.runtime.mtcnn.MtcnnDetector."""

    def __init__(self) -> None:
        super().__init__()
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()


def pyramid_scales(height: int, width: int, min_face_size: int, factor: float) -> list[float]:
    """Scales at which P-Net's 12-pixel window covers faces of min_face_size and up: 12 / min_face_size, times
    factor each step, while the shorter side stays at least 12 pixels."""
    scale, scales = CELL / min_face_size, []
    while min(height, width) * scale >= CELL:
        scales.append(scale)
        scale *= factor
    return scales


def window_boxes(probs: torch.Tensor, threshold: float, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """P-Net's map of face probabilities [h, w] at one scale -> (its windows scoring >= threshold as corner boxes
    [K, 4] in image pixels, their (row, column) positions [K, 2])."""
    positions = (probs >= threshold).nonzero()
    xy = positions.flip(1).to(torch.float32) * STRIDE
    return torch.cat([xy, xy + CELL], 1) / scale, positions


def calibrate(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Apply a stage's box regression: corners [N, 4] moved by offsets [N, 4] in units of the box's width and
    height."""
    size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    return boxes + offsets * size


def square(boxes: torch.Tensor) -> torch.Tensor:
    """The square of side max(width, height) with each box's centre [N, 4] (the next stage's crop)."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).max(1, keepdim=True).values / 2
    return torch.cat([centre - half, centre + half], 1)


def read_facenet_pytorch(source: str | os.PathLike) -> Mtcnn:
    """The nets with facenet-pytorch's weights, from its wheel (any zip holding facenet_pytorch/data/{pnet,rnet,
    onet}.pt) or from a folder holding pnet.pt, rnet.pt and onet.pt. A file that does not fit is one line naming it."""
    source = Path(source)
    if source.is_dir():
        files = {stage: source / f"{stage}.pt" for stage in STAGES}
        missing = [path.name for path in files.values() if not path.is_file()]
        if missing:
            raise MissingDataError(
                f"{source}: no {', '.join(missing)}; expected facenet-pytorch's pnet.pt, rnet.pt and onet.pt"
            )
        states = {stage: (path, read_torch_file(path)) for stage, path in files.items()}
    else:
        states = {stage: (f"{source}:{member}", read_torch_file(f"{source}:{member}", data))
                  for stage, (member, data) in _wheel_members(source).items()}  # fmt: skip
    model = Mtcnn()
    for stage, (where, state) in states.items():
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise DataFormatError(f"{where}: expected a state dict of tensors, found {type(state).__name__}")
        apply_state_dict(getattr(model, stage), state, where, f"do not fit MTCNN's {STAGES[stage]}")
    return model.eval()


def _wheel_members(wheel: Path) -> dict[str, tuple[str, bytes]]:
    """{stage: (member name, bytes)} of the three weight files inside a facenet-pytorch wheel."""
    members = {stage: f"{WHEEL_FOLDER}/{stage}.pt" for stage in STAGES}
    try:
        with zipfile.ZipFile(wheel) as archive:
            missing = [name for name in members.values() if name not in archive.namelist()]
            if missing:
                raise DataFormatError(f"{wheel}: no {', '.join(missing)} inside; expected a facenet-pytorch wheel")
            return {stage: (name, archive.read(name)) for stage, name in members.items()}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataFormatError(
            f"{wheel}: not a facenet-pytorch wheel ({exc}); expected its .whl or a folder of pnet.pt, rnet.pt and "
            "onet.pt"
        ) from None


def import_facenet_pytorch(source: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Make a facekit detector directory (model.pt, config.yaml) from facenet-pytorch's MTCNN weights."""
    return save_model(
        out_dir,
        kind="detector",
        config=MtcnnConfig().as_dict(),
        state_dict=read_facenet_pytorch(source).state_dict(),
        meta={"imported_from": str(source), "source_format": "facenet_pytorch"},
    )


def load_mtcnn(path: str | os.PathLike, payload: dict) -> tuple[Mtcnn, MtcnnConfig]:
    """The nets and config of a facekit MTCNN directory (`payload`: its model.pt, read by modeldir.load_model)."""
    try:
        config = MtcnnConfig.from_dict(payload["config"])
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"{path}: bad MTCNN config ({exc})") from None
    model = Mtcnn()
    apply_state_dict(model, payload["state_dict"], path, "do not fit MTCNN")
    return model.eval(), config
