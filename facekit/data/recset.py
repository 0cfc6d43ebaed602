"""recognition_train_data/: a RecordIO file of face crops in one of the three conventions seen in the wild.

- `insightface` (face2rec2, faces_emore): record 0 is a header with labels [first_id_key, end_id_key]; image keys
  are 1 .. first_id_key-1; keys first_id_key .. end_id_key-1 hold each identity's [first_image_key, end_image_key).
- `plain` (MXNet im2rec, insightface RecBuilder): record 0 is an image (flag 0); every key in the .idx is an image.
Image labels are a float or a list whose first value is the class.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Literal

from facekit.data.lst import LstEntry, Property, read_property, write_lst, write_property
from facekit.data.recordio import RecordReader, RecordWriter, pack, unpack
from facekit.errors import DataFormatError, LayoutError, MissingDataError

Convention = Literal["insightface", "plain"]


@dataclass
class RecognitionSet:
    """An opened recognition RecordIO set. Image bytes and labels are read on demand."""

    reader: RecordReader
    convention: Convention
    image_keys: list[int]
    identity_ranges: dict[int, tuple[int, int]] = field(default_factory=dict)
    prop: Property | None = None
    lst_path: Path | None = None

    def __len__(self) -> int:
        return len(self.image_keys)

    def read(self, key: int) -> tuple[int, bytes]:
        """(class label, encoded image) of image record `key`."""
        header, image = unpack(self.reader.read(key), f"{self.reader.rec_path}: key {key}")
        label = header.class_label
        if not float(label).is_integer() or label < 0:
            raise DataFormatError(
                f"{self.reader.rec_path}: key {key}: class label {label} is not a non-negative integer"
            )
        return int(label), image

    def __getitem__(self, index: int) -> tuple[int, bytes]:
        return self.read(self.image_keys[index])

    def where(self, index: int) -> str:
        """The .rec and key of image `index`."""
        return f"{self.reader.rec_path}: key {self.image_keys[index]}"

    @property
    def num_classes(self) -> int | None:
        """From the identity records, else from `property`, else unknown (None) without a full scan."""
        if self.identity_ranges:
            return len(self.identity_ranges)
        return self.prop.num_classes if self.prop else None

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> RecognitionSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def find_rec(root: str | os.PathLike) -> Path:
    """The .rec of a recognition_train_data folder (`cele.rec`, `train.rec` or the only .rec there)."""
    root = Path(root)
    if root.is_file() and root.suffix == ".rec":
        return root
    if not root.is_dir():
        raise MissingDataError(f"{root}: no such folder")
    for name in ("cele.rec", "train.rec"):
        if (root / name).is_file():
            return root / name
    recs = sorted(root.glob("*.rec"))
    if len(recs) != 1:
        found = ", ".join(p.name for p in recs) or "none"
        raise LayoutError(f"{root}: expected one .rec file (cele.rec), found {found}")
    return recs[0]


def _key_pair(label: tuple[float, ...], context: str) -> tuple[int, int]:
    """The two labels of a header or identity record as integer keys (NaN, infinity or fractions are an error)."""
    if not all(v.is_integer() for v in label):
        raise DataFormatError(f"{context}: {list(label)} are not integer keys")
    return int(label[0]), int(label[1])


def open_recognition_set(root: str | os.PathLike) -> RecognitionSet:
    """Open `root` (a folder with cele.rec/.idx[/property/.lst], or a .rec path) and detect its convention."""
    rec_path = find_rec(root)
    reader = RecordReader(rec_path)
    try:
        return _open(reader)
    except BaseException:
        reader.close()
        raise


def _open(reader: RecordReader) -> RecognitionSet:
    rec_path = reader.rec_path
    prop_path = rec_path.parent / "property"
    prop = read_property(prop_path) if prop_path.exists() else None
    lst_path = rec_path.with_suffix(".lst")
    base = dict(reader=reader, prop=prop, lst_path=lst_path if lst_path.exists() else None)
    if 0 not in reader:
        return RecognitionSet(convention="plain", image_keys=reader.keys, **base)
    header, _ = unpack(reader.read(0), f"{rec_path}: key 0")
    if header.flag == 0:
        return RecognitionSet(convention="plain", image_keys=reader.keys, **base)
    if header.flag != 2:
        raise DataFormatError(
            f"{rec_path}: key 0: header record must hold 2 labels [first_id_key, end_id_key], has {header.flag}"
        )
    first_id, end_id = _key_pair(header.label, f"{rec_path}: key 0: identity key range")
    if not 1 <= first_id <= end_id:
        raise DataFormatError(f"{rec_path}: key 0: identity key range [{first_id}, {end_id}) is not valid")
    missing = end_id - 1 - sum(1 <= k < end_id for k in reader.offsets)  # counted: a corrupt end_id can be huge
    if missing:
        first = list(islice((k for k in range(1, end_id) if k not in reader), 5))
        raise DataFormatError(
            f"{reader.idx_path}: header record promises keys 1..{end_id - 1}, {missing} missing (first: {first})"
        )
    ranges: dict[int, tuple[int, int]] = {}
    for key in range(first_id, end_id):
        h, _ = unpack(reader.read(key), f"{rec_path}: key {key}")
        if h.flag != 2:
            raise DataFormatError(
                f"{rec_path}: key {key}: identity record must hold 2 labels [first, end), has {h.flag}"
            )
        a, b = _key_pair(h.label, f"{rec_path}: key {key}: identity image range")
        if not 1 <= a <= b <= first_id:
            raise DataFormatError(
                f"{rec_path}: key {key}: identity image range [{a}, {b}) outside images 1..{first_id - 1}"
            )
        ranges[key - first_id] = (a, b)
    return RecognitionSet(convention="insightface", image_keys=list(range(1, first_id)), identity_ranges=ranges, **base)


@dataclass(frozen=True)
class Sample:
    """One face crop to pack: its class, encoded bytes and the path recorded in the .lst."""

    label: int
    image: bytes
    path: str


def write_recognition_set(
    out_dir: str | os.PathLike, samples: Iterable[Sample], *, image_size: tuple[int, int], prefix: str = "cele"
) -> Property:
    """Write `<prefix>.rec/.idx/.lst` and `property` in insightface's face2rec2 convention.

    Samples must come grouped by label, labels 0..C-1 in increasing order. As face2rec2 does, images go to
    keys 1..N with list label [class, 1.0], then the header record 0, then one record per identity.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ranges: list[tuple[int, int]] = []
    entries: list[LstEntry] = []
    with RecordWriter(out / f"{prefix}.rec", out / f"{prefix}.idx") as writer:
        key = 0
        for key, sample in enumerate(samples, 1):
            if sample.label == len(ranges) - 1:
                ranges[-1] = (ranges[-1][0], key + 1)
            elif sample.label == len(ranges):
                ranges.append((key, key + 1))
            else:
                raise ValueError(
                    f"samples must be grouped by label 0..C-1 in order; got label {sample.label} at key {key}"
                )
            writer.write(key, pack([float(sample.label), 1.0], sample.image, id=key))
            entries.append(LstEntry(path=sample.path, label=sample.label))
        first_id = key + 1
        writer.write(0, pack([float(first_id), float(first_id + len(ranges))], b""))
        for i, (a, b) in enumerate(ranges):
            writer.write(first_id + i, pack([float(a), float(b)], b"", id=first_id + i))
    write_lst(out / f"{prefix}.lst", entries)
    prop = Property(len(ranges), image_size[0], image_size[1])
    write_property(out / "property", prop)
    return prop
