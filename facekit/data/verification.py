"""insightface verification sets (lfw.bin, cfp_fp.bin, agedb_30.bin): a pickle of (bins, issame_list).

`bins` holds 2 x len(issame_list) encoded images, pairs adjacent, as bytes or as 1-D uint8 numpy arrays. A pickle
can run code, so it is read with an unpickler that builds only tuples, lists, bytes, str, numbers and bools; numpy's
array globals are replaced by inert stand-ins that keep the raw bytes, and every other global is refused.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

from facekit import strict_json
from facekit.errors import DataFormatError, MissingDataError
from facekit.fileio import atomic_write


@dataclass
class VerificationSet:
    """images: 2P encoded images (pair i = images[2i], images[2i+1]); issame: P booleans."""

    images: list[bytes]
    issame: list[bool]

    def __len__(self) -> int:
        return len(self.issame)


PAIRS_FORMAT = "facekit-pairs/1"  # the "format" of the sidecar `facekit make-bin` writes beside a .bin


def sidecar_path(bin_path: str | os.PathLike) -> Path:
    """The sidecar JSON that names the people of a .bin: `x.bin` -> `x.json`."""
    return Path(bin_path).with_suffix(".json")


def bin_people(bin_path: str | os.PathLike) -> list[str] | None:
    """The people (sorted names) of a .bin, from its sidecar (data_layouts/verification_bin.md); None when there is
    no sidecar. A sidecar that is not a facekit-pairs/1 mapping with a list of names raises DataFormatError."""
    path = sidecar_path(bin_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"{path}: cannot read the .bin's sidecar ({exc})") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path}: not JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != PAIRS_FORMAT:
        raise DataFormatError(f'{path}: expected a JSON object with "format": "{PAIRS_FORMAT}"')
    people = meta.get("people")
    if not isinstance(people, list) or not all(isinstance(name, str) for name in people):
        raise DataFormatError(f'{path}: "people" must be a list of names (strings)')
    return people


class _DType:
    """Stand-in for numpy.dtype(name, align, copy): records the name only."""

    def __init__(self, name: object = None, *_: object) -> None:
        self.name = name

    def __setstate__(self, state: object) -> None:
        pass


class _Array:
    """Stand-in for an unpickled numpy array: keeps the raw buffer of a uint8 array ([N] or [N, 1]), nothing else."""

    raw: bytes | None = None

    def __setstate__(self, state: object) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("unexpected numpy array state")
        _, shape, dtype, _, raw = state
        if not (isinstance(dtype, _DType) and dtype.name in ("u1", b"u1") and isinstance(shape, tuple)):
            raise pickle.UnpicklingError("only uint8 arrays (encoded images) are allowed")
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != math.prod(shape):
            raise pickle.UnpicklingError("array buffer does not match its shape")
        self.raw = bytes(raw)


def _reconstruct(*_: object) -> _Array:
    return _Array()


_ALLOWED = {
    # Python-3 pickles of protocol <= 2 encode bytes through _codecs.encode(str, 'latin1').
    ("_codecs", "encode"): lambda text, encoding="latin1": text.encode(encoding),
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _Array,
    ("numpy", "dtype"): _DType,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a verification .bin") from None


def load_bin(path: str | os.PathLike) -> VerificationSet:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise MissingDataError(f"{path}: no such verification .bin") from None
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # pickle raises many types on corrupt input
        raise DataFormatError(f"{path}: not a verification .bin pickle ({type(exc).__name__}: {exc})") from None
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise DataFormatError(f"{path}: expected a pickle of (bins, issame_list)")
    bins, issame = obj
    if isinstance(bins, (list, tuple)):
        bins = [b.raw if isinstance(b, _Array) else b for b in bins]
    if not isinstance(bins, (list, tuple)) or not all(isinstance(b, (bytes, bytearray)) for b in bins):
        raise DataFormatError(f"{path}: 'bins' must be a list of encoded images (bytes)")
    if not isinstance(issame, (list, tuple)) or not all(isinstance(v, (bool, int)) for v in issame):
        raise DataFormatError(f"{path}: 'issame_list' must be a list of booleans")
    if len(bins) != 2 * len(issame):
        raise DataFormatError(f"{path}: {len(bins)} images for {len(issame)} pairs (expected {2 * len(issame)})")
    return VerificationSet([bytes(b) for b in bins], [bool(v) for v in issame])


def write_bin(path: str | os.PathLike, vset: VerificationSet, sidecar: dict | None = None) -> None:
    """Write a .bin that insightface's verification code (and facekit) reads, atomically. With `sidecar` (at least
    {"people": [names]}; data_layouts/verification_bin.md), also its sidecar, written after the .bin with the
    "format" key added; any old sidecar is removed first, so none ever names the people of another .bin."""
    if len(vset.images) != 2 * len(vset.issame):
        raise ValueError(f"{len(vset.images)} images for {len(vset.issame)} pairs")
    side = sidecar_path(path)
    side.unlink(missing_ok=True)
    with atomic_write(path, "wb") as f:
        pickle.dump((list(vset.images), list(vset.issame)), f, protocol=4)
    if sidecar is not None:
        with atomic_write(side) as f:
            strict_json.dump({"format": PAIRS_FORMAT} | sidecar, f, indent=1)
