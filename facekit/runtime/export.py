"""export: a facekit model directory -> its ONNX file in insightface's conventions (detector.onnx in the SCRFD
layout, recognizer.onnx in the ArcFaceONNX one, at the recognizer's own input size), in float32, float16 or int8,
and the parity of that file with the PyTorch model on real photos.

float16 uses onnxruntime.transformers.float16 (inputs and outputs stay float32); int8 is ONNX Runtime's static
QDQ quantisation (per-channel int8 weights, uint8 activations) calibrated on photos. A converted recognizer makes
slightly different embeddings, so it carries no fingerprint claim: galleries know it by its own sha256.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from facekit import DEFAULT_MAX_PIXELS
from facekit.detection.faces import DetectSettings, Face
from facekit.errors import DataFormatError, FacekitError, MissingDataError
from facekit.fileio import atomic_path
from facekit.modeldir import ONNX_FILES
from facekit.norms import ARCFACE, SCRFD

PRECISIONS = ("fp32", "fp16", "int8")
PRECISION_KEY = "facekit_precision"  # metadata_props: fp16 / int8 for converted files
CALIBRATION_PHOTOS = 64  # int8: at most this many photos (crops), spread over those given, calibrate the ranges


@dataclass(frozen=True)
class Tolerance:
    """How close an export must stay to PyTorch: each face found by one found by the other at IoU >= `iou`, its
    landmarks within `landmark_px` pixels; each embedding at cosine >= `cosine`. Faces scoring under the detection
    threshold + `borderline` may be found by one only."""

    iou: float
    landmark_px: float
    cosine: float
    borderline: float = 0.1


TOLERANCES = {
    "fp32": Tolerance(iou=0.95, landmark_px=2.0, cosine=0.999),
    "fp16": Tolerance(iou=0.9, landmark_px=3.0, cosine=0.999),
    "int8": Tolerance(iou=0.8, landmark_px=6.0, cosine=0.99),
}


def model_kind(model_dir: str | os.PathLike) -> str:
    """What the facekit model directory (or its model.pt) holds: "detector" or "recognizer"."""
    from facekit.modeldir import load_model, read_torch_file

    payload = read_torch_file(model_dir)
    kind = payload.get("kind") if isinstance(payload, dict) else None
    if kind not in ONNX_FILES:
        load_model(model_dir, "detector or recognizer", payload)  # the one-line error of a file that is no model
        raise DataFormatError(f"{model_dir}: a facekit {kind} model; export knows {', '.join(ONNX_FILES)} models")
    architecture = payload.get("config", {}).get("architecture", "retinaface")
    if kind == "detector" and architecture != "retinaface":
        raise DataFormatError(
            f"{model_dir}: a facekit {architecture} detector; export writes the SCRFD layout, one network over the "
            "whole photo, which only RetinaFace detectors have"
        )
    return kind


def default_output(model_dir: str | os.PathLike, kind: str, precision: str = "fp32", insightface: bool = False) -> Path:
    """MODEL_DIR/detector.onnx or recognizer.onnx; converted files get the precision before the suffix, files for
    insightface ".insightface"."""
    p = Path(model_dir)
    folder = p if p.is_dir() else p.parent
    tags = ".insightface" * insightface + ("" if precision == "fp32" else f".{precision}")
    return folder / ONNX_FILES[kind].replace(".onnx", f"{tags}.onnx")


@dataclass
class Parity:
    """How an export compares with its PyTorch model on photos (None: nothing to compare)."""

    kind: str
    photos: int = 0
    compared: int = 0  # faces matched (detector) or crops embedded (recognizer)
    min_iou: float | None = None
    max_landmark_px: float | None = None
    min_cosine: float | None = None
    mismatches: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.kind == "detector":
            return (f"{self.compared} faces matched on {self.photos} photos: IoU >= {_num(self.min_iou, 3)}, landmarks "
                    f"within {_num(self.max_landmark_px, 2)} px")  # fmt: skip
        return f"{self.compared} face crops from {self.photos} photos: embedding cosine >= {_num(self.min_cosine, 5)}"


def _num(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def export_model(
    model_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    precision: str = "fp32",
    opset: int = 17,
    calibration: Sequence[Path] = (),
    check: Sequence[Path] = (),
    max_pixels: int = DEFAULT_MAX_PIXELS,
    settings: DetectSettings = DetectSettings(max_size=640),
    kind: str | None = None,
    skipped: list[str] | None = None,
    insightface: bool = False,
) -> tuple[Path, Parity | None]:
    """Write the ONNX form of the model at `model_dir` to `out` (atomically) and, with `check` photos, compare it
    with PyTorch on them: a mismatch beyond TOLERANCES[precision] raises FacekitError and leaves `out` as it was.
    int8 needs `calibration` photos: for a detector whole photos, for a recognizer face crops (aligned ones, as
    `facekit align` makes; resized to the input size). `kind`: model_kind(model_dir), when already known. Photos
    that cannot be read are left out, their one-line errors appended to `skipped`. `insightface`: a recognizer whose
    crops insightface cannot make takes insightface's instead (recognition/export.py CanvasInput); such a file
    cannot be checked against PyTorch's own crops nor calibrated on them."""
    skipped = [] if skipped is None else skipped
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    if precision == "int8" and not calibration:
        raise MissingDataError("int8 export needs calibration photos")
    kind = kind or model_kind(model_dir)
    with atomic_path(out) as tmp, tempfile.TemporaryDirectory(prefix="facekit-export-") as work:
        if kind == "detector":
            from facekit.detection.export import export_scrfd_onnx
            from facekit.runtime.detector import TorchDetector

            torch_model = TorchDetector.load(model_dir)
            fp32 = tmp if precision == "fp32" else Path(work) / "fp32.onnx"
            export_scrfd_onnx(torch_model.model, torch_model.config, fp32, opset)
            feeds = lambda: _detector_feeds(calibration, settings, skipped, max_pixels)  # noqa: E731
        else:
            from facekit.recognition.export import export_arcface_onnx, needs_canvas
            from facekit.runtime.recognizer import TorchRecognizer

            torch_model = TorchRecognizer(model_dir)
            canvas = insightface and needs_canvas(torch_model.config)
            if canvas and (check or precision == "int8"):
                raise FacekitError(
                    f"{model_dir}: its --insightface file takes insightface's 256x256 crops, not the model's own, so "
                    "--check and --int8 do not apply; export it without --insightface"
                )
            fp32 = tmp if precision == "fp32" else Path(work) / "fp32.onnx"
            claim = torch_model.fingerprint if precision == "fp32" and not canvas else None  # other embeddings
            export_arcface_onnx(torch_model.model, torch_model.config, fp32, opset, fingerprint=claim,
                                insightface=insightface)  # fmt: skip
            feeds = lambda: _recognizer_feeds(calibration, torch_model.input_size, skipped, max_pixels)  # noqa: E731
        if precision == "fp16":
            _to_float16(fp32, tmp)
        elif precision == "int8":
            _to_int8(fp32, tmp, feeds(), Path(work))
        parity = None
        if check:
            parity = compare(torch_model, tmp, kind, check, TOLERANCES[precision], settings=settings,
                             max_pixels=max_pixels, skipped=skipped)  # fmt: skip
            if parity.mismatches:
                more = f" (and {len(parity.mismatches) - 1} more)" if len(parity.mismatches) > 1 else ""
                raise FacekitError(f"{out}: the {precision} export does not match PyTorch: {parity.mismatches[0]}"
                                   f"{more}; not written")  # fmt: skip
            if not parity.photos:
                raise FacekitError(f"{out}: none of the --check photos could be read; not written")
    return Path(out), parity


