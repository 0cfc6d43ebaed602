"""Data flows one way through facekit's packages: no module imports a package above its own, at top level or inside
a function. Order, low to high: the top-level modules (facekit/*.py), data, then detection and recognition (siblings:
neither imports the other), runtime, gallery, cli. facekit/__main__.py is the entry point above them all."""

from __future__ import annotations

import ast
from pathlib import Path

import facekit

RANKS = {"": 0, "data": 1, "detection": 2, "recognition": 2, "runtime": 3, "gallery": 4, "cli": 5}
ENTRY_POINT = "__main__"


def _layer(module: str) -> str | None:
    """The layer of a dotted module name: a package of RANKS, "" for a top-level module (facekit, facekit.x), None
    outside facekit."""
    parts = module.split(".")
    if parts[0] != "facekit":
        return None
    return parts[1] if len(parts) > 1 and parts[1] in RANKS else ""


def _imported(node: ast.Import | ast.ImportFrom, package: list[str]) -> list[str]:
    """The dotted modules an import statement names (`from facekit import cli` names facekit.cli; relative imports
    resolved against `package`, the importing module's package parts)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
    module = ".".join(p for p in (base, node.module or "") if p)
    return [f"{module}.{alias.name}" for alias in node.names] if module == "facekit" else [module]


def upward_imports(root: Path) -> list[str]:
    """'file:line imports module (layer a -> layer b)' for every import in the package at `root` (a folder named
    facekit) that goes up the order or sideways between detection and recognition."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        if rel.parts == ("facekit", ENTRY_POINT):
            continue
        mine = _layer(".".join(rel.parts))
        package = list(rel.parts[:-1])
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for module in _imported(node, package):
                theirs = _layer(module)
                if theirs is None or theirs == mine:
                    continue
                if RANKS[theirs] >= RANKS[mine]:
                    where = f"{path.relative_to(root.parent)}:{node.lineno}"
                    found.append(f"{where} imports {module} ({mine or 'top level'} -> {theirs or 'top level'})")
    return found


def test_no_package_imports_upward():
    problems = upward_imports(Path(facekit.__file__).parent)
    assert not problems, "imports against the house direction:\n" + "\n".join(problems)


def test_the_check_finds_upward_and_sideways_imports(tmp_path):
    """The check itself can fail: a made-up tree with one import of each kind, allowed and not."""
    files = {
        "__init__.py": "",
        "__main__.py": "from facekit.cli import main\n",
        "align.py": "from facekit import strict_json\n",
        "norms.py": "def f():\n    from facekit.runtime import pipeline\n",
        "data/images.py": "import numpy\nfrom facekit.errors import FacekitError\n",
        "data/inspect.py": "def g():\n    from facekit.gallery.store import Gallery\n",
        "detection/faces.py": "from facekit.data.images import read\nfrom facekit.recognition import config\n",
        "recognition/train.py": "from . import losses\nfrom ..runtime import recognizer\n",
        "runtime/detector.py": "from facekit.detection.faces import Face\nimport facekit.gallery.store\n",
        "gallery/build.py": "from facekit.runtime.pipeline import FacePipeline\n",
        "cli/gallery.py": "from facekit import cli\nfrom facekit.gallery import build\n",
    }
    for name, text in files.items():
        (tmp_path / "facekit" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "facekit" / name).write_text(text)
    assert upward_imports(tmp_path / "facekit") == [
        "facekit/data/inspect.py:2 imports facekit.gallery.store (data -> gallery)",
        "facekit/detection/faces.py:2 imports facekit.recognition (detection -> recognition)",
        "facekit/norms.py:2 imports facekit.runtime (top level -> runtime)",
        "facekit/recognition/train.py:2 imports facekit.runtime (recognition -> runtime)",
        "facekit/runtime/detector.py:2 imports facekit.gallery.store (runtime -> gallery)",
    ]
