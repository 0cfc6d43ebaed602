"""Identity folders: one sub-folder per person (the folder name is the identity), any image OpenCV reads."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from facekit.data.images import is_image_file, read_file
from facekit.errors import LayoutError, MissingDataError


def natural_key(name: str) -> list:
    """Sort key that puts s2 before s10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


@dataclass
class IdentityFolders:
    """identities[i] is the name of class i; items are (image path, class) grouped by class."""

    root: Path
    identities: list[str]
    items: list[tuple[Path, int]]
    empty: list[str]  # person folders without any image

    def __len__(self) -> int:
        return len(self.items)

    def where(self, index: int) -> str:
        """The image file of item `index`."""
        return str(self.items[index][0])

    def __getitem__(self, index: int) -> tuple[int, bytes]:
        """(class, encoded image bytes) of item `index` (data.images.read_file: a FIFO or device is refused)."""
        path, label = self.items[index]
        return label, read_file(path)


def scan_identity_folders(root: str | os.PathLike) -> IdentityFolders:
    """List `root/<person>/**/<image>`; identities in natural order (s1, s2, ..., s10) get classes 0..C-1. Whatever
    has an image's name and is not a folder is an item, FIFOs, devices and broken symbolic links included: reading
    it says what it is (data.images.read_file), so batch jobs list it instead of leaving it out unseen."""
    root = Path(root)
    if not root.is_dir():
        raise MissingDataError(f"{root}: no such folder")
    people = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: natural_key(p.name)
    )
    identities: list[str] = []
    items: list[tuple[Path, int]] = []
    empty: list[str] = []
    for person in people:
        images = sorted(
            (p for p in person.rglob("*") if is_image_file(p) and not p.is_dir()),
            key=lambda p: natural_key(str(p.relative_to(person))),
        )
        if not images:
            empty.append(person.name)
            continue
        items += [(p, len(identities)) for p in images]
        identities.append(person.name)
    if not identities:
        raise LayoutError(f"{root}: no identity folders with images (expected {root}/<person>/<image>)")
    return IdentityFolders(root, identities, items, empty)
