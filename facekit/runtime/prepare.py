"""Raw photos of identity folders -> aligned crops: `facekit align` (folders of crops + alignment.json),
`facekit pack-rec --detect` (RecordIO) and `facekit make-bin` (verification pairs). Layouts:
data_layouts/aligned_folders.md and data_layouts/verification_bin.md.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from facekit import DEFAULT_JPEG_QUALITY, DEFAULT_MAX_PIXELS, strict_json
from facekit.align import template as arcface_template
from facekit.data.folders import IdentityFolders, scan_identity_folders
from facekit.data.images import decode_image, encode_jpeg, read_each, read_file
from facekit.data.lst import Property
from facekit.data.pairs import FOLDS, sample_pairs
from facekit.data.recset import Sample, write_recognition_set
from facekit.data.shard import Shard, require_some
from facekit.data.verification import PAIRS_FORMAT, VerificationSet, write_bin
from facekit.detection.faces import DetectSettings
from facekit.errors import DataFormatError, FacekitError, LayoutError, OutputConflictError
from facekit.fileio import atomic_write
from facekit.runtime.pipeline import FacePipeline, Photo, align_each

ALIGNMENT_FILE = "alignment.json"
ALIGNMENT_FORMAT = "facekit-alignment/1"
STATUSES = ("ok", "no_face", "unreadable")
SAVE_EVERY = 200  # photos between two saves of alignment.json during a run
_JPEG = b"\xff\xd8\xff"


@dataclass(frozen=True)
class AlignSettings:
    """How a photo becomes a crop: the detector sees it scaled down to `max_size` (None: as it is) and keeps faces
    scoring above `threshold`; `pick` (runtime.pipeline.PICKS) chooses one; it is warped onto the 5 points
    `template` of a `size` x `size` crop (a recognizer's own; None: ArcFace's scaled to `size`). Photos over
    `max_pixels` are refused before they are decoded (not recorded: it changes no crop)."""

    size: int
    pick: str
    max_size: int | None
    threshold: float
    max_pixels: int = DEFAULT_MAX_PIXELS
    template: tuple[tuple[float, float], ...] | None = None

    @property
    def points(self) -> np.ndarray:
        """The template as float32 [5, 2] crop pixels."""
        return arcface_template(self.size) if self.template is None else np.array(self.template, np.float32)

    @property
    def detect(self) -> DetectSettings:
        return DetectSettings(threshold=self.threshold, max_size=self.max_size)

    def record(self, detector: object) -> dict:
        """The settings as alignment.json keeps them, with the detector's path and sha256."""
        return {
            "detector": str(getattr(detector, "path", None) or getattr(detector, "name", "")),
            "fingerprint": getattr(detector, "fingerprint", ""),
            "size": self.size,
            "pick": self.pick,
            "max_size": self.max_size,
            "threshold": self.threshold,
            "template": np.round(self.points.astype(np.float64), 4).tolist(),
        }


