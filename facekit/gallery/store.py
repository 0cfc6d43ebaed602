"""The gallery ("base library"): one HDF5 file of known faces. Layout: data_layouts/gallery.md.

Every write makes a whole new file beside the old one and renames it over, so a crash leaves the previous gallery.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from facekit import __version__
from facekit.align import ARCFACE_SIZE, describe_alignment
from facekit.align import template as arcface_template
from facekit.errors import DataFormatError, MissingDataError
from facekit.fileio import atomic_path
from facekit.gallery.schema import NORM_TOLERANCE, SCHEMA_VERSION, read_gallery

LIBVER = ("v110", "v110")  # HDF5 1.10's file format: checksummed object headers and chunk indexes
DEFAULT_FILE = "gallery.h5"  # the file name used when DB_OUTPUT_PATH is a folder


@dataclass(frozen=True)
class ModelStamp:
    """Which model made the gallery's faces: its display name and sha256 fingerprint."""

    name: str
    fingerprint: str

    @classmethod
    def of(cls, model: object) -> ModelStamp:
        return cls(model.name, model.fingerprint)


@dataclass
class Gallery:
    """N face entries of K identities. embeddings: float32 [N, D] L2-normalised; identity_index: int32 [N] into
    identities; sources: [N] image paths; boxes [N, 4], landmarks [N, 5, 2] in source pixels; det_scores [N]."""

    embeddings: np.ndarray
    identity_index: np.ndarray
    identities: list[str]
    sources: list[str]
    boxes: np.ndarray
    landmarks: np.ndarray
    det_scores: np.ndarray
    recognizer: ModelStamp
    detector: ModelStamp
    crop_size: int = ARCFACE_SIZE
    flip: bool = False
    template: np.ndarray | None = None  # float32 [5, 2]: the points faces were warped onto (crop pixels; None: ArcFace)
    created: str = field(default_factory=lambda: _now())
    content_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # changes with every change of the entries

    def __post_init__(self) -> None:
        points = arcface_template(self.crop_size) if self.template is None else self.template
        self.template = np.asarray(points, np.float32)

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]

    @classmethod
    def empty(
        cls,
        dim: int,
        recognizer: ModelStamp,
        detector: ModelStamp,
        *,
        crop_size: int,
        flip: bool,
        template: np.ndarray | None = None,
    ) -> Gallery:
        return cls(
            np.zeros((0, dim), np.float32),
            np.zeros(0, np.int32),
            [],
            [],
            np.zeros((0, 4), np.float32),
            np.zeros((0, 5, 2), np.float32),
            np.zeros(0, np.float32),
            recognizer,
            detector,
            crop_size,
            flip,
            template,
        )

    def templates(self) -> np.ndarray:
        """Per-identity mean embedding, L2-normalised: float32 [K, D]."""
        return mean_templates(self.embeddings, self.identity_index, len(self.identities))

    def counts(self) -> dict[str, int]:
        """Entries per identity, in identity order."""
        counts = np.bincount(self.identity_index, minlength=len(self.identities))
        return dict(zip(self.identities, counts.tolist(), strict=True))

    def add(
        self,
        embeddings: np.ndarray,
        names: Sequence[str],
        sources: Sequence[str],
        boxes: np.ndarray,
        landmarks: np.ndarray,
        det_scores: np.ndarray,
    ) -> Gallery:
        """A new gallery with M more entries (embeddings [M, D] ...); new names become new identities."""
        if embeddings.shape[1:] != (self.dim,):
            raise ValueError(f"embeddings of shape {embeddings.shape[1:]} do not fit a {self.dim}-d gallery")
        embeddings = np.asarray(embeddings, np.float64)
        norms = np.linalg.norm(embeddings, axis=1)
        bad = np.flatnonzero(~(norms > 1e-6) | ~np.isfinite(norms))
        if len(bad):
            raise DataFormatError(
                f"refusing to add embedding {bad[0]} of {len(embeddings)} ({names[bad[0]]}, {sources[bad[0]]}): "
                f"{'zero' if np.isfinite(norms[bad[0]]) else 'NaN or infinite'}; the recognizer's output is broken"
            )
        identities = list(self.identities)
        position = {name: i for i, name in enumerate(identities)}
        for name in names:
            if name not in position:
                position[name] = len(identities)
                identities.append(name)
        return replace(
            self,
            embeddings=np.concatenate([self.embeddings, _normalise(embeddings).astype(np.float32)]),
            identity_index=np.concatenate([self.identity_index, [position[n] for n in names]]).astype(np.int32),
            identities=identities,
            sources=[*self.sources, *sources],
            boxes=np.concatenate([self.boxes, np.asarray(boxes, np.float32).reshape(-1, 4)]),
            landmarks=np.concatenate([self.landmarks, np.asarray(landmarks, np.float32).reshape(-1, 5, 2)]),
            det_scores=np.concatenate([self.det_scores, np.asarray(det_scores, np.float32).reshape(-1)]),
            content_id=uuid.uuid4().hex,
        )

    def remove(self, names: Iterable[str]) -> Gallery:
        """A new gallery without the entries of identities `names` (unknown names raise KeyError)."""
        names = set(names)
        unknown = sorted(names - set(self.identities))
        if unknown:
            raise KeyError(", ".join(unknown))
        gone = np.array([name in names for name in self.identities] + [False], bool)
        keep = ~gone[self.identity_index]
        remaining = [name for name in self.identities if name not in names]
        renumber = np.cumsum(~gone[:-1]) - 1
        return replace(
            self,
            embeddings=self.embeddings[keep],
            identity_index=renumber[self.identity_index[keep]].astype(np.int32),
            identities=remaining,
            sources=[s for s, k in zip(self.sources, keep, strict=True) if k],
            boxes=self.boxes[keep],
            landmarks=self.landmarks[keep],
            det_scores=self.det_scores[keep],
            content_id=uuid.uuid4().hex,
        )

    def check_recognizer(self, recognizer: object, path: str | os.PathLike) -> None:
        """Refuse to compare this gallery's embeddings with those of another model (other crops, other size or
        other weights)."""
        theirs = (recognizer.input_size, np.asarray(recognizer.template, np.float32))
        if theirs[0] != self.crop_size or not np.allclose(theirs[1], self.template, atol=1e-3):
            raise DataFormatError(
                f"{path}: gallery faces were aligned to {describe_alignment(self.crop_size, self.template)}; "
                f"recognizer {recognizer.name} takes {describe_alignment(*theirs)}; use the recognizer that built it "
                f"({self.recognizer.name}) or rebuild the gallery with build-db"
            )
        if recognizer.embedding_size != self.dim:
            raise DataFormatError(
                f"{path}: gallery holds {self.dim}-d embeddings, recognizer {recognizer.name} makes "
                f"{recognizer.embedding_size}-d ones; use the recognizer that built it ({self.recognizer.name})"
            )
        if recognizer.fingerprint != self.recognizer.fingerprint:
            raise DataFormatError(
                f"{path}: gallery was built by recognizer {self.recognizer.name} (sha256 "
                f"{self.recognizer.fingerprint[:12]}), not {recognizer.name} ({recognizer.fingerprint[:12]}); "
                "use that recognizer or rebuild the gallery with build-db"
            )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the gallery to `path` atomically, after removing the temporaries of earlier killed writes. Every
        byte is checksummed: datasets chunked, gzip-compressed and fletcher32-summed, text as fixed-length UTF-8
        (HDF5 cannot checksum variable-length strings), metadata in HDF5 1.10's checksummed format."""
        import h5py

        if not len(self):
            raise ValueError("refusing to write a gallery without faces")
        path = Path(path)
        norms = np.linalg.norm(self.embeddings.astype(np.float64), axis=1)
        bad = np.flatnonzero(~(np.abs(norms - 1) <= NORM_TOLERANCE))
        if len(bad):
            raise DataFormatError(f"{path}: refusing to write embedding {bad[0]}: L2 norm {norms[bad[0]]:.6g}, not 1")
        for name in ("boxes", "landmarks", "det_scores"):
            if not np.isfinite(getattr(self, name)).all():
                raise DataFormatError(f"{path}: refusing to write {name} holding NaN or infinite values")
        data = {
            "embeddings": self.embeddings,
            "identity_index": self.identity_index,
            "sources": _utf8(self.sources),
            "boxes": self.boxes,
            "landmarks": self.landmarks,
            "det_scores": self.det_scores,
            "identities": _utf8(self.identities),
            "templates": self.templates(),
        }
        _stale(path, remove=True)
        with _writing(path) as tmp, h5py.File(tmp, "w", libver=LIBVER, locking=False) as f:  # _writing locks it
            for name, values in data.items():
                chunks = (min(len(values), 4096), *values.shape[1:])
                f.create_dataset(name, data=values, chunks=chunks, compression="gzip", shuffle=True, fletcher32=True)
            f.attrs.update(
                {
                    "format": _utf8("facekit-gallery"),
                    "schema_version": SCHEMA_VERSION,
                    "embedding_dim": self.dim,
                    "recognizer": _utf8(self.recognizer.name),
                    "recognizer_fingerprint": _utf8(self.recognizer.fingerprint),
                    "detector": _utf8(self.detector.name),
                    "detector_fingerprint": _utf8(self.detector.fingerprint),
                    "alignment_template": (self.template * (ARCFACE_SIZE / self.crop_size)).astype(np.float32),
                    "crop_size": self.crop_size,
                    "flip": self.flip,
                    "facekit_version": _utf8(__version__),
                    "created": _utf8(self.created),
                    "updated": _utf8(_now()),
                    "content_id": _utf8(self.content_id),
                }
            )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Gallery:
        """Read a gallery written by save(), every attribute and dataset checked against the schema and each other
        before its data is read (facekit.gallery.schema), the rows read and checked in bounded blocks."""
        import h5py

        path = Path(path)
        if not path.is_file():
            raise MissingDataError(f"{path}: no such gallery file")
        try:
            f = h5py.File(path, "r")
        except OSError:
            raise DataFormatError(f"{path}: not an HDF5 file (expected a gallery made by facekit build-db)") from None
        try:
            with f:
                attrs, values = read_gallery(f, path)
        except (KeyError, OSError, RuntimeError, TypeError, ValueError) as exc:  # how HDF5 reports damaged bytes
            reason = str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc).splitlines()[0][:120]
            raise DataFormatError(f"{path}: damaged gallery file ({reason}); rebuild it with build-db") from None
        return cls(
            embeddings=values["embeddings"],
            identity_index=values["identity_index"],
            identities=values["identities"],
            sources=values["sources"],
            boxes=values["boxes"],
            landmarks=values["landmarks"],
            det_scores=values["det_scores"],
            recognizer=ModelStamp(attrs["recognizer"], attrs["recognizer_fingerprint"]),
            detector=ModelStamp(attrs["detector"], attrs["detector_fingerprint"]),
            crop_size=attrs["crop_size"],
            flip=attrs["flip"],
            template=attrs["alignment_template"] * (attrs["crop_size"] / ARCFACE_SIZE),  # stored in a 112 frame
            created=attrs["created"],
            content_id=attrs["content_id"],
        )


