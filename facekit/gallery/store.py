"""The gallery ("base library"): one HDF5 file of known faces. Layout: data_layouts/gallery.md.

A write either makes a whole new file beside the old one and renames it over, or, when the gallery only gained rows
since it was loaded from that file, appends them in place past the committed row counts and commits them by
rewriting one attribute last (append_rows). Either way a crash leaves the old gallery or the new one.
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
from typing import TYPE_CHECKING

import numpy as np

from facekit import __version__
from facekit.align import ARCFACE_SIZE, describe_alignment
from facekit.align import template as arcface_template
from facekit.errors import DataFormatError, MissingDataError
from facekit.fileio import atomic_path
from facekit.gallery.schema import NORM_TOLERANCE, SCHEMA_VERSION, committed_rows, read_gallery

if TYPE_CHECKING:
    import h5py

LIBVER = ("v110", "v110")  # HDF5 1.10's file format: checksummed object headers and chunk indexes
DEFAULT_FILE = "gallery.h5"  # the file name used when DB_OUTPUT_PATH is a folder
CHUNK_ROWS = 4096  # rows per HDF5 chunk
FILTERS = {"compression": "gzip", "shuffle": True, "fletcher32": True}
TEXT_BYTES = {"sources": 256, "identities": 128}  # fixed-length text room, so appended names usually fit in place


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
    # (resolved file, its content_id, N, K) when the first N rows and K identities are that file's committed ones
    stored: tuple[str, str, int, int] | None = field(default=None, repr=False, compare=False, kw_only=True)

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
        """A new gallery with M more entries (embeddings [M, D] ...); new names become new identities. Copies the
        gallery once: to add many batches, use Enrolment."""
        enrolment = Enrolment(self)
        enrolment.add(embeddings, names, sources, boxes, landmarks, det_scores)
        return enrolment.gallery()

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
            stored=None,
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
        """Write the gallery to `path`, all or nothing: in place (append_rows) when it is the gallery loaded from
        `path` plus rows added since and the file has not changed meanwhile, else as a new file renamed over it
        after removing the temporaries of earlier killed writes. The caller holds write_lock(path). Every byte is
        checksummed: datasets chunked, gzip-compressed and fletcher32-summed, text as fixed-length UTF-8 (HDF5
        cannot checksum variable-length strings), metadata in HDF5 1.10's checksummed format."""
        import h5py

        if not len(self):
            raise ValueError("refusing to write a gallery without faces")
        path = Path(path)
        if self._append_in_place(path):
            return path
        self._check_values(path, 0)
        data = {
            "embeddings": self.embeddings,
            "identity_index": self.identity_index,
            "sources": utf8(self.sources, TEXT_BYTES["sources"]),
            "boxes": self.boxes,
            "landmarks": self.landmarks,
            "det_scores": self.det_scores,
            "identities": utf8(self.identities, TEXT_BYTES["identities"]),
            "templates": self.templates(),
        }
        _stale(path, remove=True)
        with _writing(path) as tmp, h5py.File(tmp, "w", libver=LIBVER, locking=False) as f:  # _writing locks it
            for name, values in data.items():
                f.create_dataset(name, data=values, chunks=(CHUNK_ROWS, *values.shape[1:]),
                                 maxshape=(None, *values.shape[1:]), **FILTERS)  # fmt: skip
            f.attrs.update(
                {
                    "format": utf8("facekit-gallery"),
                    "schema_version": SCHEMA_VERSION,
                    "embedding_dim": self.dim,
                    "recognizer": utf8(self.recognizer.name),
                    "recognizer_fingerprint": utf8(self.recognizer.fingerprint),
                    "detector": utf8(self.detector.name),
                    "detector_fingerprint": utf8(self.detector.fingerprint),
                    "alignment_template": (self.template * (ARCFACE_SIZE / self.crop_size)).astype(np.float32),
                    "crop_size": self.crop_size,
                    "flip": self.flip,
                    "facekit_version": utf8(__version__),
                    "created": utf8(self.created),
                    "updated": utf8(_now()),
                    "content_id": utf8(self.content_id),
                    "committed": np.array([len(self), len(self.identities)], np.int64),
                }
            )
        self.stored = (str(path.resolve()), self.content_id, len(self), len(self.identities))
        return path

    def _append_in_place(self, path: Path) -> bool:
        """Write the rows and identities added since this gallery was loaded from (or saved to) `path` into that
        file in place; False, having written nothing, when there are none, the file is not that gallery any more
        (or is gone), predates resizable datasets, or a new name is longer than its fixed-length text column.

        Commit protocol: the new rows go past the committed counts (datasets resized, written, flushed), then a
        new content_id, then attribute `committed` = [N, K] is rewritten last; readers read only up to it. The
        stored templates of identities that already had faces are refreshed after that (facekit computes its own;
        see data_layouts/gallery.md)."""
        if self.stored is None or self.stored[0] != str(path.resolve()) or self.stored[2] >= len(self):
            return False
        _, content_id, n, k = self.stored
        self._check_values(path, n)
        names = {"sources": utf8(self.sources[n:]), "identities": utf8(self.identities[k:])}
        try:
            f = _open_swmr_write(path)  # the caller holds write_lock(path)
        except OSError:
            return False
        with f:
            if committed_rows(f) != (content_id, n, k) or any(f[name].maxshape[0] is not None for name in f):
                return False
            if any(values.dtype.itemsize > f[name].dtype.itemsize for name, values in names.items()):
                return False
            touched = np.unique(self.identity_index[n:])
            templates = mean_templates(*_members(self.embeddings, self.identity_index, touched), len(touched))
            rows = {"embeddings": self.embeddings, "identity_index": self.identity_index, "boxes": self.boxes,
                    "landmarks": self.landmarks, "det_scores": self.det_scores}  # fmt: skip
            for name, values in {**rows, "sources": names["sources"]}.items():
                f[name].resize(len(self), axis=0)
                f[name][n:] = values[n:] if name in rows else values
            f["identities"].resize(len(self.identities), axis=0)
            f["identities"][k:] = names["identities"]
            f["templates"].resize(len(self.identities), axis=0)
            new = touched >= k
            f["templates"][k:] = templates[new]
            f.flush()
            self.content_id = uuid.uuid4().hex
            f.attrs["content_id"] = utf8(self.content_id)
            f.attrs["updated"] = utf8(_now())
            f.flush()
            f.attrs["committed"] = np.array([len(self), len(self.identities)], np.int64)  # the commit
            f.flush()
            old, refreshed = touched[~new], templates[~new]
            for chunk in np.unique(old // CHUNK_ROWS):  # a chunk at a time: one read and one write each
                start, stop = chunk * CHUNK_ROWS, min((chunk + 1) * CHUNK_ROWS, k)
                block, mine = f["templates"][start:stop], (old >= start) & (old < stop)
                block[old[mine] - start] = refreshed[mine]
                f["templates"][start:stop] = block
        self.stored = (str(path.resolve()), self.content_id, len(self), len(self.identities))
        return True

    def _check_values(self, path: Path, start: int) -> None:
        """Refuse to write rows start: holding a non-unit embedding or a non-finite number."""
        norms = np.linalg.norm(self.embeddings[start:].astype(np.float64), axis=1)
        bad = np.flatnonzero(~(np.abs(norms - 1) <= NORM_TOLERANCE))
        if len(bad):
            raise DataFormatError(
                f"{path}: refusing to write embedding {start + bad[0]}: L2 norm {norms[bad[0]]:.6g}, not 1"
            )
        for name in ("boxes", "landmarks", "det_scores"):
            if not np.isfinite(getattr(self, name)[start:]).all():
                raise DataFormatError(f"{path}: refusing to write {name} holding NaN or infinite values")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Gallery:
        """Read a gallery written by save(), every attribute and dataset checked against the schema and each other
        before its data is read (facekit.gallery.schema), the rows read and checked in bounded blocks."""
        import h5py

        path = Path(path)
        if not path.is_file():
            raise MissingDataError(f"{path}: no such gallery file")
        try:
            try:
                f = h5py.File(path, "r")
            except OSError as exc:  # an append killed in SWMR mode leaves the file marked as being written
                if "already open for write" not in str(exc):
                    raise
                f = h5py.File(path, "r", swmr=True)  # SWMR readers may read it (they retry damaged metadata: not first)
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
            stored=(str(path.resolve()), attrs["content_id"], len(values["embeddings"]), len(values["identities"])),
        )


