"""dlib's face recognition network (dlib_face_recognition_resnet_model_v1.dat) read in pure Python, no dlib needed,
into facekit's `dlib_resnet` backbone and a recognizer model directory.

dlib's serialisation (dlib/serialize.h; dlib/dnn/core.h, layers.h, input.h, loss.h; dlib/cuda/tensor.h):
- an integer is one byte holding its length in bytes (low 4 bits) and its sign (0x80), then the magnitude in that
  many bytes, little-endian; a bool is the character '1' or '0'; a string is its length, then its bytes;
- a float or double is two integers, a mantissa and an exponent: mantissa * 2**exponent;
- a tensor is a version (2) and its 4 dims (samples, k, rows, columns), then its values as little-endian float32;
  an alias_tensor (a view into a layer's one parameter tensor) is a version (1) and its 4 dims;
- a network is written from the loss inwards: the loss layer (version 1, its details, its subnetwork); each
  add_layer (version 2) writes its subnetwork, then its layer's details and its own state (3 bools, 3 tensors);
  tag and skip layers (version 1) write only their subnetwork; the innermost add_layer (version 2 or 3) writes
  its input layer first, and after its state a 4th integer when it is version 3.
So the file is a run of versions, the input layer, then each layer's details from the input up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from facekit.errors import DataFormatError
from facekit.recognition.backbones import DlibResNet, create_backbone

EXPECTED = "expected dlib's face recognition ResNet (dlib_face_recognition_resnet_model_v1.dat)"
LOSS = ("loss_metric_", "loss_metric_2")
INPUT = "input_rgb_image_sized"


@dataclass
class Layer:
    """One computational layer read from the file: its dlib name (`con_4`, `affine_`, ...), where it starts, its
    integer settings and its parameter arrays."""

    name: str
    offset: int
    ints: tuple[int, ...] = ()
    arrays: list[np.ndarray] = field(default_factory=list)


class _Stream:
    """dlib's primitive encodings over the bytes of `file`; reading past the end is a one-line error."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.data = file.read_bytes()
        self.pos = 0

    def take(self, count: int, what: str) -> bytes:
        if count < 0:
            raise DataFormatError(f"{self.file}: byte {self.pos}: a negative length ({count}) for {what}; {EXPECTED}")
        if count > len(self.data) - self.pos:
            raise DataFormatError(
                f"{self.file}: truncated: byte {self.pos} of {len(self.data)} needs {count} more for {what}; {EXPECTED}"
            )
        self.pos += count
        return self.data[self.pos - count : self.pos]

    def int(self, what: str) -> int:
        head = self.take(1, what)[0]
        size = head & 0x0F
        if size > 8 or head & 0x70:
            raise DataFormatError(f"{self.file}: byte {self.pos - 1}: not a dlib integer ({what}); {EXPECTED}")
        value = int.from_bytes(self.take(size, what), "little")
        return -value if head & 0x80 else value

    def bool(self, what: str) -> bool:
        char = self.take(1, what)
        if char not in (b"0", b"1"):
            raise DataFormatError(f"{self.file}: byte {self.pos - 1}: not a dlib bool ({what}); {EXPECTED}")
        return char == b"1"

    def string(self, what: str) -> str:
        return self.take(self.int(what), what).decode("latin-1")

    def double(self, what: str) -> float:
        mantissa, exponent = self.int(what), self.int(what)
        return float(mantissa * 2.0**exponent) if abs(exponent) < 2000 else float("nan")  # inf/NaN codes

    def peek_string(self) -> str | None:
        """The string that starts here, if one of printable characters does (without moving), else None."""
        saved = self.pos
        try:
            size = self.int("a layer name")
            text = self.take(size, "a layer name").decode("latin-1") if 0 < size < 256 else ""
        finally:
            self.pos = saved
        return text if text.isprintable() and text.isascii() and text else None

    def tensor(self, what: str) -> np.ndarray:
        version = self.int(what)
        if version != 2:
            raise DataFormatError(
                f"{self.file}: byte {self.pos}: {what}: a version {version} tensor, not 2; {EXPECTED}"
            )
        dims = [self.int(what) for _ in range(4)]
        if min(dims) < 0:
            raise DataFormatError(f"{self.file}: byte {self.pos}: {what}: negative dimensions {dims}; {EXPECTED}")
        count = int(np.prod(dims, dtype=np.int64))
        return np.frombuffer(self.take(4 * count, what), "<f4").reshape(dims).astype(np.float32)

    def alias(self, what: str) -> tuple[int, ...]:
        self.int(what)  # version 1
        return tuple(self.int(what) for _ in range(4))


