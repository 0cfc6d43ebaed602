"""JSON that every parser reads. Python's json writes NaN and Infinity, which are not JSON (RFC 8259): facekit
writes a value that is not a finite number as null, as its metrics already do for an undefined value."""

from __future__ import annotations

import json
import math
from typing import IO, Any


def finite(value: Any) -> Any:
    """`value` with every float that is NaN or infinite, in nested dicts, lists and tuples, replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """json.dumps of finite(value), never NaN or Infinity (allow_nan=False)."""
    return json.dumps(finite(value), allow_nan=False, **kwargs)


def dump(value: Any, f: IO[str], **kwargs: Any) -> None:
    """json.dump of finite(value), never NaN or Infinity (allow_nan=False)."""
    json.dump(finite(value), f, allow_nan=False, **kwargs)


def rounded(value: float | None, digits: int) -> float | None:
    """`value` rounded to `digits` decimals for a metrics file; None for None, NaN and infinities."""
    return round(float(value), digits) if value is not None and math.isfinite(value) else None
