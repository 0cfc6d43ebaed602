"""Batch detection over files and folders (`facekit detect`): JSON Lines out, bad images skipped and reported."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from facekit import DEFAULT_MAX_PIXELS, strict_json
from facekit.data.images import NoReadablePhotos, list_images, photo_errors, photo_failure, read_each
from facekit.errors import MissingDataError
from facekit.fileio import output_stream


@dataclass
class DetectReport:
    images: int = 0
    faces: int = 0
    skipped: list[str] = field(default_factory=list)


def detect_images(
    inputs: Iterable[str | os.PathLike],
    detector,  # any object with .detect(image, settings) -> list[Face]
    settings,  # DetectSettings
    *,
    out: Path | None = None,
    annotated_dir: Path | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> DetectReport:
    """Detect faces in every image; one JSON object per image to `out` (atomically) or stdout. An image that
    cannot be read (or is over `max_pixels`) or whose detection fails is skipped and listed in the report; when
    none is left, NoReadablePhotos and nothing written."""
    from facekit.draw import AnnotatedOutput, draw_faces

    inputs = list(inputs)
    paths = list_images(inputs)
    if not paths:
        raise MissingDataError(f"{', '.join(map(os.fspath, inputs))}: no image files to detect faces in")
    annotated = AnnotatedOutput(annotated_dir, paths) if annotated_dir is not None else None
    report = DetectReport()
    with output_stream(out) as sink:
        errors = photo_errors()
        for _, path, image in read_each(paths, report.skipped, "detect", max_pixels=max_pixels):
            try:
                faces = detector.detect(image, settings)
            except errors as exc:
                report.skipped.append(photo_failure(path, exc))
                continue
            record = {
                "image": str(path),
                "width": image.shape[1],
                "height": image.shape[0],
                "faces": [f.as_dict() for f in faces],
            }
            sink.write(strict_json.dumps(record) + "\n")
            report.images += 1
            report.faces += len(faces)
            if annotated is not None:
                annotated.write(path, draw_faces(image, faces))
        if not report.images:  # raised inside the block: no empty --out file is left behind
            raise NoReadablePhotos(report.skipped)
    return report