def _details(s: _Stream, name: str, offset: int) -> Layer:
    """A layer's details after its name (layers.h's serialize functions)."""
    layer = Layer(name, offset)
    if name in ("con_4", "con_5"):
        params = s.tensor(f"{name} parameters")
        layer.ints = tuple(s.int(name) for _ in range(7))  # filters, rows, cols, stride y, x, padding y, x
        shape, _ = s.alias(name), s.alias(name)
        for _ in range(4):  # learning rate and weight decay multipliers
            s.double(name)
        bias = s.bool(name) if name == "con_5" else True
        layer.arrays = _split(s, params, shape, bias, name)
    elif name == "affine_":
        params = s.tensor("affine_ parameters")
        s.alias(name), s.alias(name)
        s.int(name)  # mode: conv or fc
        if params.size % 2:
            raise DataFormatError(f"{s.file}: byte {offset}: affine_ holds {params.size} values, not gamma and beta")
        layer.arrays = list(params.reshape(2, -1))  # gamma, beta
    elif name in ("max_pool_2", "avg_pool_2"):
        layer.ints = tuple(s.int(name) for _ in range(6))  # rows, cols, stride y, x, padding y, x
    elif name == "fc_2":
        outputs, inputs = s.int(name), s.int(name)
        params = s.tensor("fc_2 parameters")
        s.alias(name), s.alias(name)
        layer.ints = (outputs, inputs, s.int(name))  # its bias mode: FC_HAS_BIAS = 0, FC_NO_BIAS = 1
        for _ in range(4):
            s.double(name)
        weights = params.reshape(-1)[: inputs * outputs]
        if weights.size != inputs * outputs:
            raise DataFormatError(f"{s.file}: byte {offset}: fc_2 holds {params.size} values for {inputs}x{outputs}")
        layer.arrays = [weights.reshape(inputs, outputs).T.copy()]
    elif name not in ("relu_", "add_prev_"):
        raise DataFormatError(f"{s.file}: byte {offset}: a dlib {name!r} layer; {EXPECTED}")
    return layer


def _split(s: _Stream, params: np.ndarray, shape: tuple[int, ...], bias: bool, name: str) -> list[np.ndarray]:
    """A con_ layer's one parameter tensor -> filters [out, in, rows, cols] (and biases [out])."""
    flat, size = params.reshape(-1), int(np.prod(shape))
    if flat.size != size + (shape[0] if bias else 0):
        raise DataFormatError(f"{s.file}: {name} holds {flat.size} values for filters {list(shape)}; {EXPECTED}")
    return [flat[:size].reshape(shape), *([flat[size:]] if bias else [])]


def read_dlib_network(path: str | os.PathLike) -> tuple[list[Layer], dict]:
    """The computational layers of a dlib metric-learning network file, from the input up, and what it says of
    itself: {"loss", "margin", "distance_threshold", "input_mean", "input_size"}."""
    s = _Stream(Path(path))
    if s.int("the loss layer's version") != 1 or not (loss := s.peek_string() or "").startswith("loss_"):
        raise DataFormatError(f"{s.file}: not a dlib neural network file (no loss layer at the start); {EXPECTED}")
    s.string("the loss name")
    if loss not in LOSS:
        raise DataFormatError(f"{s.file}: a dlib network with a {loss!r} loss, not a metric-learning one; {EXPECTED}")
    info: dict = {"loss": loss}
    if loss == "loss_metric_2":
        info["margin"], info["distance_threshold"] = s.double("margin"), s.double("distance threshold")
    versions = []
    while not (s.peek_string() or "").startswith("input"):
        versions.append(s.int("a layer's version"))
        if versions[-1] not in (1, 2, 3) or len(versions) > 10_000:
            raise DataFormatError(f"{s.file}: byte {s.pos}: not a dlib layer version ({versions[-1]}); {EXPECTED}")
    name = s.string("the input layer")
    if name != INPUT:
        raise DataFormatError(f"{s.file}: the network takes {name!r}, not {INPUT!r}; {EXPECTED}")
    info["input_mean"] = [s.double("input mean") for _ in range(3)]
    info["input_size"] = [s.int("input size") for _ in range(2)]
    layers = []
    for depth, version in enumerate(reversed(versions)):
        if version == 1 and depth:  # a tag or skip layer: nothing of its own
            continue
        offset = s.pos
        layers.append(_details(s, s.string("a layer name"), offset))
        for _ in range(3):
            s.bool("layer state")
        for _ in range(3):
            s.tensor("layer state")
        if depth == 0 and version == 3:
            s.int("sample expansion factor")
    if s.pos != len(s.data):
        raise DataFormatError(
            f"{s.file}: {len(s.data) - s.pos} bytes after the network's end at byte {s.pos}; {EXPECTED}"
        )
    return layers, info