class Enrolment:
    """Faces added batch by batch to `base`: each add costs O(its faces) (the batches are kept as a list of chunks),
    gallery() joins them once. The gallery it returns keeps `base`'s link to its file, so saving it appends in
    place."""

    def __init__(self, base: Gallery) -> None:
        self.base = base
        self.identities = list(base.identities)
        self._position = {name: i for i, name in enumerate(self.identities)}
        self._chunks: list[tuple[np.ndarray, ...]] = []
        self._sources: list[str] = []

    def __len__(self) -> int:
        return len(self.base) + len(self._sources)

    def add(
        self,
        embeddings: np.ndarray,
        names: Sequence[str],
        sources: Sequence[str],
        boxes: np.ndarray,
        landmarks: np.ndarray,
        det_scores: np.ndarray,
    ) -> None:
        """M more entries: embeddings [M, D] (normalised here; a zero or non-finite row is refused), their
        identity names (new ones become new identities), source paths, boxes [M, 4], landmarks [M, 5, 2],
        det_scores [M]."""
        if embeddings.shape[1:] != (self.base.dim,):
            raise ValueError(f"embeddings of shape {embeddings.shape[1:]} do not fit a {self.base.dim}-d gallery")
        embeddings = np.asarray(embeddings, np.float64)
        norms = np.linalg.norm(embeddings, axis=1)
        bad = np.flatnonzero(~(norms > 1e-6) | ~np.isfinite(norms))
        if len(bad):
            raise DataFormatError(
                f"refusing to add embedding {bad[0]} of {len(embeddings)} ({names[bad[0]]}, {sources[bad[0]]}): "
                f"{'zero' if np.isfinite(norms[bad[0]]) else 'NaN or infinite'}; the recognizer's output is broken"
            )
        for name in names:
            if name not in self._position:
                self._position[name] = len(self.identities)
                self.identities.append(name)
        self._chunks.append(
            (
                (embeddings / np.where(np.abs(norms - 1) < 1e-7, 1, norms)[:, None]).astype(np.float32),  # unit: as is
                np.array([self._position[n] for n in names], np.int32),
                np.asarray(boxes, np.float32).reshape(-1, 4),
                np.asarray(landmarks, np.float32).reshape(-1, 5, 2),
                np.asarray(det_scores, np.float32).reshape(-1),
            )
        )
        self._sources.extend(sources)

    def gallery(self) -> Gallery:
        """The base gallery and every face added, as one gallery (a new content_id once a face was added)."""
        if not self._chunks:
            return self.base
        b = self.base
        columns = zip((b.embeddings, b.identity_index, b.boxes, b.landmarks, b.det_scores), *self._chunks, strict=True)
        embeddings, identity_index, boxes, landmarks, det_scores = (np.concatenate(c) for c in columns)
        return replace(b, embeddings=embeddings, identity_index=identity_index, identities=list(self.identities),
                       sources=[*b.sources, *self._sources], boxes=boxes, landmarks=landmarks, det_scores=det_scores,
                       content_id=uuid.uuid4().hex)  # fmt: skip


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


