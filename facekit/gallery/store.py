"""The gallery ("base library"): one HDF5 file of known faces. Layout: data_layouts/gallery.md.

Every write makes a whole new file beside the old one and renames it over, so a crash leaves the previous gallery.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from facekit import __version__
from facekit.align import ARCFACE_TEMPLATE
from facekit.errors import DataFormatError, MissingDataError
from facekit.fileio import atomic_path

SCHEMA_VERSION = 1
GALLERY_SUFFIXES = (".h5", ".hdf5")
DEFAULT_FILE = "gallery.h5"  # the file name used when DB_OUTPUT_PATH is a folder
# per-entry datasets: name -> (dtype, shape after N)
ENTRY_DATASETS = {
    "embeddings": (np.float32, None),  # [N, D]
    "identity_index": (np.int32, ()),
    "sources": (str, ()),
    "boxes": (np.float32, (4,)),
    "landmarks": (np.float32, (5, 2)),
    "det_scores": (np.float32, ()),
}


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
    crop_size: int = 112
    flip: bool = False
    created: str = field(default_factory=lambda: _now())
    content_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # changes with every change of the entries

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]

    @classmethod
    def empty(cls, dim: int, recognizer: ModelStamp, detector: ModelStamp, *, crop_size: int, flip: bool) -> Gallery:
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
        """Refuse to compare this gallery's embeddings with those of another model."""
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
        """Write the gallery to `path` atomically (chunked, gzip-compressed datasets)."""
        import h5py

        if not len(self):
            raise ValueError("refusing to write a gallery without faces")
        path = Path(path)
        strings = h5py.string_dtype("utf-8")
        data = {
            "embeddings": self.embeddings,
            "identity_index": self.identity_index,
            "sources": np.array(self.sources, dtype=object),
            "boxes": self.boxes,
            "landmarks": self.landmarks,
            "det_scores": self.det_scores,
        }
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            for name, values in data.items():
                chunks = (min(len(values), 4096), *values.shape[1:])
                dtype = strings if values.dtype == object else values.dtype
                f.create_dataset(name, data=values, dtype=dtype, chunks=chunks, compression="gzip", shuffle=True)
            f.create_dataset("identities", data=np.array(self.identities, dtype=object), dtype=strings)
            f.create_dataset("templates", data=self.templates(), compression="gzip", shuffle=True)
            f.attrs.update(
                {
                    "format": "facekit-gallery",
                    "schema_version": SCHEMA_VERSION,
                    "embedding_dim": self.dim,
                    "recognizer": self.recognizer.name,
                    "recognizer_fingerprint": self.recognizer.fingerprint,
                    "detector": self.detector.name,
                    "detector_fingerprint": self.detector.fingerprint,
                    "alignment_template": ARCFACE_TEMPLATE,
                    "crop_size": self.crop_size,
                    "flip": self.flip,
                    "facekit_version": __version__,
                    "created": self.created,
                    "updated": _now(),
                    "content_id": self.content_id,
                }
            )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Gallery:
        """Read and validate a gallery written by save()."""
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
                attrs = dict(f.attrs)
                if attrs.get("format") != "facekit-gallery":
                    raise DataFormatError(f"{path}: an HDF5 file, but not a facekit gallery (no format attribute)")
                if int(attrs.get("schema_version", -1)) != SCHEMA_VERSION:
                    raise DataFormatError(
                        f"{path}: gallery schema version {attrs.get('schema_version')}; this facekit reads "
                        f"{SCHEMA_VERSION} (facekit {__version__})"
                    )
                missing = [name for name in [*ENTRY_DATASETS, "identities"] if name not in f]
                if missing:
                    raise DataFormatError(f"{path}: gallery lacks dataset(s) {', '.join(missing)}")
                values = {name: f[name][()] for name in ENTRY_DATASETS}
                identities = [s.decode("utf-8") for s in f["identities"][()]]
            gallery = cls(
                embeddings=np.asarray(values["embeddings"], np.float32),
                identity_index=np.asarray(values["identity_index"], np.int32),
                identities=identities,
                sources=[s.decode("utf-8") for s in values["sources"]],
                boxes=values["boxes"],
                landmarks=values["landmarks"],
                det_scores=values["det_scores"],
                recognizer=ModelStamp(str(attrs["recognizer"]), str(attrs["recognizer_fingerprint"])),
                detector=ModelStamp(str(attrs["detector"]), str(attrs["detector_fingerprint"])),
                crop_size=int(attrs["crop_size"]),
                flip=bool(attrs["flip"]),
                created=str(attrs["created"]),
                content_id=str(attrs["content_id"]),
            )
            dim = int(attrs["embedding_dim"])
        except KeyError as exc:
            raise DataFormatError(f"{path}: gallery lacks attribute {exc.args[0]}; rebuild it with build-db") from None
        except (OSError, RuntimeError, ValueError) as exc:  # how HDF5 reports damaged bytes inside the file
            raise DataFormatError(
                f"{path}: damaged gallery file ({str(exc).splitlines()[0][:120]}); rebuild it with build-db"
            ) from None
        _validate(gallery, path, dim)
        return gallery


def gallery_file(path: str | os.PathLike) -> Path:
    """DB_OUTPUT_PATH as a file: a folder (existing, or named with a trailing slash) gets gallery.h5 inside."""
    p = Path(path)
    return p / DEFAULT_FILE if p.is_dir() or os.fspath(path).endswith(os.sep) else p


def _validate(gallery: Gallery, path: Path, dim: int) -> None:
    n = len(gallery.embeddings)
    if gallery.embeddings.ndim != 2 or gallery.dim != dim:
        raise DataFormatError(f"{path}: embeddings have shape {gallery.embeddings.shape}, expected [N, {dim}]")
    for name, (_, shape) in ENTRY_DATASETS.items():
        values = getattr(gallery, name)
        actual = (len(values),) if isinstance(values, list) else values.shape
        if shape is not None and actual != (n, *shape):
            raise DataFormatError(f"{path}: dataset {name} has shape {list(actual)}, expected {[n, *shape]}")
    if n and not 0 <= gallery.identity_index.min() <= gallery.identity_index.max() < len(gallery.identities):
        raise DataFormatError(f"{path}: identity_index points outside the {len(gallery.identities)} identities")


def mean_templates(embeddings: np.ndarray, labels: np.ndarray, identities: int) -> np.ndarray:
    """The L2-normalised mean of each identity's embeddings [N, D] (labels [N] in 0..identities-1): float32 [K, D]."""
    sums = np.zeros((identities, embeddings.shape[1]), np.float64)
    np.add.at(sums, labels, embeddings)
    return _normalise(sums).astype(np.float32)


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
