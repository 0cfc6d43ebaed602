"""Drawing faces on images for --save-annotated outputs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

_POINT_COLOURS = [(255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 0, 255), (0, 255, 255)]  # BGR per landmark


def draw_faces(image: np.ndarray, faces: list, labels: list[str] | None = None) -> np.ndarray:
    """A copy of BGR `image` with each face's box, landmarks and label (default: its score) drawn."""
    import cv2

    out = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 500))
    for i, face in enumerate(faces):
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 0), thickness)
        if face.landmarks is not None:
            for (x, y), colour in zip(face.landmarks, _POINT_COLOURS, strict=True):
                cv2.circle(out, (int(round(x)), int(round(y))), thickness + 1, colour, -1)
        text = labels[i] if labels else f"{face.score:.2f}"
        cv2.putText(out, text, (x1, max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, (0, 255, 0), thickness)
    return out


class AnnotatedOutput:
    """Where annotated copies go: `out_dir` mirrors the input folders below the inputs' common folder, so equal
    file names in different folders do not collide; always JPEG."""

    def __init__(self, out_dir: Path, inputs: Sequence[Path]) -> None:
        self.out_dir = out_dir
        self.root = Path(os.path.commonpath([p.resolve().parent for p in inputs])) if inputs else Path()

    def write(self, path: Path, image: np.ndarray) -> Path:
        import cv2

        target = (self.out_dir / path.resolve().relative_to(self.root)).with_suffix(".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(target), image):
            raise OSError(f"{target}: cannot write image")
        return target