def _to_float16(source: Path, target: Path) -> None:
    """float16 weights and arithmetic, float32 inputs and outputs (ONNX Runtime runs it on CPUs as on GPUs)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    _set_precision(model, "fp16")
    onnx.save(model, str(target))


def _to_int8(source: Path, target: Path, feeds: list[dict[str, np.ndarray]], work: Path) -> None:
    """ONNX Runtime's static quantisation (QDQ, per-channel int8 weights, uint8 activations with MinMax ranges
    over `feeds`), after its recommended shape inference and graph optimisation."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    prepared = work / "prepared.onnx"
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    quantized = work / "int8.onnx"
    quantize_static(str(prepared), str(quantized), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)  # fmt: skip
    model = onnx.load(str(quantized))
    props = {p.key: p.value for p in onnx.load(str(source), load_external_data=False).metadata_props}
    onnx.helper.set_model_props(model, props)
    _set_precision(model, "int8")
    onnx.save(model, str(target))


def _set_precision(model, precision: str) -> None:  # onnx.ModelProto
    """Record `precision` in the metadata, and drop any fingerprint claim (its embeddings are not the original's)."""
    import onnx

    from facekit.recognition.export import FINGERPRINT_KEY, WEIGHTS_KEY

    props = {p.key: p.value for p in model.metadata_props if p.key not in (FINGERPRINT_KEY, WEIGHTS_KEY)}
    onnx.helper.set_model_props(model, {**props, PRECISION_KEY: precision})


