"""build-db: one face per enrolment photo -> gallery entries. Bad photos are skipped and reported, never fatal."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facekit.align import describe_alignment
from facekit.data.images import read_each
from facekit.detection.faces import Face
from facekit.errors import DataFormatError
from facekit.gallery.store import Enrolment, Gallery, ModelStamp
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
    """One face of each (photo, identity) but the photos `base` holds (build-db --append): the new faces as a gallery
    of their own, made like `base` (add_new puts them into the gallery as it is when it is written), and the report.
    Embeddings are computed `batch_images` photos at a time; each batch costs O(its faces) (Enrolment)."""
    if base is None:
        recognizer, detector = ModelStamp.of(pipeline.recognizer), ModelStamp.of(pipeline.detector)
        gallery = Gallery.empty(pipeline.recognizer.embedding_size, recognizer, detector,
                                crop_size=pipeline.recognizer.input_size, flip=pipeline.flip,
                                template=pipeline.recognizer.template)  # fmt: skip
    else:
        gallery = Gallery.empty(base.dim, base.recognizer, base.detector, crop_size=base.crop_size, flip=base.flip,
                                template=base.template)  # fmt: skip
    report = BuildReport(photos=len(entries))
    known = _entries(base) if base is not None else set()
    pending: list[tuple[np.ndarray, object, str, str]] = []  # (aligned crop, face, identity, source): no photos
    todo = []
    for path, name in entries:
        if (str(path), name) in known:
            report.already_in.append(str(path))
        elif not _utf8(str(path), name):
            report.unreadable.append(_NOT_UTF8.format(path))
        else:
            todo.append((path, name))
    enrolment = Enrolment(gallery)
    for i, path, face, crop in one_face_each([path for path, _ in todo], pipeline, report, pick, "build-db", progress):
        pending.append((crop, face, todo[i][1], str(path)))
        if len(pending) >= batch_images:
            _flush(enrolment, pending, pipeline, report)
    _flush(enrolment, pending, pipeline, report)
    return enrolment.gallery(), report


def add_new(current: Gallery | None, new: Gallery, report: BuildReport, path: Path) -> Gallery:
    """`new` faces (from build_gallery) added to `current`, the gallery at `path` as it is now (None: there is none;
    read under the write lock): photos it holds already (another build-db --append added them meanwhile) are left
    out and moved to `report.already_in`."""
    if current is None:
        return new
    same_crops = current.crop_size == new.crop_size and np.allclose(current.template, new.template, atol=1e-3)
    if current.flip != new.flip or not same_crops:
        raise DataFormatError(
            f"{path}: gallery was rebuilt meanwhile with other settings (mirror averaging {current.flip}, "
            f"{describe_alignment(current.crop_size, current.template)}); run build-db --append again"
        )
    known = _entries(current)
    names = [new.identities[i] for i in new.identity_index]
    keep = np.array([(source, name) not in known for source, name in zip(new.sources, names, strict=True)], bool)
    for i in np.flatnonzero(~keep):
        report.already_in.append(new.sources[i])
        report.added[names[i]] -= 1
    report.added = +report.added  # drop people left with no new face
    if not keep.any():
        return current
    return current.add(new.embeddings[keep], [n for n, k in zip(names, keep, strict=True) if k],
                       [s for s, k in zip(new.sources, keep, strict=True) if k], new.boxes[keep], new.landmarks[keep],
                       new.det_scores[keep])  # fmt: skip


def _entries(gallery: Gallery) -> set[tuple[str, str]]:
    """(source, identity) of each face of `gallery`."""
    return set(zip(gallery.sources, (gallery.identities[i] for i in gallery.identity_index), strict=True))


def one_face_each(
    paths: Sequence[Path],
    pipeline: FacePipeline,
    report: BuildReport,
    pick: str,
    desc: str,
    progress: bool | None = None,
) -> Iterator[tuple[int, Path, Face, np.ndarray]]:
    """(position, path, picked face, its aligned crop uint8 [S, S, 3]) of each photo of one person; unreadable
    photos (and those whose detection failed), photos without a face and photos with several go into `report`."""
    images = read_each(paths, report.unreadable, desc, progress, pipeline.max_pixels)
    size, points = pipeline.recognizer.input_size, pipeline.recognizer.template
    for photo in align_each(images, pipeline.detect, size=size, points=points, pick=pick):
        if photo.error is not None:
            report.unreadable.append(photo.error)
            continue
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


def _flush(enrolment: Enrolment, pending: list, pipeline: FacePipeline, report: BuildReport) -> None:
    """Embed the `pending` (crop, face, identity, source) and add them to `enrolment`."""
    if not pending:
        return
    crops, faces, names, sources = zip(*pending, strict=True)
    embeddings = pipeline.embed_crops(np.stack(crops))
    report.added.update(names)
    pending.clear()
    enrolment.add(
        embeddings,
        names,
        sources,
        np.stack([f.box for f in faces]),
        np.stack([f.landmarks for f in faces]),
        np.array([f.score for f in faces]),
    )
