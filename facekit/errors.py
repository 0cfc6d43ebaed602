"""The errors facekit raises for bad input. The CLI turns each into one line and an exit code."""

from __future__ import annotations

import os


class FacekitError(Exception):
    """Base class: a problem with the user's input or environment, never a bug in facekit."""

    exit_code = 1


class DataFormatError(FacekitError):
    """A file exists but does not hold what its layout promises (message names file and line/offset/key)."""


class MissingDataError(FacekitError):
    """Files the layout needs are not there."""


class LayoutError(FacekitError):
    """A folder is not any layout facekit knows."""


class ImageDecodeError(DataFormatError):
    """An image's bytes cannot be decoded."""


class ModelError(DataFormatError):
    """A model whose outputs break its format's contract (wrong shapes, NaN): no photo is to blame, so a batch job
    stops instead of skipping the photo at hand."""


class OutputConflictError(FacekitError):
    """An output path that would overwrite one of the command's inputs: a usage error, found before any work."""

    exit_code = 2


def where(path: str | os.PathLike, line: int | None = None) -> str:
    """`path` or `path:line`, the prefix every data error message starts with."""
    return f"{os.fspath(path)}:{line}" if line is not None else os.fspath(path)
