"""Batch detection over files and folders (`facekit detect`): JSON Lines out, bad images skipped and reported."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from facekit.data.images import list_images, read_image
from facekit.errors import FacekitError
from facekit.fileio import atomic_write


@dataclass
class DetectReport:
    images: int = 0
    faces: int = 0
    skipped: list[str] = field(default_factory=list)


def detect_images(
    inputs: Iterable[str | os.PathLike],
    detector,  # noqa: ANN001 - any object with .detect(image, settings) -> list[Face]
    settings,  # noqa: ANN001 - DetectSettings
    *,
    out: Path | None = None,
    annotated_dir: Path | None = None,
) -> DetectReport:
    """Detect faces in every image; one JSON object per image to `out` (atomically) or stdout."""
    import cv2
    from tqdm import tqdm

    from facekit.draw import draw_faces

    paths = list_images(inputs)
    root = Path(os.path.commonpath([p.resolve().parent for p in paths])) if paths else Path()
    report = DetectReport()
    with atomic_write(out) if out else _stdout() as sink:
        for path in tqdm(paths, desc="detect", unit="img", disable=None, file=sys.stderr):
            try:
                image = read_image(path)
            except FacekitError as exc:
                report.skipped.append(str(exc))
                continue
            faces = detector.detect(image, settings)
            record = {
                "image": str(path),
                "width": image.shape[1],
                "height": image.shape[0],
                "faces": [f.as_dict() for f in faces],
            }
            sink.write(json.dumps(record) + "\n")
            report.images += 1
            report.faces += len(faces)
            if annotated_dir is not None:  # mirror the input folders, so equal file names do not collide
                target = (annotated_dir / path.resolve().relative_to(root)).with_suffix(".jpg")
                target.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(target), draw_faces(image, faces))
    return report


class _stdout:
    def __enter__(self):  # noqa: ANN204
        return sys.stdout

    def __exit__(self, *exc: object) -> None:
        sys.stdout.flush()
