"""What a gallery file must hold (data_layouts/gallery.md), checked before any data is read, and its bounded reader.

Every attribute's type and range, and every dataset's link, type, shape, filters and storage, are checked against
the schema and against each other first. Rows are then read a block at a time and checked as they come (finite
values, unit-norm embeddings, identity numbers in range, UTF-8 text), so a crafted file can neither reach data in
another file nor make facekit allocate more than its own bytes can hold.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facekit.align import ARCFACE_SIZE, check_template
from facekit.errors import DataFormatError, FacekitError

if TYPE_CHECKING:
    import h5py

SCHEMA_VERSION = 2  # 2: resizable datasets read up to attribute `committed`; 1 still read
READABLE_VERSIONS = (1, 2)
MAX_DIM = 16384  # the largest embedding size a gallery may declare
CROP_SIZES = range(16, 1025)  # aligned crop sides a gallery may declare
NORM_TOLERANCE = 1e-3  # how far the L2 norm of an embedding or template may be from 1
DEFLATE_RATIO = 1032  # the most deflate (HDF5's gzip filter) compresses: values a stored byte can hold
BLOCK_BYTES = 1 << 24  # rows are read about this many bytes at a time
VLEN_BYTES = 16  # the size of a variable-length string's reference in the file
FILTERS = {1: "gzip", 2: "shuffle", 3: "fletcher32"}  # the HDF5 filters facekit writes
CONTENT_ID = re.compile(r"[0-9a-f]{32}")
# name -> what the attribute must be: str, int, bool, a time (ISO 8601 str), an id, or the [5, 2] template
ATTRIBUTES = {
    "format": "text",
    "schema_version": "int",
    "embedding_dim": "int",
    "recognizer": "text",
    "recognizer_fingerprint": "text",
    "detector": "text",
    "detector_fingerprint": "text",
    "alignment_template": "template",
    "crop_size": "int",
    "flip": "bool",
    "facekit_version": "text",
    "created": "time",
    "updated": "time",
    "content_id": "id",
}
# name -> (kind, shape after the rows, rows: "N" faces or "K" identities); "D" is embedding_dim
DATASETS = {
    "identities": ("text", (), "K"),
    "identity_index": ("int", (), "N"),
    "embeddings": ("float", ("D",), "N"),
    "templates": ("float", ("D",), "K"),
    "sources": ("text", (), "N"),
    "boxes": ("float", (4,), "N"),
    "landmarks": ("float", (5, 2), "N"),
    "det_scores": ("float", (), "N"),
}
PLURAL = {"float": "floats", "int": "integers", "text": "strings"}
EXPECTED = {
    "text": "a string",
    "int": "an integer",
    "bool": "a bool",
    "template": "floats [5, 2]",
    "time": "an ISO 8601 time string",
    "id": "a string of 32 hex digits",
}


def read_gallery(f: h5py.File, path: Path) -> tuple[dict[str, object], dict[str, object]]:
    """(attributes, datasets) of open gallery file `f`, all checked; datasets as float32 / int32 arrays and lists
    of str. Raises DataFormatError naming `path` and the first problem found."""
    attrs = {name: _attribute(f, name, path) for name in ATTRIBUTES}
    dim = attrs["embedding_dim"]
    committed = _committed(f, path) if attrs["schema_version"] >= 2 else None
    datasets, rows = _datasets(f, path, dim, committed)
    n, k = rows["N"], rows["K"]
    size = path.stat().st_size
    values: dict[str, object] = {}
    try:
        for name, dataset in datasets.items():
            kind, _, count = DATASETS[name]
            if kind == "text":
                values[name] = _read_text(dataset, rows[count], name, path, size)
            else:
                unit = name in ("embeddings", "templates")
                values[name] = _read_numbers(dataset, rows[count], name, path, kind, unit=unit, limit=k)
    except MemoryError:
        raise FacekitError(f"{path}: not enough memory for {n} faces of {dim}-d embeddings") from None
    seen: dict[str, int] = {}
    for i, name in enumerate(values["identities"]):
        if seen.setdefault(name, i) != i:
            raise DataFormatError(f"{path}: identities rows {seen[name]} and {i} are both {name!r}")
    return attrs, values


def committed_rows(f: h5py.File) -> tuple[str, int, int] | None:
    """(content_id, N, K) that gallery file `f` (schema 2, open for writing) has committed; None for another file."""
    try:
        if f.attrs["schema_version"] != 2:
            return None
        n, k = (int(v) for v in f.attrs["committed"])
        content_id = f.attrs["content_id"]
    except (KeyError, TypeError, ValueError):
        return None
    return content_id.decode("utf-8") if isinstance(content_id, bytes) else str(content_id), n, k


def _committed(f: h5py.File, path: Path) -> tuple[int, int]:
    """Attribute `committed` of a schema 2 gallery: (N faces, K identities) written and committed, 1 <= K <= N."""
    if "committed" not in f.attrs:
        raise DataFormatError(f"{path}: gallery lacks attribute committed; rebuild it with build-db")
    attr = f.attrs.get_id("committed")
    if attr.shape != (2,) or attr.dtype.kind not in "iu":
        raise DataFormatError(f"{path}: attribute committed is {_what(attr.dtype, attr.shape)}, expected integers [2]")
    n, k = (int(v) for v in f.attrs["committed"])
    if not 1 <= k <= n:
        raise DataFormatError(f"{path}: attribute committed is [{n}, {k}], expected 1 <= identities <= faces")
    return n, k


def _attribute(f: h5py.File, name: str, path: Path) -> object:
    """Attribute `name`, its type and shape checked before its value is read, then its value."""
    import h5py

    kind = ATTRIBUTES[name]
    if name not in f.attrs:
        if name == "format":
            raise DataFormatError(f"{path}: an HDF5 file, but not a facekit gallery (no format attribute)")
        raise DataFormatError(f"{path}: gallery lacks attribute {name}; rebuild it with build-db")
    attr = f.attrs.get_id(name)
    text = h5py.check_string_dtype(attr.dtype) is not None
    fits = {"int": attr.dtype.kind in "iu", "bool": attr.dtype.kind == "b", "template": attr.dtype.kind == "f"}
    shape = (5, 2) if kind == "template" else ()
    if attr.shape != shape or not fits.get(kind, text):
        raise DataFormatError(f"{path}: attribute {name} is {_what(attr.dtype, attr.shape)}, expected {EXPECTED[kind]}")
    value = f.attrs[name]
    if text:
        value = value.decode("utf-8") if isinstance(value, bytes) else str(value)
    return _checked(name, kind, value, path)


def _checked(name: str, kind: str, value: object, path: Path) -> object:
    """`value` as its Python type, once in range for attribute `name`."""
    problem = None
    if name == "format" and value != "facekit-gallery":
        raise DataFormatError(f"{path}: an HDF5 file, but not a facekit gallery (format {value!r})")
    if name == "schema_version" and value not in READABLE_VERSIONS:
        from facekit import __version__

        raise DataFormatError(
            f"{path}: gallery schema version {value}; this facekit reads "
            f"{' and '.join(map(str, READABLE_VERSIONS))} (facekit {__version__})"
        )
    if name == "embedding_dim" and not 1 <= value <= MAX_DIM:
        problem = f"{value}, expected 1 to {MAX_DIM}"
    elif name == "crop_size" and value not in CROP_SIZES:
        problem = f"{value}, expected {CROP_SIZES.start} to {CROP_SIZES.stop - 1}"
    elif kind == "template":
        try:
            value = check_template(value, ARCFACE_SIZE)  # the points in a 112 x 112 frame, whatever crop_size is
        except ValueError as exc:
            problem = str(exc)
    elif kind == "time" and not _is_time(value):
        problem = f"{value[:40]!r}, expected an ISO 8601 time"
    elif kind == "id" and not CONTENT_ID.fullmatch(value):
        problem = f"{value[:40]!r}, expected 32 hex digits"
    if problem:
        raise DataFormatError(f"{path}: attribute {name} is {problem}")
    return {"int": int, "bool": bool, "template": np.asarray}.get(kind, str)(value)


def _is_time(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _kind(dtype: np.dtype) -> str:
    """'string', 'float', 'integer', 'bool' or the HDF5 type's numpy name."""
    import h5py

    if h5py.check_string_dtype(dtype) is not None:
        return "string"
    return {"f": "float", "i": "integer", "u": "integer", "b": "bool"}.get(dtype.kind, f"{dtype} value")


