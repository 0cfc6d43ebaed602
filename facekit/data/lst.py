"""`.lst` image lists and the `property` file of recognition_train_data/.

Two .lst styles exist; the columns tell them apart:
- face2rec2 (insightface): `aligned<TAB>path<TAB>label[<TAB>x1<TAB>y1<TAB>x2<TAB>y2[<TAB>10 landmark floats]]`
  (bbox and landmark values may also be space-separated inside one column);
- im2rec (MXNet): `index<TAB>label[<TAB>more labels]<TAB>relative_path`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from facekit.errors import DataFormatError, MissingDataError, where
from facekit.fileio import atomic_write

LstStyle = Literal["face2rec2", "im2rec"]


@dataclass(frozen=True)
class LstEntry:
    """One .lst line. `box` is (x1, y1, x2, y2); `landmarks` five (x, y) pairs; `index` only in im2rec files."""

    path: str
    label: float
    aligned: bool = True
    index: int | None = None
    box: tuple[float, float, float, float] | None = None
    landmarks: tuple[tuple[float, float], ...] | None = None


@dataclass(frozen=True)
class Property:
    """The `property` file: `num_classes,height,width`."""

    num_classes: int
    height: int
    width: int


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_lst_line(line: str, context: str) -> tuple[LstStyle, LstEntry]:
    cols = line.rstrip("\r\n").split("\t")
    if len(cols) < 3:
        raise DataFormatError(
            f"{context}: expected at least 3 tab-separated columns, got {len(cols)}: {line.strip()[:80]!r}"
        )
    if _number(cols[1]) is not None:  # im2rec: index, label(s), path
        values = [_number(c) for c in cols[:-1]]
        if any(v is None for v in values) or not float(values[0]).is_integer():
            raise DataFormatError(
                f"{context}: im2rec line must be 'index<TAB>label<TAB>path' with numbers before the path"
            )
        return "im2rec", LstEntry(path=cols[-1], label=values[1], index=int(values[0]))
    aligned, label = _number(cols[0]), _number(cols[2])
    if aligned is None or label is None:
        raise DataFormatError(
            f"{context}: face2rec2 line must be 'aligned<TAB>path<TAB>label', got {line.strip()[:80]!r}"
        )
    extra = [_number(v) for c in cols[3:] for v in c.split()]
    if any(v is None for v in extra) or len(extra) not in (0, 4, 14):
        raise DataFormatError(f"{context}: after the label expected 4 box numbers and optionally 10 landmark numbers")
    box = tuple(extra[:4]) if extra else None
    # insightface stores landmarks as x0..x4 then y0..y4
    landmarks = tuple(zip(extra[4:9], extra[9:14])) if len(extra) == 14 else None
    return "face2rec2", LstEntry(path=cols[1], label=label, aligned=bool(aligned), box=box, landmarks=landmarks)


def read_lst(path: str | os.PathLike) -> tuple[LstStyle | None, list[LstEntry]]:
    """All entries of a .lst file and its style (None when it is empty). Mixed styles are an error."""
    style: LstStyle | None = None
    entries: list[LstEntry] = []
    try:
        with open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                line_style, entry = parse_lst_line(line, where(path, line_no))
                if style is not None and line_style != style:
                    raise DataFormatError(f"{where(path, line_no)}: {line_style} line in a {style} .lst")
                style = line_style
                entries.append(entry)
    except FileNotFoundError:
        raise MissingDataError(f"{path}: no such .lst file") from None
    except UnicodeDecodeError:
        raise DataFormatError(f"{path}: not UTF-8 text") from None
    return style, entries


def write_lst(path: str | os.PathLike, entries: Iterable[LstEntry]) -> None:
    """Write a face2rec2-style .lst atomically."""
    with atomic_write(path) as f:
        for e in entries:
            cols = [str(int(e.aligned)), e.path, f"{e.label:g}"]
            if e.box is not None:
                cols += [f"{v:g}" for v in e.box]
                if e.landmarks is not None:
                    cols += [f"{p[0]:g}" for p in e.landmarks] + [f"{p[1]:g}" for p in e.landmarks]
            f.write("\t".join(cols) + "\n")


def read_property(path: str | os.PathLike) -> Property:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except FileNotFoundError:
        raise MissingDataError(
            f"{path}: no such property file (expected one line 'num_classes,height,width')"
        ) from None
    except UnicodeDecodeError:
        raise DataFormatError(f"{path}: not a text file") from None
    fields = text.split(",")
    try:
        values = [int(v) for v in fields]
    except ValueError:
        values = []
    if len(values) != 3 or min(values) <= 0:
        raise DataFormatError(
            f"{where(path, 1)}: expected 'num_classes,height,width' (positive integers), got {text[:60]!r}"
        )
    return Property(*values)


def write_property(path: str | os.PathLike, prop: Property) -> None:
    with atomic_write(path) as f:
        f.write(f"{prop.num_classes},{prop.height},{prop.width}\n")
