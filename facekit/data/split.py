"""Split identity folders by person for an honest open-set evaluation: calibration, gallery and unknown people.

People are taken in natural order of their folder names (after `skip`): the first `calibration` calibrate the
threshold, the next `gallery` are enrolled with their first `gallery_photos` photos (natural order; their other
photos are probes), the next `unknown` are probes only. No person is in two roles, and the split is the same on every
machine. OUT/split.json records who went where.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from facekit import strict_json
from facekit.data.folders import scan_identity_folders
from facekit.data.images import file_problem
from facekit.errors import FacekitError, LayoutError

ROLES = ("calibration", "gallery", "unknown")
FOLDERS = ("calibration", "gallery", "probe")  # under OUT: unknown people's photos are probes
SPLIT_FILE = "split.json"


@dataclass(frozen=True)
class PeopleSplit:
    """How many people (in natural order, after `skip`) take each role, and the photos each gallery person
    enrols."""

    calibration: int
    gallery: int
    unknown: int
    gallery_photos: int = 3
    skip: int = 0

    def __post_init__(self) -> None:
        if min(self.calibration, self.gallery, self.unknown, self.skip) < 0 or self.gallery_photos < 1:
            raise ValueError(f"people counts must be >= 0 and gallery_photos >= 1, got {self}")


def split_people(
    people_dir: str | os.PathLike, out_dir: str | os.PathLike, split: PeopleSplit, *, copy: bool = False
) -> dict:
    """Write out_dir/{calibration,gallery,probe}/<person>/<photo> as symbolic links to the photos of people_dir (or
    copies) and out_dir/split.json; returns what split.json holds. out_dir must not exist or be empty; it is filled
    in a temporary folder beside it and renamed into place, so a failed split leaves nothing behind."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FacekitError(f"{out}: exists and is not an empty folder; choose a new output folder")
    folders = scan_identity_folders(people_dir)
    people = folders.identities
    needed = split.skip + split.calibration + split.gallery + split.unknown
    if len(people) < needed:
        raise LayoutError(
            f"{people_dir}: {len(people)} people with photos, the split needs {needed} (skip {split.skip}, "
            f"calibration {split.calibration}, gallery {split.gallery}, unknown {split.unknown})"
        )
    photos: dict[str, list[Path]] = {name: [] for name in people}
    skipped = []  # FIFOs, devices, broken links with a photo's name: neither linked nor copied (copying may not end)
    for path, label in folders.items:
        problem = file_problem(path)
        if problem:
            skipped.append(problem)
        else:
            photos[people[label]].append(path)
    chosen = people[split.skip : needed]
    roles = dict(zip(ROLES, _cut(chosen, (split.calibration, split.gallery, split.unknown)), strict=True))
    placed: list[tuple[Path, str, str]] = []  # (photo, folder under out, person)
    for person in roles["calibration"]:
        placed += [(photo, "calibration", person) for photo in photos[person]]
    for person in roles["gallery"]:
        placed += [(photo, "gallery", person) for photo in photos[person][: split.gallery_photos]]
        placed += [(photo, "probe", person) for photo in photos[person][split.gallery_photos :]]
    for person in roles["unknown"]:
        placed += [(photo, "probe", person) for photo in photos[person]]
    summary = {
        "source": os.path.abspath(people_dir),
        "skip": split.skip,
        "gallery_photos": split.gallery_photos,
        "people": roles,
        "photos": {folder: sum(where == folder for _, where, _ in placed) for folder in FOLDERS},
        "gallery_without_probes": [p for p in roles["gallery"] if len(photos[p]) <= split.gallery_photos],
        "skipped": skipped,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        for photo, folder, person in placed:
            target = tmp / folder / person / photo.relative_to(folders.root / person)
            target.parent.mkdir(parents=True, exist_ok=True)
            if copy:
                shutil.copy2(photo, target)
            else:
                target.symlink_to(photo.resolve())
        (tmp / SPLIT_FILE).write_text(strict_json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, out)  # onto a missing or empty folder
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _cut(items: list[str], counts: tuple[int, ...]) -> list[list[str]]:
    """Consecutive runs of `items` of the given lengths."""
    runs, start = [], 0
    for count in counts:
        runs.append(items[start : start + count])
        start += count
    return runs
