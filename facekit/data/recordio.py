"""MXNet RecordIO (.rec + .idx) in pure Python, byte-compatible with dmlc-core and `mx.recordio`.

Record: uint32 magic 0xCED7230A | uint32 lrecord = cflag << 29 | length | payload | zero pad to 4 bytes.
A payload that holds the magic word at a 4-byte aligned offset is split there into chunks (cflag 1 first,
2 middle, 3 last; 0 = whole record) and the word is dropped; the reader joins the chunks and puts it back.
Payload = IRHeader `<IfQQ` (flag, label, id, id2); when flag > 0, `flag` float32 labels follow; then the image.
The .idx is text, one `key<TAB>offset` line per record, in the order the records were written (so offsets increase;
keys need not: face2rec2 writes the header record 0 after the images). See data_layouts/recognition_train_data.md.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count, islice
from pathlib import Path
from typing import BinaryIO

import numpy as np

from facekit.errors import DataFormatError, MissingDataError, where
from facekit.fileio import commit, discard, temp_beside

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_RECORD_HEAD = struct.Struct("<II")
_IR_HEADER = struct.Struct("<IfQQ")
_LENGTH_MASK = (1 << 29) - 1
MAX_CHUNK = 1 << 29
IDX_LINE_LIMIT = 64  # bytes: 'key<TAB>offset' with two 20-digit integers and a CRLF takes 43


@dataclass(frozen=True)
class IRHeader:
    """The image-record header of `mx.recordio`: `label` is a float (flag 0) or a tuple of `flag` floats."""

    flag: int
    label: float | tuple[float, ...]
    id: int = 0
    id2: int = 0

    @property
    def class_label(self) -> float:
        """The class: the scalar label, or the first value of a list label."""
        return self.label[0] if isinstance(self.label, tuple) else self.label


def pack(label: float | tuple[float, ...] | list[float], payload: bytes, id: int = 0, id2: int = 0) -> bytes:
    """IRHeader + labels + payload, exactly as `mx.recordio.pack` lays them out."""
    if isinstance(label, (int, float)):
        return _IR_HEADER.pack(0, float(label), id, id2) + payload
    values = tuple(float(v) for v in label)
    return _IR_HEADER.pack(len(values), 0.0, id, id2) + struct.pack(f"<{len(values)}f", *values) + payload


def unpack(record: bytes | memoryview, context: str = "record") -> tuple[IRHeader, bytes]:
    """Split a record payload into its IRHeader and the bytes after the labels (the encoded image)."""
    if len(record) < _IR_HEADER.size:
        raise DataFormatError(f"{context}: {len(record)} bytes, too short for the 24-byte IRHeader")
    flag, label, id1, id2 = _IR_HEADER.unpack_from(record, 0)
    start = _IR_HEADER.size
    if flag > 0:
        end = start + 4 * flag
        if end > len(record):
            raise DataFormatError(f"{context}: IRHeader announces {flag} labels but the record has {len(record)} bytes")
        labels = struct.unpack_from(f"<{flag}f", record, start)
        return IRHeader(flag, labels, id1, id2), bytes(record[end:])
    return IRHeader(0, label, id1, id2), bytes(record[start:])


def read_idx(idx_path: str | os.PathLike, rec_path: str | os.PathLike | None = None) -> dict[int, int]:
    """Parse a .idx file into {key: byte offset}, in file order.

    With `rec_path`, also check the index against that .rec without reading it: every offset leaves room for a
    record header, there are no more keys than records fit in it (8 bytes each at least: a huge .idx is refused
    before it is all read), and no two keys share an offset.
    """
    rec = Path(rec_path) if rec_path is not None else None
    size = rec.stat().st_size if rec is not None else None
    offsets: dict[int, int] = {}
    for line_no, line in _idx_lines(idx_path):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) != 2:
                raise ValueError
            key, offset = int(fields[0]), int(fields[1])
            if offset < 0:
                raise ValueError
        except ValueError:
            text = line.strip()[:60].decode("ascii", "backslashreplace")
            raise DataFormatError(
                f"{where(idx_path, line_no)}: expected 'key<TAB>offset' with integers, got {text!r}"
            ) from None
        if key in offsets:
            raise DataFormatError(f"{where(idx_path, line_no)}: key {key} appears twice")
        if size is not None:
            if offset + _RECORD_HEAD.size > size:
                raise DataFormatError(
                    f"{idx_path}: key {key} points at offset {offset}, past the end of {rec.name} ({size} bytes)"
                )
            if len(offsets) == size // _RECORD_HEAD.size:
                raise DataFormatError(
                    f"{where(idx_path, line_no)}: more keys than {rec.name} can hold ({size} bytes, records of "
                    f"{_RECORD_HEAD.size} bytes or more: {len(offsets)} at most)"
                )
        offsets[key] = offset
    if size is not None:
        _refuse_shared_offsets(offsets, idx_path)
    return offsets


def _idx_lines(idx_path: str | os.PathLike, block: int = 1 << 20) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of each line, read a block at a time (a line longer than IDX_LINE_LIMIT is an error,
    so memory stays bounded whatever the file holds); a progress bar on stderr when on a terminal and slow."""
    from tqdm import tqdm

    try:
        f = open(idx_path, "rb")
    except FileNotFoundError:
        raise MissingDataError(f"{idx_path}: no such .idx file") from None
    total = os.fstat(f.fileno()).st_size
    name = Path(idx_path).name
    bar = tqdm(total=total, desc=name, unit="B", unit_scale=True, leave=False, disable=None, delay=1, file=sys.stderr)
    with f, bar:
        line_no, rest = 0, b""
        while data := f.read(block):
            bar.update(len(data))
            lines = (rest + data).split(b"\n")
            rest = lines.pop()
            if len(rest) > IDX_LINE_LIMIT:
                lines.append(rest)
            if max(map(len, lines), default=0) > IDX_LINE_LIMIT:
                long = next(i for i, line in enumerate(lines) if len(line) > IDX_LINE_LIMIT)
                yield from zip(count(line_no + 1), lines[:long])
                raise DataFormatError(
                    f"{where(idx_path, line_no + long + 1)}: line longer than {IDX_LINE_LIMIT} bytes, "
                    "expected 'key<TAB>offset'"
                )
            yield from zip(count(line_no + 1), lines)
            line_no += len(lines)
        if rest:
            yield line_no + 1, rest


