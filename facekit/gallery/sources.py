"""Where build-db and recognize find their photos: identity folders, CSV / .lst lists, plain path lists."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from facekit.data.images import file_problem, list_images
from facekit.errors import DataFormatError, LayoutError, MissingDataError, where

LIST_SUFFIXES = (".csv", ".lst", ".txt")


def enrolment_list(path: str | os.PathLike) -> tuple[list[tuple[Path, str]], list[str]]:
    """(image path, identity) pairs to put in a gallery, and the names of person folders without images.

    `path`: a folder with one sub-folder per person (the folder name is the identity), a CSV of `path,identity`
    rows (an optional `path,identity` header), or an insightface .lst (the label is the identity). Relative paths in
    a list are relative to the list's folder."""
    from facekit.data.folders import scan_identity_folders

    p = Path(path)
    if p.is_dir():
        folders = scan_identity_folders(p)
        return [(image, folders.identities[label]) for image, label in folders.items], folders.empty
    if p.exists() and not p.is_file():
        raise LayoutError(f"{file_problem(p)}; expected a folder or a list file")
    if not p.is_file():
        raise MissingDataError(f"{p}: no such folder or list file")
    if p.suffix.lower() == ".lst":
        from facekit.data.lst import read_lst

        _, entries = read_lst(p)
        return [(p.parent / e.path, _label_name(e.label)) for e in entries], []
    if p.suffix.lower() == ".csv":
        pairs = []
        for line, row in _csv_rows(p):
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise DataFormatError(f"{where(p, line)}: expected 2 columns (path, identity), got {row}")
            pairs.append((p.parent / row[0].strip(), row[1].strip()))
        if not pairs:
            raise DataFormatError(f"{p}: no (path, identity) rows")
        return pairs, []
    raise LayoutError(f"{p}: expected a folder of identity folders, a .csv (path, identity) or an insightface .lst")


def query_list(path: str | os.PathLike) -> list[Path]:
    """Photos to recognize: an image, a folder (searched recursively), or a list file (.txt one path per line; .csv
    or .lst: the path column). Relative paths in a list are relative to the list's folder."""
    p = Path(path)
    suffix = p.suffix.lower()
    if not p.is_file() or suffix not in LIST_SUFFIXES:
        return list_images([p])
    if suffix == ".lst":
        from facekit.data.lst import read_lst

        return [p.parent / e.path for e in read_lst(p)[1]]
    if suffix == ".csv":
        return [p.parent / row[0].strip() for _, row in _csv_rows(p) if row and row[0].strip()]
    with open(p, encoding="utf-8") as f:
        return [p.parent / line.strip() for line in f if line.strip() and not line.startswith("#")]


def _csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """Non-empty rows with their line numbers; a first row starting with `path` is a header and left out."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = [(i, row) for i, row in enumerate(csv.reader(f), 1) if any(cell.strip() for cell in row)]
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if rows and rows[0][1][0].strip().lower() == "path":
        rows = rows[1:]
    return rows


def _label_name(label: float) -> str:
    return str(int(label)) if float(label).is_integer() else str(label)
