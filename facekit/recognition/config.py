"""The settings that build a recognizer and prepare its input: one source of truth, saved with the model; and the
names an ONNX export records them under. No torch: the ONNX serving path reads these without it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from facekit.align import ARCFACE_SIZE, template
from facekit.modeldir import ONNX_FILES
from facekit.norms import NORMALIZATIONS, Normalization

ONNX_FILE = ONNX_FILES["recognizer"]  # the export's name inside a recognizer model directory
FINGERPRINT_KEY = "facekit_fingerprint"  # ONNX metadata_props keys
WEIGHTS_KEY = "facekit_weights_sha256"  # weights_digest() of the file when its fingerprint claim was written
THRESHOLD_KEY = "facekit_threshold"
CALIBRATION_KEY = "facekit_calibration"
TEMPLATE_KEY = "facekit_template"  # the 5-point template [5, 2] in input pixels (JSON) the crops are aligned to


@dataclass(frozen=True)
class RecognizerConfig:
    """A backbone, its embedding size and the crops it takes: `input_size` x `input_size` faces (None: the
    backbone's own size, 112 but for backbones.INPUT_SIZES) aligned to the 5-point `template` (pixels, [5, 2];
    None = the backbone's own, facekit.align's ArcFace template but for backbones.TEMPLATES) and normalised by
    `normalization` (None = the backbone's own, "arcface" but for backbones.NORMS).
    `threshold`: the calibrated cosine similarity from which two faces are one person (None until calibrated);
    `calibration`: where it came from, a facekit.recognition.calibration.Calibration as a dict (None for models
    calibrated before facekit recorded it)."""

    backbone: str = "iresnet50"
    embedding_size: int = 512
    input_size: int | None = None
    normalization: str | None = None
    template: tuple[tuple[float, float], ...] | None = None
    threshold: float | None = None
    calibration: dict | None = None

    def __post_init__(self) -> None:
        from facekit.recognition.backbones import BACKBONES, INPUT_SIZES, NORMS, TEMPLATES  # torch: built for a model

        BACKBONES[self.backbone]  # UnknownNameError (a ValueError), one line listing the known backbones
        if self.normalization is None:
            object.__setattr__(self, "normalization", NORMS.get(self.backbone, "arcface"))
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {self.normalization!r}; known: {', '.join(NORMALIZATIONS)}")
        if self.embedding_size < 1:
            raise ValueError(f"embedding_size must be positive, got {self.embedding_size}")
        size = INPUT_SIZES.get(self.backbone, ARCFACE_SIZE)
        if self.input_size is None:
            object.__setattr__(self, "input_size", size)
        elif self.input_size != size:
            raise ValueError(f"{self.backbone} takes {size}x{size} crops, got {self.input_size}")
        if self.template is None:
            default = TEMPLATES.get(self.backbone, template(self.input_size))
            points = tuple((round(float(x), 4), round(float(y), 4)) for x, y in default)
            object.__setattr__(self, "template", points)
        elif len(self.template) != 5 or any(len(p) != 2 for p in self.template):
            raise ValueError("template needs 5 (x, y) points")
        if self.threshold is not None:
            if not -1.0 <= self.threshold <= 1.0:
                raise ValueError(f"threshold is a cosine similarity in [-1, 1], got {self.threshold}")
            object.__setattr__(self, "threshold", float(self.threshold))  # a numpy scalar would not save
        if self.calibration is not None and self.calibration.get("threshold") != self.threshold:
            raise ValueError(f"threshold {self.threshold} is not its calibration's {self.calibration.get('threshold')}")

    @property
    def norm(self) -> Normalization:
        return NORMALIZATIONS[self.normalization]

    def as_dict(self) -> dict:
        return {k: [list(p) for p in v] if k == "template" else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> RecognizerConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if known.get("template") is not None:
            known["template"] = tuple((float(x), float(y)) for x, y in known["template"])
        return cls(**known)
