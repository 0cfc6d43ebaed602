"""Batch detection over files and folders (`facekit detect`): JSON Lines out, bad images skipped and reported."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from facekit.data.images import list_images, read_each
from facekit.errors import MissingDataError
from facekit.fileio import output_stream


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
    from facekit.draw import AnnotatedOutput, draw_faces

    inputs = list(inputs)
    paths = list_images(inputs)
    if not paths:
        raise MissingDataError(f"{', '.join(map(os.fspath, inputs))}: no image files to detect faces in")
    annotated = AnnotatedOutput(annotated_dir, paths) if annotated_dir is not None else None
    report = DetectReport()
    with output_stream(out) as sink:
        for _, path, image in read_each(paths, report.skipped, "detect"):
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
            if annotated is not None:
                annotated.write(path, draw_faces(image, faces))
    return report
