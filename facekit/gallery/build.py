"""build-db: one face per enrolment photo -> gallery entries. Bad photos are skipped and reported, never fatal."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facekit.data.images import read_each
from facekit.gallery.store import Gallery, ModelStamp
from facekit.runtime.detector import Face
from facekit.runtime.pipeline import FacePipeline, align_each

# The gallery stores identities and sources as UTF-8; a name that is not (Python keeps its bytes as surrogates)
# would fail only when the file is written, after all the work.
_NOT_UTF8 = "{}: file or folder name is not valid UTF-8 (the gallery stores names as UTF-8); rename it"


@dataclass
class BuildReport:
    """What happened to each enrolment photo."""

    photos: int = 0
    added: Counter = field(default_factory=Counter)  # identity -> faces added
    no_face: list[str] = field(default_factory=list)
    several_faces: list[str] = field(default_factory=list)  # "path (N faces)"; the picked face was kept
    unreadable: list[str] = field(default_factory=list)  # one error message each
    already_in: list[str] = field(default_factory=list)  # --append: photos the gallery holds already
    empty_folders: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        return len(self.no_face) + len(self.unreadable)

    def as_dict(self) -> dict:
        return {
            "photos": self.photos,
            "faces_added": sum(self.added.values()),
            "faces_per_identity": dict(sorted(self.added.items())),
            "no_face": self.no_face,
            "several_faces": self.several_faces,
            "unreadable": self.unreadable,
            "already_in_gallery": self.already_in,
            "empty_folders": self.empty_folders,
        }


def build_gallery(
    entries: Sequence[tuple[Path, str]],
    pipeline: FacePipeline,
    *,
    base: Gallery | None = None,
    pick: str = "largest",
    batch_images: int = 32,
    progress: bool | None = None,
) -> tuple[Gallery, BuildReport]:
    """Add one face of each (photo, identity) to `base` (or to a new gallery); embeddings are computed
    `batch_images` photos at a time. Returns the new gallery (the input is left unchanged) and the report."""
    gallery = base or Gallery.empty(
        pipeline.recognizer.embedding_size,
        ModelStamp.of(pipeline.recognizer),
        ModelStamp.of(pipeline.detector),
        crop_size=pipeline.recognizer.input_size,
        flip=pipeline.flip,
    )
    report = BuildReport(photos=len(entries))
    known = set(zip(gallery.sources, (gallery.identities[i] for i in gallery.identity_index), strict=True))
    pending: list[tuple[np.ndarray, object, str, str]] = []  # (aligned crop, face, identity, source): no photos
    todo = []
    for path, name in entries:
        if (str(path), name) in known:
            report.already_in.append(str(path))
        elif not _utf8(str(path), name):
            report.unreadable.append(_NOT_UTF8.format(path))
        else:
            todo.append((path, name))
    for i, path, face, crop in one_face_each([path for path, _ in todo], pipeline, report, pick, "build-db", progress):
        pending.append((crop, face, todo[i][1], str(path)))
        if len(pending) >= batch_images:
            gallery = _flush(gallery, pending, pipeline, report)
    return _flush(gallery, pending, pipeline, report), report


def one_face_each(
    paths: Sequence[Path],
    pipeline: FacePipeline,
    report: BuildReport,
    pick: str,
    desc: str,
    progress: bool | None = None,
) -> Iterator[tuple[int, Path, Face, np.ndarray]]:
    """(position, path, picked face, its aligned crop uint8 [S, S, 3]) of each photo of one person; unreadable
    photos, photos without a face and photos with several go into `report`."""
    images = read_each(paths, report.unreadable, desc, progress)
    size = pipeline.recognizer.input_size
    for photo in align_each(images, pipeline.detect, size=size, pick=pick):
        if photo.face is None:
            report.no_face.append(str(photo.path))
            continue
        if len(photo.faces) > 1:
            report.several_faces.append(f"{photo.path} ({len(photo.faces)} faces)")
        yield photo.index, photo.path, photo.face, photo.crop


def _utf8(*texts: str) -> bool:
    try:
        for text in texts:
            text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _flush(gallery: Gallery, pending: list, pipeline: FacePipeline, report: BuildReport) -> Gallery:
    if not pending:
        return gallery
    crops, faces, names, sources = zip(*pending, strict=True)
    embeddings = pipeline.embed_crops(np.stack(crops))
    report.added.update(names)
    pending.clear()
    return gallery.add(
        embeddings,
        names,
        sources,
        np.stack([f.box for f in faces]),
        np.stack([f.landmarks for f in faces]),
        np.array([f.score for f in faces]),
    )