def _open_swmr_write(path: Path) -> h5py.File:
    """`path` opened read-write in SWMR mode from the first moment, so HDF5 orders its metadata writes to keep the
    file readable throughout, and readers accept the mark it leaves. (File(path, "r+") then swmr_mode = True left a
    moment when readers were refused, and a file that none could open if the writer was killed in it.) No HDF5 file
    lock: the caller holds write_lock(path)."""
    import h5py
    from h5py import h5f, h5p

    fapl = h5p.create(h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5f.LIBVER_V110, h5f.LIBVER_V110)  # LIBVER
    fapl.set_file_locking(False, True)
    return h5py.File(h5f.open(os.fsencode(path), h5f.ACC_RDWR | h5f.ACC_SWMR_WRITE, fapl=fapl))


def utf8(text: str | Sequence[str], room: int = 1) -> np.ndarray:
    """`text` (one str or a sequence) as fixed-length UTF-8 strings, which HDF5 keeps in checksummed storage, at
    least `room` bytes long each."""
    import h5py

    encoded = [t.encode("utf-8") for t in ([text] if isinstance(text, str) else text)]
    values = np.array(encoded, dtype=h5py.string_dtype("utf-8", max([room, *map(len, encoded)])))
    return values[0] if isinstance(text, str) else values


def mean_templates(embeddings: np.ndarray, labels: np.ndarray, identities: int) -> np.ndarray:
    """The L2-normalised mean of each identity's embeddings [N, D] (labels [N] in 0..identities-1): float32 [K, D]."""
    sums = np.zeros((identities, embeddings.shape[1]), np.float64)
    np.add.at(sums, labels, embeddings)
    return _normalise(sums).astype(np.float32)


def _members(embeddings: np.ndarray, labels: np.ndarray, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, labels renumbered 0..len(chosen)-1) of the rows whose label is in `chosen` (sorted labels)."""
    at = np.searchsorted(chosen, labels)
    keep = (at < len(chosen)) & (chosen[np.minimum(at, len(chosen) - 1)] == labels)
    return embeddings[keep], at[keep]


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
