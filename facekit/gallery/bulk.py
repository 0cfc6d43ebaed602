"""Bulk enrolment: merge galleries made by the same models (shards of one build-db), import embeddings made
elsewhere (`facekit embed`'s .h5, or any file of that layout) with identity names, export a gallery in that layout.

The embeddings layout (data_layouts/gallery.md, "Export and import"): datasets embeddings float [N, D]
(L2-normalised), images UTF-8 [N] (the source of each row), optional identities UTF-8 [N] (the person of each row),
boxes [N, 4], landmarks [N, 5, 2], scores [N]; attributes recognizer, recognizer_fingerprint, crop_size,
alignment_template (crop pixels), flip, and optionally detector, detector_fingerprint.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facekit import __version__
from facekit.align import describe_alignment
from facekit.errors import DataFormatError, MissingDataError
from facekit.fileio import atomic_path
from facekit.gallery.schema import MAX_DIM, read_rows
from facekit.gallery.store import LIBVER, Enrolment, Gallery, ModelStamp, utf8

EMBEDDINGS_FORMAT = "facekit-embeddings"
NO_DETECTOR = ModelStamp("unknown detector", "")


def same_models(a: Gallery, b: Gallery, path: str | os.PathLike, first: str | os.PathLike) -> None:
    """Refuse `b` (read from `path`) unless its faces were made like `a`'s (read from `first`): the same recognizer
    weights and detector, crops and mirror averaging."""
    differences = []
    if (a.recognizer.fingerprint, a.dim) != (b.recognizer.fingerprint, b.dim):
        differences.append(f"recognizer {b.recognizer.name} ({b.recognizer.fingerprint[:12]}, {b.dim}-d), not "
                           f"{a.recognizer.name} ({a.recognizer.fingerprint[:12]}, {a.dim}-d)")  # fmt: skip
    if a.detector.fingerprint != b.detector.fingerprint:
        differences.append(f"detector {b.detector.name} ({b.detector.fingerprint[:12] or 'none'}), not "
                           f"{a.detector.name} ({a.detector.fingerprint[:12] or 'none'})")  # fmt: skip
    if a.crop_size != b.crop_size or not np.allclose(a.template, b.template, atol=1e-3):
        differences.append(f"{describe_alignment(b.crop_size, b.template)}, not "
                           f"{describe_alignment(a.crop_size, a.template)}")  # fmt: skip
    if a.flip != b.flip:
        differences.append(f"mirror averaging {b.flip}, not {a.flip}")
    if differences:
        raise DataFormatError(f"{path}: faces made with {'; '.join(differences)} as in {first}; cannot combine them")


def merge(paths: Sequence[Path]) -> Gallery:
    """The galleries at `paths` as one: every entry, in the order given; a name in several galleries is one person
    (their faces join one identity). Refuses galleries made by other models than the first's."""
    first = Gallery.load(paths[0])
    enrolment = Enrolment(first)
    for path in paths[1:]:
        g = Gallery.load(path)
        same_models(first, g, path, paths[0])
        enrolment.add(g.embeddings, [g.identities[i] for i in g.identity_index], g.sources, g.boxes, g.landmarks,
                      g.det_scores)  # fmt: skip
    merged = enrolment.gallery()
    merged.stored = None  # a new file, never an append to the first input
    return merged


def export(gallery: Gallery, out: Path) -> Path:
    """Write `gallery`'s rows to `out` (.h5) in the embeddings layout, with identities: what import_embeddings reads."""
    import h5py

    with atomic_path(out) as tmp, h5py.File(tmp, "w", libver=LIBVER, locking=False) as f:
        data = {"embeddings": gallery.embeddings, "boxes": gallery.boxes, "landmarks": gallery.landmarks,
                "scores": gallery.det_scores, "images": utf8(gallery.sources),
                "identities": utf8([gallery.identities[i] for i in gallery.identity_index]),
                "faces": np.zeros(len(gallery), np.int32)}  # fmt: skip
        for name, values in data.items():
            f.create_dataset(name, data=values, compression="gzip", shuffle=True, fletcher32=True)
        f.attrs.update({
            "format": EMBEDDINGS_FORMAT, "facekit_version": __version__,
            "recognizer": gallery.recognizer.name, "recognizer_fingerprint": gallery.recognizer.fingerprint,
            "detector": gallery.detector.name, "detector_fingerprint": gallery.detector.fingerprint,
            "crop_size": gallery.crop_size, "alignment_template": gallery.template, "flip": gallery.flip,
        })  # fmt: skip
    return out


