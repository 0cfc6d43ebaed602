"""Trained models cached under `~/.cache/facekit/trained`, keyed by what made them: the command line, the sizes and
modification times of the data files, the versions of Python and torch, and the text of every facekit source file
the command can import (the static closure of its imports, function-level ones included). Change any of them and
the model is trained again; a hit hands out a copy of the files that training wrote, checked against their hashes.
"""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from cached_env import CACHE, cached

PACKAGE = Path(__file__).resolve().parents[1] / "facekit"
MANIFEST = "manifest.json"


class TrainedCacheError(RuntimeError):
    """A cached model could not be built."""


def module_file(name: str) -> Path | None:
    """The source file of facekit module `name` (`facekit.a.b`), or None when it is not a facekit module."""
    parts = name.split(".")
    if parts[0] != "facekit":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported(path: Path, name: str) -> set[str]:
    """Every module `path` (module `name`) imports, at any depth of its code; `from m import x` also counts `m.x`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def source_closure(entries: Iterable[str]) -> list[Path]:
    """The facekit source files that modules `entries` can import, directly or not, with their parent packages."""
    todo, seen = list(entries), set()
    files: set[Path] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        if path is None:
            continue
        files.add(path)
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        todo += [*parents, *_imported(path, name)]
    return sorted(files)


def recipe_key(args: Sequence[str], data: Path, entries: Iterable[str]) -> str:
    """sha256 of the command line, the data files (relative name, size, mtime), Python, torch and the sources."""
    import torch

    digest = hashlib.sha256()
    digest.update(json.dumps([list(args), sys.version, torch.__version__]).encode())
    for path in sorted(p for p in data.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(data)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    for path in source_closure(entries):
        digest.update(f"{path.relative_to(PACKAGE)}\n".encode() + path.read_bytes())
    return digest.hexdigest()


def _hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`/model, by relative name."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((folder / "model").rglob("*"))
        if p.is_file()
    }


def _complete(folder: Path) -> bool:
    manifest = folder / MANIFEST
    return manifest.is_file() and json.loads(manifest.read_text()) == _hashes(folder)


def cached_model(name: str, key: str, train: Callable[[Path], None], out: Path) -> Path:
    """A copy at `out` of the model folder `train(folder)` writes (`folder` does not exist yet), trained once per
    `key`; the cache entry holds it as `model/` beside the hashes of its files."""

    def build(tmp: Path) -> None:
        train(tmp / "model")
        (tmp / MANIFEST).write_text(json.dumps(_hashes(tmp), indent=1))

    target = cached(CACHE / "trained" / name / key[:24], _complete, build, TrainedCacheError)
    shutil.copytree(target / "model", out)
    return out
