"""embed: the embeddings of the faces in photos, with where each face is, for other tools (deepface's `represent`).

Outputs: FILE.h5 (datasets embeddings [N, D] float32 L2-normalised, boxes [N, 4], landmarks [N, 5, 2], scores [N],
images [N] (UTF-8 paths), faces [N] (the face's index among its photo's detections, strongest first); attributes
naming the models), or FILE.npy (the embeddings) with FILE.jsonl beside it: line i describes row i, {"row",
"image", "face", "box", "score", "landmarks"}. Photos are detected, aligned and embedded as recognize does,
`batch_images` at a time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facekit import __version__, strict_json
from facekit.data.images import NoReadablePhotos, photo_errors, photo_failure, read_each
from facekit.detection.faces import Face
from facekit.errors import FacekitError
from facekit.fileio import atomic_path, atomic_write
from facekit.gallery.store import LIBVER
from facekit.runtime.pipeline import FacePipeline, pick_index

SUFFIXES = (".h5", ".npy")


def sidecar(out: Path) -> Path:
    """The JSON Lines file that describes the rows of an .npy output."""
    return out.with_suffix(".jsonl")


def output_files(out: Path) -> list[Path]:
    """What `embed` writes for `out`: the .h5, or the .npy and its sidecar."""
    if out.suffix.lower() not in SUFFIXES:
        raise FacekitError(f"{out}: expected an output ending in {' or '.join(SUFFIXES)}")
    return [out] if out.suffix.lower() == ".h5" else [out, sidecar(out)]


@dataclass
class EmbedReport:
    images: int = 0
    faces: int = 0
    no_face: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


@dataclass
class _Rows:
    """The faces embedded so far, row by row."""

    images: list[str] = field(default_factory=list)
    faces: list[int] = field(default_factory=list)
    detections: list[Face] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)


def embed_images(
    paths: Sequence[Path],
    pipeline: FacePipeline,
    out: Path,
    *,
    all_faces: bool = False,
    pick: str = "largest",
    batch_images: int = 16,
    progress: bool | None = None,
) -> EmbedReport:
    """Embed every face (`all_faces`) or the `pick` one of each photo in `paths` and write them to `out` (.h5, or
    .npy + .jsonl; atomically). Unreadable photos and photos without a face are listed in the report; when no face
    is found at all nothing is written (FacekitError)."""
    output_files(out)
    report, rows = EmbedReport(), _Rows()
    batch: list[np.ndarray] = []  # aligned crops, not photos: memory does not grow with photo size x batch size
    pending = 0
    errors = photo_errors()
    for _, path, image in read_each(paths, report.unreadable, "embed", progress, pipeline.max_pixels):
        try:
            faces = pipeline.detect(image)
            chosen = list(range(len(faces))) if all_faces or not faces else [pick_index(faces, pick, image.shape[:2])]
            crops = pipeline.crops([image] * len(chosen), [faces[i] for i in chosen])
        except errors as exc:
            report.unreadable.append(photo_failure(path, exc))
            continue
        report.images += 1
        if not chosen:
            report.no_face.append(str(path))
            continue
        rows.images += [str(path)] * len(chosen)
        rows.faces += chosen
        rows.detections += [faces[i] for i in chosen]
        batch.append(crops)
        pending += 1
        if pending >= batch_images:
            rows.embeddings.append(pipeline.embed_crops(np.concatenate(batch)))
            batch, pending = [], 0
    if batch:
        rows.embeddings.append(pipeline.embed_crops(np.concatenate(batch)))
    if paths and not report.images:
        raise NoReadablePhotos(report.unreadable)
    if not rows.faces:
        raise FacekitError(f"{out}: no face found in {report.images} photos; nothing written")
    report.faces = len(rows.faces)
    _write(out, rows, pipeline)
    return report


def _write(out: Path, rows: _Rows, pipeline: FacePipeline) -> None:
    embeddings = np.concatenate(rows.embeddings)
    boxes = np.stack([f.box for f in rows.detections]).astype(np.float32)
    landmarks = np.stack([f.landmarks for f in rows.detections]).astype(np.float32)
    scores = np.array([f.score for f in rows.detections], np.float32)
    if out.suffix.lower() == ".npy":
        with ExitStack() as stack:  # both files replace their targets only when both are written
            with open(stack.enter_context(atomic_path(out)), "wb") as f:
                np.save(f, embeddings)
            lines = stack.enter_context(atomic_write(sidecar(out)))
            for row, (image, face, detection) in enumerate(zip(rows.images, rows.faces, rows.detections, strict=True)):
                lines.write(strict_json.dumps({"row": row, "image": image, "face": face, **detection.as_dict()}) + "\n")
        return
    import h5py

    with atomic_path(out) as tmp, h5py.File(tmp, "w", libver=LIBVER, locking=False) as f:
        data = {"embeddings": embeddings, "boxes": boxes, "landmarks": landmarks, "scores": scores,
                "images": _utf8(rows.images), "faces": np.array(rows.faces, np.int32)}  # fmt: skip
        for name, values in data.items():
            f.create_dataset(name, data=values, compression="gzip", shuffle=True, fletcher32=True)
        recognizer, detector = pipeline.recognizer, pipeline.detector
        f.attrs.update(
            {
                "format": "facekit-embeddings",
                "facekit_version": __version__,
                "recognizer": recognizer.name,
                "recognizer_fingerprint": recognizer.fingerprint,
                "detector": detector.name,
                "detector_fingerprint": detector.fingerprint,
                "crop_size": recognizer.input_size,
                "alignment_template": np.asarray(recognizer.template, np.float32),
                "flip": pipeline.flip,
            }
        )


def _utf8(texts: list[str]) -> np.ndarray:
    """Paths as fixed-length UTF-8 (a name that is not UTF-8 keeps its own bytes)."""
    import h5py

    encoded = [os.fsencode(t) for t in texts]
    return np.array(encoded, dtype=h5py.string_dtype("utf-8", max([1, *map(len, encoded)])))
