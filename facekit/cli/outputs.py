"""Outputs never replace inputs. A command that writes names what it reads (Inputs) and checks its output paths
against them before any work. Symbolic links resolved, an output must not be one of the input files or folders, a
file of a model directory it reads, a photo in a data folder it reads, or a folder inside such a data folder (where
the next run would read it as data). New files beside a model (an evaluation folder) are fine."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


class Inputs:
    """The paths a command reads, each with the role its error message gives it ("the gallery")."""

    def __init__(self) -> None:
        self.files: list[tuple[Path, str]] = []  # (as given, role)
        self.folders: list[tuple[Path, Path, str, bool]] = []  # (resolved, as given, role, a model directory)

    def file(self, path: Path | None, role: str) -> Inputs:
        """A file read as it is: a gallery, a list of photos, a verification .bin, a checkpoint."""
        if path is not None:
            self.files.append((path, role))
        return self

    def data(self, path: Path | None, role: str) -> Inputs:
        """A data folder (its photos, and folders inside it, are protected) or, when `path` is a file, that file."""
        if path is None or not path.is_dir():
            return self.file(path, role)
        self.folders.append((path.resolve(), path, role, False))
        return self

    def photo_source(self, path: Path, photos: Iterable[Path], what: str) -> Inputs:
        """Where the `photos` come from: a folder ("the {what} folder"), a list file naming them ("the {what}
        list"), or one photo."""
        if path.is_dir():
            return self.data(path, f"the {what} folder")
        photos = list(photos)
        if photos == [path]:
            return self.file(path, "the photo")
        self.files += [(photo, f"a photo listed in {path}") for photo in photos]
        return self.file(path, f"the {what} list")

    def model(self, path: Path | None, kind: str) -> Inputs:
        """A `kind` ("recognizer") model: a directory, or its model.pt (through any link), protects every file of
        the directory; any other file (.onnx, .pth) itself."""
        from facekit.modeldir import MODEL_FILE

        if path is None:
            return self
        if path.is_dir() or path.resolve().name == MODEL_FILE:
            folder = path if path.is_dir() else path.resolve().parent
            self.folders.append((folder.resolve(), folder, f"the {kind} model directory", True))
            path = folder / MODEL_FILE
        return self.file(path, f"the {kind} model file")

    def check(self, files: Iterable[Path | None] = (), folders: Iterable[Path | None] = ()) -> None:
        """Refuse (OutputConflictError, exit 2) output `files` and `folders` that would replace an input, or that
        name one path twice."""
        from facekit.errors import OutputConflictError

        seen: dict[Path, Path] = {}
        outputs = [(path, False) for path in files if path is not None]
        for out, folder in outputs + [(path, True) for path in folders if path is not None]:
            problem = self._conflict(out, folder)
            if problem is None and out.resolve() in seen:
                problem = f"is given twice as an output{_named(seen[out.resolve()], out)}"
            if problem is not None:
                raise OutputConflictError(f"{out}: {problem}; choose another output path")
            seen[out.resolve()] = out

    def _conflict(self, out: Path, folder: bool) -> str | None:
        from facekit.data.images import is_image_file

        resolved = out.resolve()
        if out.is_file():  # only an existing file can be one of the input files
            same = _identity(out)
            for path, role in self.files:
                if _identity(path) == same:
                    return f"is {role}{_named(path, out)} (an input)"
        for path, given, role, model in self.folders:
            if resolved == path:
                return f"is {role}{_named(given, out)} (an input)"
            if not resolved.is_relative_to(path):
                continue
            if model:
                if out.is_file():
                    return f"is a file of {role} {given} (an input)"
            elif folder:
                return f"lies inside {role} {given} (an input)"
            elif out.is_file() and is_image_file(resolved):
                return f"is a photo in {role} {given} (an input)"
        return None


def _identity(path: Path) -> tuple[int, int] | None:
    """The file's (device, inode) through any links; None when it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _named(path: Path, out: Path) -> str:
    """` PATH`, when the input was given by another path than the output (a link, another spelling)."""
    return "" if os.path.abspath(path) == os.path.abspath(out) else f" {path}"