def _what(dtype: np.dtype, shape: tuple[int, ...] | None) -> str:
    """'a string', 'floats [3]' and the like."""
    kind = _kind(dtype)
    if not shape:
        return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"
    return f"{kind}s {list(shape)}"


def _datasets(
    f: h5py.File, path: Path, dim: int, committed: tuple[int, int] | None
) -> tuple[dict[str, h5py.Dataset], dict[str, int]]:
    """The gallery's datasets, each a dataset of this file of the right type and shape whose committed values
    (all of them in a schema 1 file) are stored in it, within what deflate can pack into the file's size; and the
    committed rows {"N": faces, "K": identities}. Rows past them (an append that did not commit) are ignored."""
    missing = [name for name in DATASETS if name not in f]
    if missing:
        raise DataFormatError(f"{path}: gallery lacks dataset(s) {', '.join(missing)}")
    datasets = {name: _dataset(f, name, path) for name in DATASETS}
    if committed is None:
        rows = {"N": datasets["embeddings"].shape[0], "K": datasets["identities"].shape[0]}
    else:
        rows = dict(zip("NK", committed, strict=True))
    for name, dataset in sorted(datasets.items(), key=lambda item: item[0] != "embeddings"):  # it sets N
        _, tail, count = DATASETS[name]
        expected = [rows[count], *(dim if d == "D" else d for d in tail)]
        if committed is not None and dataset.shape[0] > rows[count] and dataset.maxshape[0] is None:
            expected[0] = dataset.shape[0]  # resizable: rows of an append that did not commit may follow
        if list(dataset.shape) != expected:
            shown = ", ".join(map(str, ["N" if name == "embeddings" else expected[0], *expected[1:]]))
            raise DataFormatError(f"{path}: dataset {name} has shape {list(dataset.shape)}, expected [{shown}]")
    if not rows["N"]:
        raise DataFormatError(f"{path}: gallery holds no faces (facekit never writes an empty gallery)")
    if rows["K"] > rows["N"]:
        raise DataFormatError(f"{path}: {rows['K']} identities for {rows['N']} faces; each has a face at least")
    size = path.stat().st_size
    stored = sum(_stored_bytes(d, rows[DATASETS[name][2]], name, path, size) for name, d in datasets.items())
    if stored > size:
        raise DataFormatError(f"{path}: damaged gallery file (its datasets claim {stored} bytes of a {size}-byte file)")
    return datasets, rows