def output_names(sources: list[str]) -> dict[str, str]:
    """Crop name of each source ("person/x.png" -> "person/x.jpg"). When sources of one folder share a stem, the
    one already named `<stem>.jpg` (else the first in order) keeps `<stem>.jpg` and each other one appends .jpg to
    its whole name ("person/x.png.jpg", then .2.jpg, ... if taken). Names compare case-insensitively (macOS)."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    jpg_first = sorted(sources, key=lambda s: PurePosixPath(s).suffix != ".jpg")  # stable: .jpg ones claim first
    for source in jpg_first:
        path = PurePosixPath(source)
        candidates = itertools.chain(
            [str(path.with_suffix(".jpg")), f"{path}.jpg"], (f"{path}.{k}.jpg" for k in itertools.count(2))
        )
        name = next(c for c in candidates if c.casefold() not in taken)
        taken.add(name.casefold())
        names[source] = name
    return names


def _record(source: str, output: str | None, photo: Photo | None, error: str | None = None) -> dict:
    face = photo.face.as_dict() if photo is not None and photo.face is not None else {}
    return {
        "source": source,
        "output": output,
        "status": "unreadable" if photo is None else "ok" if output else "no_face",
        "faces": None if photo is None else len(photo.faces),
        "picked": None if photo is None else photo.picked,
        "box": face.get("box"),
        "score": face.get("score"),
        "landmarks": face.get("landmarks"),
        "error": error,
    }


@dataclass
class AlignReport:
    """records: one per photo of SRC in scan order (alignment.json's "photos"); reused: how many an earlier run had
    done; removed: crops of an earlier run that no photo gives any more."""

    records: list[dict]
    reused: int = 0
    removed: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)  # person folders without images

    def having(self, status: str) -> list[dict]:
        return [r for r in self.records if r["status"] == status]

    @property
    def several_faces(self) -> list[dict]:
        return [r for r in self.records if r["status"] == "ok" and r["faces"] > 1]

    def summary(self) -> dict:
        return {
            "photos": len(self.records),
            **{status: len(self.having(status)) for status in STATUSES},
            "several_faces": len(self.several_faces),
        }


def _aligned(images: Iterable, detector: object, settings: AlignSettings, workers: int) -> Iterator[Photo]:
    """runtime.pipeline.align_each with `settings` (detection, crop size, pick) and the pipeline's landmark filter."""
    detect = FacePipeline(detector, None, settings.detect).detect
    return align_each(images, detect, size=settings.size, points=settings.points, pick=settings.pick, workers=workers)


def align_folders(
    src: str | os.PathLike,
    out: str | os.PathLike,
    detector: object,
    settings: AlignSettings,
    *,
    workers: int = 1,
    force: bool = False,
    quality: int = DEFAULT_JPEG_QUALITY,
    progress: bool | None = None,
    save_every: int = SAVE_EVERY,
    shard: Shard | None = None,
) -> AlignReport:
    """Align one face of each photo of `src/<person>/...` into `out/<person>/.../<stem>.jpg` (JPEG `quality`) and
    record every photo in `out/alignment.json`, saved every `save_every` photos and when interrupted. Photos an
    earlier run with the same settings did are skipped; other settings are refused unless `force` (then everything
    is redone and crops no photo gives any more are removed). `shard`: the photos of that shard only (the record
    names it); crop names are chosen among all photos, so the crops of all shards never collide."""
    src, out = Path(src), Path(out)
    _refuse_nested(src, out)
    folders = scan_identity_folders(src)
    every = [path.relative_to(folders.root).as_posix() for path, _ in folders.items]
    names = output_names(every)
    positions = [i for i, source in enumerate(every) if shard is None or shard.holds(source)]
    items, sources = [folders.items[i] for i in positions], [every[i] for i in positions]
    require_some(shard, len(sources), len(every), str(src))
    meta = {"format": ALIGNMENT_FORMAT, "source": str(src.resolve()), "settings": settings.record(detector)}
    if shard is not None:
        meta["shard"] = str(shard)
    previous, reuse = _previous(out, meta, force)
    records: dict[str, dict] = {}
    for source in sources:
        old = previous.get(source) if reuse else None
        if old and (old["status"] == "no_face" or (old["output"] == names[source] and (out / names[source]).is_file())):
            records[source] = old
    reused = len(records)
    todo = [i for i, source in enumerate(sources) if source not in records]

    def save() -> None:
        done = [records[s] for s in sources if s in records]
        report = AlignReport(done)
        head = {**meta, "summary": report.summary()}
        lines = [f" {strict_json.dumps(key)}: {strict_json.dumps(value)}," for key, value in head.items()]
        photos = ",\n".join(f"  {strict_json.dumps(record)}" for record in done)
        with atomic_write(out / ALIGNMENT_FILE) as f:  # one line per photo
            f.write("{\n" + "\n".join(lines) + '\n "photos": [\n' + photos + "\n ]\n}\n")

    unreadable: list[str] = []
    images = read_each([items[i][0] for i in todo], unreadable, "align", progress, settings.max_pixels)
    photos = _aligned(images, detector, settings, workers)
    out.mkdir(parents=True, exist_ok=True)
    try:
        for n, photo in enumerate(photos, 1):
            source = sources[todo[photo.index]]
            if photo.error is not None:
                (out / names[source]).unlink(missing_ok=True)
                records[source] = _record(source, None, None, photo.error)
            elif photo.crop is not None:
                with atomic_write(out / names[source], "wb") as f:
                    f.write(encode_jpeg(photo.crop, quality))
                records[source] = _record(source, names[source], photo)
            else:
                (out / names[source]).unlink(missing_ok=True)
                records[source] = _record(source, None, photo)
            if n % save_every == 0:
                save()
    except BaseException:
        save()  # keep the progress of an interrupted run
        raise
    missed = [sources[i] for i in todo if sources[i] not in records]
    for source, message in zip(missed, unreadable, strict=True):
        (out / names[source]).unlink(missing_ok=True)
        records[source] = _record(source, None, None, message)
    kept = {r["output"] for r in records.values() if r["output"]}
    removed = sorted({r["output"] for r in previous.values() if r["output"]} - kept)
    for name in removed:
        (out / name).unlink(missing_ok=True)
    save()
    return AlignReport([records[s] for s in sources], reused, removed, folders.empty)


def _refuse_nested(src: Path, out: Path) -> None:
    a, b = src.resolve(), out.resolve()
    if a == b or a in b.parents or b in a.parents:
        where = "is" if a == b else "is inside" if a in b.parents else "contains"
        raise OutputConflictError(f"{out}: the output folder {where} the source folder {src}; choose an OUT outside it")


def _previous(out: Path, meta: dict, force: bool) -> tuple[dict[str, dict], bool]:
    """The records of an earlier run into `out` by source, and whether they may be reused (same source, settings)."""
    path = out / ALIGNMENT_FILE
    if not path.is_file():
        if out.is_dir() and any(out.iterdir()):
            raise LayoutError(
                f"{out}: not empty and not made by facekit align (no {ALIGNMENT_FILE}); choose another OUT"
            )
        return {}, False
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        records = {r["source"]: r for r in old["photos"]}
        old_meta = {key: old[key] for key in ("format", "source", "settings")} | {"shard": old.get("shard")}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataFormatError(f"{path}: not a facekit alignment record ({type(exc).__name__}: {exc})") from None
    for record in records.values():
        _check_record(path, record)
    if old_meta["format"] != ALIGNMENT_FORMAT:
        raise DataFormatError(f"{path}: format {old_meta['format']!r}, expected {ALIGNMENT_FORMAT!r}")
    differ = _differences(old_meta, meta)
    if differ and not force:
        raise FacekitError(
            f"{out}: aligned before with other settings ({'; '.join(differ)}); choose another OUT or pass --force"
        )
    return records, not differ


def _differences(old: dict, new: dict) -> list[str]:
    """What differs between two runs' settings (the detector by fingerprint when it has one, else by path)."""
    a = {"source": old["source"], "shard": old.get("shard"), **old["settings"]}
    b = {"source": new["source"], "shard": new.get("shard"), **new["settings"]}
    skip = {"detector"} if a.get("fingerprint") and b.get("fingerprint") else {"fingerprint"}
    return [f"{key} {_short(a.get(key))} -> {_short(b[key])}" for key in b if key not in skip and a.get(key) != b[key]]


def _short(value: object) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_record(path: Path, record: object) -> None:
    """A record read back must name a relative output inside OUT: stale crops are removed by that name."""
    ok = isinstance(record, dict) and isinstance(record.get("source"), str) and record.get("status") in STATUSES
    output = record.get("output") if ok else None
    if ok and output is not None:
        name = PurePosixPath(output) if isinstance(output, str) else None
        ok = name is not None and not name.is_absolute() and ".." not in name.parts and str(name) not in ("", ".")
    if not ok:
        raise DataFormatError(f"{path}: bad photo record {json.dumps(record)[:200]}")


@dataclass
class Crops:
    """Face crops of identity folders held as JPEG bytes: items (class, crop name "person/x.jpg", JPEG) grouped by
    class 0..C-1 (people without any crop are left out); what was skipped, one line each."""

    identities: list[str]
    items: list[tuple[int, str, bytes]]
    size: int
    photos: int
    no_face: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    several_faces: list[str] = field(default_factory=list)  # "path (N faces)"; the picked face was kept
    empty: list[str] = field(default_factory=list)  # person folders that gave no crop

    @classmethod
    def collect(cls, folders: IdentityFolders, found: dict[int, bytes], size: int, **skipped: list[str]) -> Crops:
        """From the JPEG crop of each item index of `folders` that gave one."""
        names = output_names([path.relative_to(folders.root).as_posix() for path, _ in folders.items])
        used = sorted({folders.items[i][1] for i in found})
        relabel = {old: new for new, old in enumerate(used)}
        items = []
        for i, data in sorted(found.items()):
            path, label = folders.items[i]
            items.append((relabel[label], names[path.relative_to(folders.root).as_posix()], data))
        identities = [folders.identities[label] for label in used]
        empty = folders.empty + [name for name in folders.identities if name not in set(identities)]
        return cls(identities, items, size, len(folders.items), empty=empty, **skipped)

    def counts(self) -> list[int]:
        return np.bincount([label for label, _, _ in self.items], minlength=len(self.identities)).tolist()


def align_in_memory(
    src: str | os.PathLike,
    detector: object,
    settings: AlignSettings,
    *,
    workers: int = 1,
    quality: int = DEFAULT_JPEG_QUALITY,
    progress: bool | None = None,
) -> Crops:
    """The aligned crop of one face of each photo of `src/<person>/...`, as `facekit align` makes it, in memory."""
    folders = scan_identity_folders(src)
    unreadable: list[str] = []
    no_face: list[str] = []
    several: list[str] = []
    found: dict[int, bytes] = {}
    images = read_each([path for path, _ in folders.items], unreadable, "align", progress, settings.max_pixels)
    for photo in _aligned(images, detector, settings, workers):
        if photo.error is not None:
            unreadable.append(photo.error)
            continue
        if photo.crop is None:
            no_face.append(str(photo.path))
            continue
        if len(photo.faces) > 1:
            several.append(f"{photo.path} ({len(photo.faces)} faces)")
        found[photo.index] = encode_jpeg(photo.crop, quality)
    if not found:
        raise DataFormatError(f"{src}: no face found in {len(folders.items)} photos")
    return Crops.collect(folders, found, settings.size, no_face=no_face, unreadable=unreadable, several_faces=several)


def read_crops(
    src: str | os.PathLike, *, quality: int = DEFAULT_JPEG_QUALITY, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Crops:
    """The aligned crops of `src/<person>/...` as they are: all square and of one size (DataFormatError naming the
    first that is not); JPEG bytes kept, other formats re-encoded. Unreadable files (over `max_pixels` too) are
    skipped and listed."""
    folders = scan_identity_folders(src)
    unreadable: list[str] = []
    found: dict[int, bytes] = {}
    first: tuple[Path, tuple[int, int]] | None = None
    for i, (path, _) in enumerate(folders.items):
        try:
            data = read_file(path, max_pixels)
            image = decode_image(data, str(path), max_pixels)
        except FacekitError as exc:
            unreadable.append(str(exc))
            continue
        shape = image.shape[:2]
        if first is None:
            first = (path, shape)
            if shape[0] != shape[1]:
                raise DataFormatError(
                    f"{path}: {shape[1]}x{shape[0]} is not square; expected aligned crops (raw photos need --detect)"
                )
        elif shape != first[1]:
            raise DataFormatError(
                f"{path}: {shape[1]}x{shape[0]}, but {first[0]} is {first[1][1]}x{first[1][0]}; expected aligned crops "
                "of one size (raw photos need --detect)"
            )
        found[i] = data if data.startswith(_JPEG) else encode_jpeg(image, quality)
    if first is None:
        raise DataFormatError(f"{src}: none of {len(folders.items)} images can be read")
    return Crops.collect(folders, found, first[1][0], unreadable=unreadable)


def pack_crops(crops: Crops, out_dir: str | os.PathLike) -> Property:
    """Write `crops` as recognition_train_data (cele.rec/.idx/.lst, property); .lst paths are "person/x.jpg"."""
    samples = (Sample(label, data, name) for label, name, data in crops.items)
    return write_recognition_set(out_dir, samples, image_size=(crops.size, crops.size))


@dataclass
class BinReport:
    """What make-bin wrote: pairs (same ones half of them), the people they show, the sidecar's content."""

    pairs: int
    requested: int
    people: list[str]
    sidecar: dict
    disjoint: bool


def write_pairs_bin(
    crops: Crops,
    out: str | os.PathLike,
    *,
    pairs: int,
    seed: int,
    source: str,
    aligned_by: str | None,
    template: list[list[float]] | None = None,
) -> BinReport:
    """Sample balanced pairs of `crops` (data.pairs) and write them to the .bin `out` (atomically) and its sidecar
    `out` with .json (data.verification.write_bin). `template`: the 5 points raw photos were aligned onto."""
    plan = sample_pairs(crops.counts(), pairs, seed=seed)
    by_person: list[list[bytes]] = [[] for _ in crops.identities]
    for label, _, data in crops.items:
        by_person[label].append(data)
    images = [by_person[p][i] for a, b, _ in plan.pairs for p, i in (a, b)]
    people = sorted(crops.identities[p] for p in plan.people)
    sidecar = {
        "format": PAIRS_FORMAT,
        "people": people,
        "pairs": len(plan.pairs),
        "same": sum(same for *_, same in plan.pairs),
        "folds": FOLDS,
        "person_disjoint_folds": plan.fold_people is not None,
        "seed": seed,
        "source": source,
        "aligned_by": aligned_by,
        "size": crops.size,
        "template": template,
    }
    write_bin(out, VerificationSet(images, [same for *_, same in plan.pairs]), sidecar)
    return BinReport(len(plan.pairs), pairs, people, sidecar, plan.fold_people is not None)