def first_step_back(offsets: dict[int, int]) -> tuple[int, int] | None:
    """(key, the key listed before it) where offsets first fail to increase down the .idx, or None when they always
    do, as every RecordIO writer (MXNet's, facekit's) lists them. Offsets below 2^63."""
    values = np.fromiter(offsets.values(), np.int64, len(offsets))
    back = np.flatnonzero(values[1:] <= values[:-1])
    if not len(back):
        return None
    previous, key = islice(offsets, int(back[0]), int(back[0]) + 2)
    return key, previous


def _refuse_shared_offsets(offsets: dict[int, int], idx_path: str | os.PathLike) -> None:
    """Two keys for one record: an error naming both. O(n) when offsets increase down the file, else O(n log n)."""
    values = np.fromiter(offsets.values(), np.int64, len(offsets))
    if (values[1:] > values[:-1]).all():
        return
    order = np.argsort(values, kind="stable")
    same = np.flatnonzero(values[order[1:]] == values[order[:-1]])
    if len(same):
        first, second = int(order[same[0]]), int(order[same[0] + 1])
        keys = list(islice(offsets, second + 1))
        raise DataFormatError(
            f"{idx_path}: keys {keys[first]} and {keys[second]} both point at offset {int(values[first])}; "
            "each record has one key"
        )