def import_embeddings(path: Path) -> Gallery:
    """The rows of embeddings file `path` as a gallery. Names: its identities dataset, else the folder each image
    lies in (as build-db names identity folders). Refuses a wrong shape, a non-finite or un-normalised row, and
    missing model attributes, with one line naming the file."""
    import h5py

    if not path.is_file():
        raise MissingDataError(f"{path}: no such embeddings file")
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise DataFormatError(f"{path}: not an HDF5 file (expected embeddings written by facekit embed)") from None
    try:
        with f:
            return _read_embeddings(f, path)
    except (KeyError, OSError, RuntimeError, TypeError, ValueError) as exc:  # how HDF5 reports damaged bytes
        reason = str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc).splitlines()[0][:120]
        raise DataFormatError(f"{path}: damaged embeddings file ({reason})") from None


def _read_embeddings(f, path: Path) -> Gallery:
    import h5py

    for name in ("embeddings", "images"):
        if not isinstance(f.get(name), h5py.Dataset):
            raise DataFormatError(f"{path}: no dataset {name} (expected embeddings written by facekit embed)")
    shape = f["embeddings"].shape
    if len(shape) != 2 or not shape[0] or not 1 <= shape[1] <= MAX_DIM or f["embeddings"].dtype.kind != "f":
        raise DataFormatError(f"{path}: dataset embeddings is {f['embeddings'].dtype} {list(shape)}, expected "
                              f"floats [N, D] with N >= 1 and D of 1 to {MAX_DIM}")  # fmt: skip
    n = shape[0]
    expected = {"images": (n,), "identities": (n,), "boxes": (n, 4), "landmarks": (n, 5, 2), "scores": (n,)}
    for name, want in expected.items():
        if name in f and f[name].shape != want:
            raise DataFormatError(f"{path}: dataset {name} has shape {list(f[name].shape)}, expected {list(want)}")
    missing = [a for a in ("recognizer", "recognizer_fingerprint", "crop_size", "alignment_template", "flip")
               if a not in f.attrs]  # fmt: skip
    if missing:
        raise DataFormatError(f"{path}: lacks attribute(s) {', '.join(missing)} naming the models that made it")
    size = path.stat().st_size
    embeddings = read_rows(f["embeddings"], n, "embeddings", path, size, kind="float", unit=True)
    images = read_rows(f["images"], n, "images", path, size, kind="text")
    names = (read_rows(f["identities"], n, "identities", path, size, kind="text") if "identities" in f
             else [Path(image).parent.name for image in images])  # fmt: skip
    empty = [i for i, name in enumerate(names) if not name]
    if empty:
        raise DataFormatError(f"{path}: row {empty[0]} has no identity name (image {images[empty[0]]!r})")
    optional = {name: read_rows(f[name], n, name, path, size, kind="float") if name in f else np.zeros((n, *want[1:]))
                for name, want in expected.items() if name in ("boxes", "landmarks", "scores")}  # fmt: skip

    def text(name: str) -> str:
        value = f.attrs[name]
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)

    detector = (ModelStamp(text("detector"), text("detector_fingerprint")) if "detector_fingerprint" in f.attrs
                else NO_DETECTOR)  # fmt: skip
    base = Gallery.empty(shape[1], ModelStamp(text("recognizer"), text("recognizer_fingerprint")), detector,
                         crop_size=int(f.attrs["crop_size"]), flip=bool(f.attrs["flip"]),
                         template=np.asarray(f.attrs["alignment_template"], np.float32))  # fmt: skip
    enrolment = Enrolment(base)
    enrolment.add(embeddings, names, images, optional["boxes"], optional["landmarks"], optional["scores"])
    return enrolment.gallery()