def _plan(model: DlibResNet) -> list[tuple[str, tuple[int, ...], nn.Module | None]]:
    """The layers dlib's file lists for `model`, from the input up: (dlib name, its settings, our module)."""

    def con(conv: nn.Conv2d) -> tuple[str, tuple[int, ...], nn.Module]:
        settings = (conv.out_channels, *conv.kernel_size, *conv.stride, *conv.padding)
        return "con", settings, conv

    def affine(module: nn.Module) -> tuple[str, tuple[int, ...], nn.Module]:
        return "affine_", (), module

    relu = ("relu_", (), None)
    plan = [con(model.conv1), affine(model.affine1), relu, ("max_pool_2", (3, 3, 2, 2, 0, 0), None)]
    for block in model.layers:
        plan += [con(block.conv1), affine(block.affine1), relu, con(block.conv2), affine(block.affine2)]
        plan += [("avg_pool_2", (2, 2, 2, 2, 0, 0), None)] if isinstance(block.pool, nn.AvgPool2d) else []
        plan += [("add_prev_", (), None), relu]
    fc = model.fc
    return [*plan, ("avg_pool_2", (0, 0, 1, 1, 0, 0), None), ("fc_2", (fc.out_features, fc.in_features, 1), fc)]


def dlib_state_dict(model: DlibResNet, layers: list[Layer], file: Path) -> dict[str, torch.Tensor]:
    """`model`'s state dict from the layers read from `file`, each checked against where it goes."""
    plan = _plan(model)
    if len(layers) != len(plan):
        raise DataFormatError(f"{file}: a dlib network of {len(layers)} layers, not {len(plan)}; {EXPECTED}")
    names = {module: name for name, module in model.named_modules()}
    state = {}
    for index, (layer, (kind, settings, module)) in enumerate(zip(layers, plan, strict=True)):
        found = "con" if layer.name in ("con_4", "con_5") else layer.name
        if found != kind or (settings and layer.ints != settings):
            raise DataFormatError(
                f"{file}: layer {index} (byte {layer.offset}) is a dlib {layer.name} {list(layer.ints)}, not a "
                f"{kind} {list(settings)}; {EXPECTED}"
            )
        if module is not None:
            keys = ("weight", "bias")[: len(layer.arrays)]
            state |= {f"{names[module]}.{key}": torch.from_numpy(a) for key, a in zip(keys, layer.arrays, strict=True)}
    return state


# The length of dlib's descriptors: median 1.48 (sd 0.07) over 477 faces of CelebA training people 7201-7449 (the
# faces DLIB_TEMPLATE was fitted on, dlib's own chips). Nearly constant, so Euclidean distance and cosine carry the
# same order: |a - b|^2 = |a|^2 + |b|^2 - 2|a||b|cos = 2 L^2 (1 - cos). On those faces' 113,526 pairs, dlib's 0.6
# and its translation cosine 0.918 agree on 99.87% of decisions.
DLIB_DESCRIPTOR_LENGTH = 1.48
DLIB_TRANSLATION = "dlib's own distance threshold %g (Euclidean) at its descriptor length 1.48"


def cosine_threshold(distance: float, length: float = DLIB_DESCRIPTOR_LENGTH) -> float:
    """The cosine similarity at which two descriptors of `length` are `distance` apart: 1 - d^2 / (2 L^2)."""
    return round(1.0 - distance**2 / (2.0 * length**2), 4)


def import_dlib_resnet(path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Make a facekit recognizer directory (model.pt, config.yaml, recognizer.onnx) from dlib's
    dlib_face_recognition_resnet_model_v1.dat; returns the model.pt path. Faces are aligned to dlib's chip template
    (facekit.align.DLIB_TEMPLATE); dlib's own distance threshold (0.6, Euclidean on its unnormalised descriptors)
    becomes the model's cosine threshold (cosine_threshold), until `facekit calibrate` measures one."""
    from facekit.modeldir import apply_state_dict
    from facekit.norms import DLIB
    from facekit.recognition.calibration import Calibration
    from facekit.recognition.config import RecognizerConfig
    from facekit.recognition.modelfile import save_recognizer

    file = Path(path)
    layers, info = read_dlib_network(file)
    outputs = layers[-1].ints[0] if layers and layers[-1].name == "fc_2" else 128  # else dlib_state_dict says why
    threshold = cosine_threshold(info["distance_threshold"])
    calibration = Calibration(threshold, f"dlib-distance={info['distance_threshold']:g}", None, None, None,
                              DLIB_TRANSLATION % info["distance_threshold"], pairs=0)  # fmt: skip
    config = RecognizerConfig(backbone="dlib_resnet", embedding_size=outputs, normalization=DLIB.name,
                              threshold=threshold, calibration=calibration.as_dict())  # fmt: skip
    if info["input_size"] != [config.input_size] * 2 or not np.allclose(info["input_mean"], DLIB.mean, atol=1e-3):
        raise DataFormatError(
            f"{file}: the network takes {info['input_size']} chips less the mean {info['input_mean']}, not dlib's "
            f"{config.input_size}x{config.input_size} less {list(DLIB.mean)}; {EXPECTED}"
        )
    model = create_backbone(config.backbone, embedding_size=config.embedding_size)
    apply_state_dict(model, dlib_state_dict(model, layers, file), file, f"do not fit {type(model).__name__}")
    meta = {"imported_from": str(file), "source_format": "dlib", "dlib": info}
    return save_recognizer(out_dir, model, config, meta, onnx=True)