class RecordReader:
    """Random access to a .rec through its .idx (memory-mapped; safe to pickle into DataLoader workers).

    >>> with RecordReader("cele.rec") as rec:
    ...     header, image_bytes = unpack(rec.read(1))
    """

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path is not None else self.rec_path.with_suffix(".idx")
        if not self.rec_path.is_file():
            raise MissingDataError(f"{self.rec_path}: no such .rec file")
        self.offsets = read_idx(self.idx_path, self.rec_path)
        self.size = self.rec_path.stat().st_size
        self._file: BinaryIO | None = None
        self._map: mmap.mmap | bytes | None = None

    @property
    def keys(self) -> list[int]:
        return list(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets)

    def __contains__(self, key: int) -> bool:
        return key in self.offsets

    def _data(self) -> mmap.mmap | bytes:
        if self._map is None:
            self._file = open(self.rec_path, "rb")
            self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if self.size else b""
        return self._map

    def read(self, key: int) -> bytes:
        """The payload of record `key` (chunks joined)."""
        offset = self.offsets.get(key)
        if offset is None:
            raise DataFormatError(f"{self.idx_path}: no record with key {key}")
        return self.read_at(offset, key)[0]

    def read_at(self, offset: int, key: int | None = None) -> tuple[bytes, int]:
        """(payload, offset of the next record) for the record starting at byte `offset`."""
        data = self._data()
        size = len(data)
        label = f"{self.rec_path}: offset {offset}" + (f" (key {key})" if key is not None else "")
        parts: list[bytes] = []
        pos = offset
        while True:
            if pos + 8 > size:
                raise DataFormatError(f"{label}: file ends inside a record header at byte {pos}")
            magic, lrecord = _RECORD_HEAD.unpack_from(data, pos)
            if magic != MAGIC:
                raise DataFormatError(f"{label}: bad magic 0x{magic:08x} at byte {pos}, expected 0x{MAGIC:08x}")
            cflag, length = lrecord >> 29, lrecord & _LENGTH_MASK
            expected = (0, 1) if not parts else (2, 3)
            if cflag not in expected:
                raise DataFormatError(f"{label}: chunk flag {cflag} at byte {pos}, expected one of {expected}")
            start = pos + 8
            if start + length > size:
                raise DataFormatError(
                    f"{label}: payload of {length} bytes runs past the end of the file ({size} bytes)"
                )
            parts.append(data[start : start + length])
            pos = start + ((length + 3) & ~3)
            if cflag in (0, 3):
                break
        return (parts[0] if len(parts) == 1 else _MAGIC_BYTES.join(parts)), pos

    def scan(self) -> Iterator[tuple[int, bytes]]:
        """(offset, payload) for every record in file order, without the .idx (dmlc's sequential reader)."""
        pos = 0
        while pos < self.size:
            payload, next_pos = self.read_at(pos)
            yield pos, payload
            pos = next_pos

    def close(self) -> None:
        if isinstance(self._map, mmap.mmap):
            self._map.close()
        if self._file is not None:
            self._file.close()
        self._map = self._file = None

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = state["_map"] = None
        return state


def encode_record(payload: bytes) -> bytes:
    """The bytes dmlc-core's RecordIOWriter::WriteRecord writes for one payload (chunked where needed)."""
    if len(payload) >= MAX_CHUNK:
        raise DataFormatError(f"record of {len(payload)} bytes: RecordIO records must be smaller than 2^29 bytes")
    out: list[bytes] = []
    start = 0
    pos = payload.find(_MAGIC_BYTES)
    while pos != -1:
        if pos % 4 == 0:
            out.append(_RECORD_HEAD.pack(MAGIC, (1 if start == 0 else 2) << 29 | (pos - start)))
            out.append(payload[start:pos])
            start = pos + 4
            pos = payload.find(_MAGIC_BYTES, start)
        else:
            pos = payload.find(_MAGIC_BYTES, pos + 1)
    length = len(payload) - start
    out.append(_RECORD_HEAD.pack(MAGIC, (3 if start else 0) << 29 | length))
    out.append(payload[start:])
    out.append(b"\0" * (-length % 4))
    return b"".join(out)


class RecordWriter:
    """Writes a .rec and its .idx next to their final names and renames both into place on close().

    Use as a context manager: on an exception the temporary files are removed and any previous files stay.
    """

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path is not None else self.rec_path.with_suffix(".idx")
        self._rec = temp_beside(self.rec_path, "wb")
        self._idx = temp_beside(self.idx_path, "w")
        self._offset = 0
        self._keys: set[int] = set()

    def write(self, key: int, payload: bytes) -> int:
        """Append one record under `key`; returns its byte offset."""
        if key in self._keys:
            raise ValueError(f"key {key} written twice to {self.rec_path}")
        self._keys.add(key)
        data = encode_record(payload)
        offset = self._offset
        self._rec.write(data)
        self._idx.write(f"{key}\t{offset}\n")
        self._offset += len(data)
        return offset

    def close(self) -> None:
        """Flush, fsync and rename both files into place."""
        commit(self._rec, self.rec_path)
        commit(self._idx, self.idx_path)

    def abort(self) -> None:
        discard(self._rec)
        discard(self._idx)

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