def _photos(paths: Sequence[Path], skipped: list[str], max_pixels: int) -> Iterator[tuple[Path, np.ndarray]]:
    from facekit.data.images import read_each

    for _, path, image in read_each(paths, skipped, "export", False, max_pixels):
        yield path, image


def _crops(paths: Sequence[Path], size: int, skipped: list[str], max_pixels: int) -> Iterator[tuple[Path, np.ndarray]]:
    """Each photo as a face crop uint8 [size, size, 3] (resized when it has another size)."""
    import cv2

    for path, image in _photos(paths, skipped, max_pixels):
        if image.shape[:2] != (size, size):
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        yield path, image


def _spread(paths: Sequence[Path], count: int = CALIBRATION_PHOTOS) -> list[Path]:
    """At most `count` of `paths`, evenly spaced: a folder of people sorted by name calibrates on all of them, not
    on the first few."""
    if len(paths) <= count:
        return list(paths)
    return [paths[i] for i in np.linspace(0, len(paths) - 1, count).round().astype(int)]


def _recognizer_feeds(
    paths: Sequence[Path], size: int, skipped: list[str], max_pixels: int
) -> list[dict[str, np.ndarray]]:
    crops = [crop for _, crop in _crops(_spread(paths), size, skipped, max_pixels)]
    if not crops:
        raise MissingDataError("int8 calibration: none of the photos could be read")
    return [{"input.1": ARCFACE(crop)[None]} for crop in crops]