def _dataset(f: h5py.File, name: str, path: Path) -> h5py.Dataset:
    """`f[name]`, once it is a dataset kept in this file, of the kind the schema says."""
    import h5py

    link = f.get(name, getlink=True)
    if isinstance(link, h5py.ExternalLink):
        raise DataFormatError(
            f"{path}: dataset {name} is a link to {link.path} in another file ({link.filename}); "
            "facekit reads a gallery from its own file only"
        )
    if isinstance(link, h5py.SoftLink):
        raise DataFormatError(f"{path}: dataset {name} is a link to {link.path}, not a dataset")
    dataset = f[name]
    if not isinstance(dataset, h5py.Dataset):
        raise DataFormatError(f"{path}: {name} is a {type(dataset).__name__.lower()}, expected a dataset")
    if dataset.is_virtual or dataset.external:
        raise DataFormatError(f"{path}: dataset {name} keeps its values in other files; facekit reads a gallery "
                              "from its own file only")  # fmt: skip
    kind, tail, count = DATASETS[name]
    if dataset.ndim != 1 + len(tail):
        expected = ", ".join([count, *map(str, tail)])
        raise DataFormatError(f"{path}: dataset {name} has shape {list(dataset.shape)}, expected [{expected}]")
    text = h5py.check_string_dtype(dataset.dtype) is not None
    if not {"float": dataset.dtype.kind == "f", "int": dataset.dtype.kind in "iu", "text": text}[kind]:
        raise DataFormatError(f"{path}: dataset {name} holds {_kind(dataset.dtype)}s, expected {PLURAL[kind]}")
    plist = dataset.id.get_create_plist()
    for i in range(plist.get_nfilters()):
        code = plist.get_filter(i)[0]
        if code not in FILTERS:
            raise DataFormatError(
                f"{path}: dataset {name} is stored through HDF5 filter {code}; facekit writes only "
                f"{', '.join(FILTERS.values())}"
            )
    return dataset


def _stored_bytes(dataset: h5py.Dataset, rows: int, name: str, path: Path, size: int) -> int:
    """The bytes `dataset` occupies in the file, once the values of its first `rows` rows are stored there and
    those bytes can hold them (deflate packs at most DEFLATE_RATIO values' bytes into one)."""
    import h5py

    vlen = dataset.dtype.kind == "O" and h5py.check_string_dtype(dataset.dtype) is not None
    shape = (rows, *dataset.shape[1:])
    declared = math.prod(shape) * (VLEN_BYTES if vlen else dataset.dtype.itemsize)
    stored = dataset.id.get_storage_size()
    if dataset.chunks is not None:
        chunks = math.prod(math.ceil(n / c) for n, c in zip(shape, dataset.chunks, strict=True))
        have = dataset.id.get_num_chunks()
        if rows < dataset.shape[0]:  # count only the chunks that hold committed rows
            have = sum(dataset.id.get_chunk_info(i).chunk_offset[0] < rows for i in range(have))
        whole, part = have == chunks, f"stores {have} of its {chunks} chunks"
    else:
        offset = dataset.id.get_offset()  # None: not written, or kept in the object header (compact layout)
        inside = min(stored, declared) if offset is None else max(0, min(stored, declared, size - offset))
        whole, part = inside == declared, f"only {inside} of their bytes are in the file"
    if whole and declared > DEFLATE_RATIO * stored + 4096:
        whole, part = False, f"packs them into {stored} bytes"
    if not whole:
        shape = " x ".join(map(str, shape))
        raise DataFormatError(
            f"{path}: dataset {name} declares {shape} values ({_bytes(declared)}) but {part}; damaged or not "
            "written by facekit: rebuild it with build-db"
        )
    return stored


