"""Drawing faces on images for --save-annotated outputs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facekit.errors import OutputConflictError
from facekit.fileio import atomic_write

KEPT = ".jpg"  # the extension of photos whose annotated copy keeps their name
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
    """Where annotated copies go: `out_dir` mirrors the photos' folders below their common folder, so equal names in
    different folders do not collide. Copies are JPEG: a .jpg photo's copy keeps its name, any other's gets .jpg
    added (x.png -> x.png.jpg, x.jpeg -> x.jpeg.jpg, so x.jpg and x.png both keep theirs); a name that is still taken
    (a folder holding x.png and x.png.jpg) gets a number, x.png.2.jpg. A copy that would replace one of the photos is
    refused here, before any is written."""

    def __init__(self, out_dir: Path, inputs: Sequence[Path]) -> None:
        self.out_dir = out_dir
        sources = list(dict.fromkeys(p.resolve() for p in inputs))
        root = Path(os.path.commonpath([p.parent for p in sources])) if sources else Path()
        self.targets: dict[Path, Path] = {}
        taken: set[Path] = set()
        for source in sorted(sources, key=lambda p: p.suffix.lower() != KEPT):  # .jpg photos claim their names first
            relative = source.relative_to(root)
            name = relative.name if relative.suffix.lower() == KEPT else relative.name + KEPT
            n = 1
            while relative.with_name(name) in taken:
                n += 1
                name = f"{relative.name}.{n}{KEPT}"
            taken.add(relative.with_name(name))
            self.targets[source] = out_dir / relative.with_name(name)
        inside = out_dir.resolve()
        photos = set(sources)
        for source, target in self.targets.items():
            replaced = inside / target.relative_to(out_dir)
            if replaced in photos:
                what = "it" if replaced == source else f"the photo {replaced}"
                raise OutputConflictError(
                    f"{out_dir}: the annotated copy of {source} would replace {what} (an input); choose another folder"
                )

    def write(self, path: Path, image: np.ndarray) -> Path:
        """Write `image`, annotated photo `path`, to its copy's name (atomically: never through a link there)."""
        import cv2

        target = self.targets[path.resolve()]
        ok, data = cv2.imencode(".jpg", image)
        if not ok:
            raise OSError(f"{target}: cannot encode image")
        with atomic_write(target, "wb") as f:
            f.write(data.tobytes())
        return target
