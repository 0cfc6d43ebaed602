"""Recognise which layout a path holds, validate all of it and summarise it (`facekit inspect`)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from facekit.data.images import decode_image, is_image_file, read_file
from facekit.data.labels import LABEL_FILE
from facekit.errors import FacekitError, LayoutError, MissingDataError

SPLITS = ("train", "val", "test")
GALLERY_SUFFIXES = (".h5", ".hdf5")  # what makes a file a gallery (facekit.gallery.store; data_layouts/gallery.md)


@dataclass
class Report:
    """What `inspect` found: the layout, an ordered summary, the problems (empty when all is well) and notes (worth
    knowing, not wrong)."""

    layout: str
    path: str
    summary: dict[str, object] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, object]:
        return {
            "layout": self.layout,
            "path": self.path,
            "ok": self.ok,
            "summary": self.summary,
            "problems": self.problems,
            "notes": self.notes,
        }


def detect_layout(path: str | os.PathLike) -> str:
    """One of: detection_train_data, detection_split, recognition_train_data, verification_bin, identity_folders,
    gallery."""
    p = Path(path)
    if not p.exists():
        raise MissingDataError(f"{p}: no such file or folder")
    if p.is_file():
        if p.suffix == ".bin":
            return "verification_bin"
        if p.suffix == ".rec":
            return "recognition_train_data"
        if p.suffix in GALLERY_SUFFIXES:
            return "gallery"
        raise LayoutError(f"{p}: not a layout facekit knows (expected a folder, a .rec, a .bin or a gallery .h5)")
    if any((p / s / LABEL_FILE).is_file() for s in SPLITS):
        return "detection_train_data"
    if (p / LABEL_FILE).is_file() and (p / "images").is_dir():
        return "detection_split"
    if any(p.glob("*.rec")):
        return "recognition_train_data"
    if any(c.is_dir() and any(is_image_file(f) for f in c.rglob("*")) for c in p.iterdir()):
        return "identity_folders"
    raise LayoutError(
        f"{p}: not a layout facekit knows: expected {{train,val,test}}/label.txt (detection), a .rec (recognition), "
        "or one sub-folder of images per person"
    )


def _sizes(shapes: Iterable[tuple[int, int]]) -> dict[str, int]:
    """'WxH' -> count, the 5 most common."""
    return {f"{w}x{h}": n for (w, h), n in Counter(shapes).most_common(5)}


def _decode_all(
    items: Iterable[tuple[str, Callable[[], bytes]]], problems: list[str], progress: str, total: int | None = None
) -> list[tuple[int, int]]:
    """Decode each (name, read) item; returns (width, height) of the good ones, appends a problem per bad one."""
    from tqdm import tqdm

    shapes = []
    for name, read in tqdm(items, total=total, desc=progress, unit="img", leave=False, disable=None):
        try:
            image = decode_image(read(), name)
        except FacekitError as exc:
            problems.append(str(exc))
            continue
        shapes.append((image.shape[1], image.shape[0]))
    return shapes


def inspect_detection(root: Path, splits: Iterable[Path]) -> Report:
    from facekit.data.labels import face_problems, read_labels

    report = Report("detection_train_data", str(root))
    for split in splits:
        label_path = split / LABEL_FILE
        if not label_path.is_file():
            continue
        try:
            style, images = read_labels(label_path)
        except FacekitError as exc:
            report.problems.append(str(exc))
            continue
        faces = sum(im.num_faces for im in images)
        paths = {im.path: split / "images" / im.path for im in images}
        missing = [name for name, p in paths.items() if not p.is_file()]
        if missing:
            report.problems.append(f"{label_path}: {len(missing)} of {len(images)} images missing, e.g. {missing[:3]}")
        shapes = {}
        for name, p in paths.items():
            if p.is_file():
                got = _decode_all([(str(p), partial(read_file, p))], report.problems, split.name)
                if got:
                    shapes[name] = got[0]
        for im in images:
            if im.path in shapes:
                report.problems += face_problems(label_path, im, shapes[im.path])
        all_boxes = np.concatenate([im.boxes for im in images]) if faces else np.zeros((0, 4), np.float32)
        widths = all_boxes[:, 2] - all_boxes[:, 0]
        report.summary[split.name] = {
            "style": style,
            "images": len(images),
            "faces": faces,
            "images_without_faces": sum(im.num_faces == 0 for im in images),
            "faces_with_landmarks": int(sum(im.landmark_mask.sum() for im in images)),
            "landmark_coverage": round(float(sum(im.landmark_mask.sum() for im in images)) / faces, 4)
            if faces
            else None,
            "face_width_px": {
                k: round(float(f(widths)), 1) for k, f in (("min", np.min), ("median", np.median), ("max", np.max))
            }
            if faces
            else None,
            "image_sizes": _sizes(shapes.values()),
        }
    if not report.summary and not report.problems:
        report.problems.append(f"{root}: no split with a label.txt")
    return report


def inspect_recognition(root: Path) -> Report:
    from facekit.data.recset import open_recognition_set

    report = Report("recognition_train_data", str(root))
    try:
        rset = open_recognition_set(root)
    except FacekitError as exc:
        report.problems.append(str(exc))
        return report
    with rset:
        _check_recognition(rset, root, report)
    bins = {}
    for path in sorted(root.glob("*.bin")) if root.is_dir() else []:
        sub = inspect_bin(path)
        bins[path.name] = sub.summary
        report.problems += sub.problems
    if bins:
        report.summary["verification_sets"] = bins
    return report


def _check_recognition(rset, root: Path, report: Report) -> None:  # RecognitionSet
    from facekit.data.lst import read_lst
    from facekit.data.recordio import first_step_back

    rec = rset.reader.rec_path
    offsets = rset.reader.offsets
    step = first_step_back(offsets)
    if step is not None:
        key, previous = step
        report.notes.append(
            f"{rset.reader.idx_path}: offsets do not increase down the file (key {key} at {offsets[key]} follows key "
            f"{previous} at {offsets[previous]}): readable, but MXNet and facekit list records in the order written"
        )
    label_of: dict[int, int] = {}

    def records() -> Iterable[tuple[str, Callable[[], bytes]]]:
        for key in rset.image_keys:
            try:
                label_of[key], image = rset.read(key)
            except FacekitError as exc:
                report.problems.append(str(exc))
                continue
            yield f"{rec}: key {key}", lambda image=image: image

    shapes = _decode_all(records(), report.problems, rec.name, total=len(rset.image_keys))
    labels = list(label_of.values())
    counts = Counter(labels)
    report.summary.update(
        convention=rset.convention,
        images=len(rset.image_keys),
        identities=len(counts),
        images_per_identity={"min": min(counts.values()), "max": max(counts.values())} if counts else None,
        image_sizes=_sizes(shapes),
    )
    for ident, (a, b) in rset.identity_ranges.items():
        wrong = [k for k in range(a, b) if label_of.get(k, ident) != ident]
        if wrong:
            report.problems.append(
                f"{rec}: identity {ident} range [{a}, {b}) holds {len(wrong)} images of another class"
            )
    if rset.prop is not None:
        report.summary["property"] = f"{rset.prop.num_classes},{rset.prop.height},{rset.prop.width}"
        if counts and rset.prop.num_classes != max(counts) + 1:
            report.problems.append(
                f"{root / 'property'}: says {rset.prop.num_classes} classes, the records hold labels 0..{max(counts)}"
            )
        off = sum(n for (w, h), n in Counter(shapes).items() if (h, w) != (rset.prop.height, rset.prop.width))
        if off:
            report.problems.append(f"{rec}: {off} images are not {rset.prop.width}x{rset.prop.height} as property says")
    else:
        report.problems.append(f"{root}: no property file (expected one line 'num_classes,height,width')")
    if rset.lst_path is not None:
        try:
            _, entries = read_lst(rset.lst_path)
        except FacekitError as exc:
            report.problems.append(str(exc))
        else:
            report.summary["lst_entries"] = len(entries)
            if len(entries) != len(labels) or any(int(e.label) != lab for e, lab in zip(entries, labels)):
                report.problems.append(
                    f"{rset.lst_path}: {len(entries)} entries do not match the {len(labels)} records"
                )


def inspect_bin(path: Path) -> Report:
    from facekit.data.verification import load_bin

    report = Report("verification_bin", str(path))
    try:
        vset = load_bin(path)
    except FacekitError as exc:
        report.problems.append(str(exc))
        return report
    shapes = _decode_all(
        [(f"{path}: image {i}", lambda b=b: b) for i, b in enumerate(vset.images)], report.problems, path.name
    )
    report.summary.update(
        pairs=len(vset), same=sum(vset.issame), different=len(vset) - sum(vset.issame), image_sizes=_sizes(shapes)
    )
    return report


def inspect_folders(root: Path) -> Report:
    from facekit.data.folders import scan_identity_folders

    report = Report("identity_folders", str(root))
    folders = scan_identity_folders(root)
    shapes = _decode_all([(str(p), partial(read_file, p)) for p, _ in folders.items], report.problems, root.name)
    counts = Counter(label for _, label in folders.items)
    report.summary.update(
        identities=len(folders.identities),
        images=len(folders.items),
        images_per_identity={"min": min(counts.values()), "max": max(counts.values())},
        image_sizes=_sizes(shapes),
    )
    if folders.empty:
        report.problems.append(f"{root}: {len(folders.empty)} person folders hold no image: {folders.empty[:5]}")
    return report


def inspect_path(path: str | os.PathLike) -> Report:
    """Detect the layout of `path` and validate all of it (galleries: facekit.gallery.inspection, one package up)."""
    p = Path(path)
    layout = detect_layout(p)
    if layout == "detection_train_data":
        return inspect_detection(p, [p / s for s in SPLITS])
    if layout == "detection_split":
        return inspect_detection(p, [p])
    if layout == "recognition_train_data":
        return inspect_recognition(p)
    if layout == "verification_bin":
        return inspect_bin(p)
    if layout == "gallery":
        raise LayoutError(f"{p}: a gallery; facekit.gallery.inspection.inspect_gallery inspects it")
    return inspect_folders(p)
