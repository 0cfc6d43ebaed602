"""Drawing faces on images for --save-annotated outputs."""

from __future__ import annotations

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
