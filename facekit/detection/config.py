"""The settings that build a RetinaFace detector and code its outputs: one source of truth, saved with the model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from facekit.detection.model import BODIES
from facekit.modeldir import ONNX_FILES
from facekit.norms import NORMALIZATIONS, Normalization

ONNX_FILE = ONNX_FILES["detector"]  # the SCRFD-layout export's name inside a detector model directory


@dataclass(frozen=True)
class DetectorConfig:
    """RetinaFace settings (data_layouts/retinaface.md): priors min_sizes per stride, variances, input normalisation."""

    body: str = "mobilenet0.25"
    min_sizes: tuple[tuple[int, ...], ...] = ((16, 32), (64, 128), (256, 512))
    steps: tuple[int, ...] = (8, 16, 32)
    variances: tuple[float, float] = (0.1, 0.2)
    normalization: str = "retinaface"
    image_size: int = field(default=640)

    def __post_init__(self) -> None:
        BODIES[self.body]  # UnknownNameError (a ValueError), one line listing the known bodies
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {self.normalization!r}; known: {', '.join(NORMALIZATIONS)}")
        if len(self.min_sizes) != len(self.steps) or len({len(s) for s in self.min_sizes}) != 1:
            raise ValueError("min_sizes needs one list per step, all of the same length (anchors per location)")

    @property
    def anchors(self) -> int:
        return len(self.min_sizes[0])

    @property
    def norm(self) -> Normalization:
        return NORMALIZATIONS[self.normalization]

    @classmethod
    def for_body(cls, body: str) -> DetectorConfig:
        """The reference settings of a registered body (input size 640 for mobilenet0.25, 840 for resnet50)."""
        spec = BODIES[body]  # UnknownNameError (a ValueError) for a name not registered
        return cls(body=body, image_size=spec.image_size, normalization=spec.normalization)

    def as_dict(self) -> dict:
        return {
            k: (list(map(list, v)) if k == "min_sizes" else list(v) if isinstance(v, tuple) else v)
            for k, v in asdict(self).items()
        }

    @classmethod
    def from_dict(cls, data: dict) -> DetectorConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "min_sizes" in known:
            known["min_sizes"] = tuple(tuple(int(v) for v in s) for s in known["min_sizes"])
        for key in ("steps", "variances"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)