def gallery_file(path: str | os.PathLike) -> Path:
    """DB_OUTPUT_PATH as a file: a folder (existing, or named with a trailing slash) gets gallery.h5 inside."""
    p = Path(path)
    return p / DEFAULT_FILE if p.is_dir() or os.fspath(path).endswith(os.sep) else p


def stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """The hidden temporaries (`.NAME.xxxxxxxx.tmp`) that killed writes of gallery `path` left beside it; a write
    in progress holds a lock on its own, so it is never among them."""
    return _stale(Path(path), remove=False)


def _stale(path: Path, *, remove: bool) -> list[Path]:
    """stale_temporaries(path), deleted too when `remove` (those that cannot be deleted are not listed)."""
    import fcntl

    pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")  # tempfile's names: see fileio
    try:
        candidates = sorted(p for p in path.parent.iterdir() if pattern.fullmatch(p.name))
    except OSError:
        return []
    stale = []
    for candidate in candidates:
        try:
            fd = os.open(candidate, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by its writer from creation to rename
            if remove:
                candidate.unlink()
            stale.append(candidate)
        except OSError:
            continue
        finally:
            os.close(fd)
    return stale


@contextmanager
def _writing(path: Path) -> Iterator[Path]:
    """atomic_path(path) whose temporary stays locked (flock) from its creation until it is renamed or removed,
    so that other writers know it is not stale. HDF5 must then open it with locking=False."""
    import fcntl

    held = []
    try:
        with atomic_path(path) as tmp:
            held.append(os.open(tmp, os.O_RDONLY))
            fcntl.flock(held[0], fcntl.LOCK_EX)
            yield tmp
    finally:
        for fd in held:
            os.close(fd)


def _utf8(text: str | Sequence[str]) -> np.ndarray:
    """`text` (one str or a sequence) as fixed-length UTF-8 strings, which HDF5 keeps in checksummed storage."""
    import h5py

    encoded = [t.encode("utf-8") for t in ([text] if isinstance(text, str) else text)]
    values = np.array(encoded, dtype=h5py.string_dtype("utf-8", max([1, *map(len, encoded)])))
    return values[0] if isinstance(text, str) else values


def mean_templates(embeddings: np.ndarray, labels: np.ndarray, identities: int) -> np.ndarray:
    """The L2-normalised mean of each identity's embeddings [N, D] (labels [N] in 0..identities-1): float32 [K, D]."""
    sums = np.zeros((identities, embeddings.shape[1]), np.float64)
    np.add.at(sums, labels, embeddings)
    return _normalise(sums).astype(np.float32)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