def _canvas(image: np.ndarray, max_size: int | None) -> np.ndarray:
    """The photo as a detector sees it: scaled down to `max_size`, padded at the right and bottom to a multiple
    of the largest stride (32), as OnnxDetector pads it (PyTorch then sees the same pixels)."""
    from facekit.detection.faces import resize_for_detection

    resized, _ = resize_for_detection(image, max_size)
    h, w = resized.shape[:2]
    canvas = np.zeros((-(-h // 32) * 32, -(-w // 32) * 32, 3), np.uint8)
    canvas[:h, :w] = resized
    return canvas


def _detector_feeds(paths: Sequence[Path], settings: DetectSettings, skipped: list[str],
                    max_pixels: int) -> list[dict[str, np.ndarray]]:  # fmt: skip
    feeds = [
        {"input.1": SCRFD(_canvas(image, settings.max_size))[None]}
        for _, image in _photos(_spread(paths), skipped, max_pixels)
    ]
    if not feeds:
        raise MissingDataError("int8 calibration: none of the photos could be read")
    return feeds


def compare(torch_model, onnx_file: Path, kind: str, photos: Sequence[Path], tolerance: Tolerance, *,
            settings: DetectSettings = DetectSettings(max_size=640),
            max_pixels: int = DEFAULT_MAX_PIXELS, skipped: list[str] | None = None) -> Parity:  # fmt: skip
    """The parity of `onnx_file` with `torch_model` (a TorchDetector or TorchRecognizer) on `photos`; what is
    beyond `tolerance` goes to Parity.mismatches, unreadable photos to `skipped`."""
    skipped = [] if skipped is None else skipped
    parity = Parity(kind)
    if kind == "detector":
        from facekit.runtime.onnx_detector import OnnxDetector

        onnx_model = OnnxDetector(onnx_file)
        for path, image in _photos(photos, skipped, max_pixels):
            parity.photos += 1
            canvas, same = _canvas(image, settings.max_size), replace(settings, max_size=None)
            ours, theirs = torch_model.detect(canvas, same), onnx_model.detect(canvas, same)
            _match(path, ours, theirs, settings.threshold + tolerance.borderline, tolerance, parity)
        return parity
    from facekit.runtime.recognizer import OnnxRecognizer

    onnx_model = OnnxRecognizer(onnx_file)
    named = list(_crops(photos, torch_model.input_size, skipped, max_pixels))
    if named:
        crops = np.stack([crop for _, crop in named])
        cosines = (torch_model.embed(crops) * onnx_model.embed(crops)).sum(1)
        parity.photos = parity.compared = len(named)
        parity.min_cosine = float(cosines.min())
        parity.mismatches += [
            f"{path}: embedding cosine {cosine:.4f} (expected >= {tolerance.cosine})"
            for (path, _), cosine in zip(named, cosines.tolist(), strict=True)
            if cosine < tolerance.cosine
        ]
    return parity


def _match(path: Path, ours: list[Face], theirs: list[Face], clear: float, tolerance: Tolerance,
           parity: Parity) -> None:  # fmt: skip
    """Pair each PyTorch face with the export's face of highest IoU, and the other way round. A face scoring `clear`
    or more without a partner at IoU >= tolerance.iou, or whose landmarks are further than tolerance.landmark_px
    from its partner's, is a mismatch; the lowest IoU and largest landmark distance of the pairs are recorded."""
    import torch

    from facekit.detection.box_utils import box_iou

    def boxes(faces: list[Face]) -> torch.Tensor:
        return torch.tensor(np.stack([f.box for f in faces]) if faces else np.zeros((0, 4)), dtype=torch.float32)

    iou = box_iou(boxes(ours), boxes(theirs)).numpy()
    for faces, others, table, who in ((ours, theirs, iou, "PyTorch"), (theirs, ours, iou.T, "the export")):
        for i, face in enumerate(faces):
            j = int(table[i].argmax()) if others else -1
            value = float(table[i, j]) if others else 0.0
            box = [round(float(v)) for v in face.box]
            if value < tolerance.iou:
                if face.score >= clear:
                    parity.mismatches.append(
                        f"{path}: the face {who} finds at {box} (score {face.score:.2f}) has no counterpart (best IoU "
                        f"{value:.3f}, expected >= {tolerance.iou})"
                    )
                continue
            if who == "the export":
                continue  # each pair measured once
            parity.compared += 1
            parity.min_iou = value if parity.min_iou is None else min(parity.min_iou, value)
            if face.landmarks is not None and others[j].landmarks is not None:
                px = float(np.linalg.norm(face.landmarks - others[j].landmarks, axis=1).max())
                parity.max_landmark_px = px if parity.max_landmark_px is None else max(parity.max_landmark_px, px)
                if px > tolerance.landmark_px:
                    parity.mismatches.append(f"{path}: landmarks of the face at {box} are {px:.1f} px apart "
                                             f"(expected <= {tolerance.landmark_px})")  # fmt: skip