def _bytes(n: int) -> str:
    """'512 bytes', '120.0 MB' and the like."""
    power = min(4, (len(str(n)) - 1) // 3)
    return f"{n} bytes" if power == 0 else f"{n / 1000**power:.1f} {['KB', 'MB', 'GB', 'TB'][power - 1]}"


def read_rows(
    dataset: h5py.Dataset, rows: int, name: str, path: Path, size: int, *, kind: str, unit: bool = False
) -> np.ndarray | list[str]:
    """The first `rows` rows of `dataset` of file `path` (`size` bytes), read a bounded block at a time and checked
    as the gallery's are: kind "float" (finite, of unit L2 norm when `unit`) as float32, "text" as str (UTF-8).
    Raises DataFormatError naming the file, dataset and row."""
    import h5py

    is_text = h5py.check_string_dtype(dataset.dtype) is not None
    if is_text != (kind == "text") or (kind == "float" and dataset.dtype.kind not in "fiu"):
        raise DataFormatError(f"{path}: dataset {name} holds {_kind(dataset.dtype)}s, expected {PLURAL[kind]}")
    _stored_bytes(dataset, rows, name, path, size)
    if kind == "text":
        return _read_text(dataset, rows, name, path, size)
    return _read_numbers(dataset, rows, name, path, kind, unit=unit, limit=0)


def _blocks(dataset: h5py.Dataset, rows: int, row: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, rows) of the first `rows` of `dataset` about BLOCK_BYTES at a time (rows of about `row` bytes),
    in whole chunks."""
    step = dataset.chunks[0] if dataset.chunks else 1
    step *= max(1, BLOCK_BYTES // (row * step))
    for start in range(0, rows, step):
        yield start, dataset[start : min(start + step, rows)]


def _read_numbers(
    dataset: h5py.Dataset, rows: int, name: str, path: Path, kind: str, *, unit: bool, limit: int
) -> np.ndarray:
    """The first `rows` rows as float32 (all finite; unit-norm when `unit`) or int32 (identity numbers below
    `limit`)."""
    out = np.empty((rows, *dataset.shape[1:]), np.float32 if kind == "float" else np.int32)
    for start, block in _blocks(dataset, rows, math.prod(dataset.shape[1:]) * max(4, dataset.dtype.itemsize)):
        problem = None
        if kind == "int":
            wrong = np.flatnonzero((block < 0) | (block >= limit))
            if len(wrong):
                problem = f"is {block[wrong[0]]}, outside the {limit} identities", wrong[0]
        else:
            block = block.astype(np.float32)
            rows = block.reshape(len(block), -1)
            wrong = np.flatnonzero(~np.isfinite(rows).all(1))
            if len(wrong):
                problem = "holds NaN or infinite values", wrong[0]
            elif unit:
                norms = np.linalg.norm(rows.astype(np.float64), axis=1)  # float32 squares overflow
                wrong = np.flatnonzero(np.abs(norms - 1) > NORM_TOLERANCE)
                if len(wrong):
                    problem = f"has L2 norm {norms[wrong[0]]:.6g}, expected 1 (L2-normalised)", wrong[0]
        if problem:
            raise DataFormatError(f"{path}: dataset {name} row {start + problem[1]} {problem[0]}")
        out[start : start + len(block)] = block
    return out


def _read_text(dataset: h5py.Dataset, rows: int, name: str, path: Path, size: int) -> list[str]:
    """The first `rows` rows as str (UTF-8). Variable-length strings (galleries written before facekit wrote
    fixed-length ones) live outside the dataset, and rows could share them: together they may not be longer than
    the file."""
    out: list[str] = []
    total, shared = 0, dataset.dtype.kind == "O"
    for start, block in _blocks(dataset, rows, max(256, dataset.dtype.itemsize)):  # ~ a Python str per name or path
        raw = [bytes(item) for item in block]
        total += sum(map(len, raw))
        if shared and total > size:
            raise DataFormatError(f"{path}: damaged gallery file (dataset {name} holds more text than the file)")
        for i, item in enumerate(raw):
            try:
                out.append(item.decode("utf-8"))
            except UnicodeDecodeError:
                raise DataFormatError(f"{path}: dataset {name} row {start + i} is not UTF-8 text") from None
    return out
