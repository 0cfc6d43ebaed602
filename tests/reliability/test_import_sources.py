"""`import-model`'s SOURCE registry: every entry names an importer that takes FILE, OUT_DIR and its option and is
described in `--help`; an option of another source, or a folder where a file is expected, is a usage error (exit 2)
naming what was wrong, and nothing is written."""

from __future__ import annotations

import importlib
import inspect

import pytest

from facekit.cli.detect import IMPORTERS

from .helpers import clean_error


@pytest.mark.parametrize("source", list(IMPORTERS))
def test_every_source_is_callable_and_described(cli, source):
    importer = IMPORTERS[source]
    module, function = importer.target.split(":")
    parameters = list(inspect.signature(getattr(importlib.import_module(module), function)).parameters)
    assert len(parameters) >= 2 and (importer.option is None or importer.option in parameters[2:]), parameters
    result = cli("import-model", "--help")
    assert result.exit_code == 0 and f"SOURCE {source}: " in " ".join(result.output.split()), result.output


def test_body_is_for_pytorch_retinaface_only(cli, tmp_path):
    checkpoint = tmp_path / "pnet.pt"
    checkpoint.write_bytes(b"not read")
    result = cli("import-model", "mtcnn", checkpoint, tmp_path / "out", "--body", "resnet50")
    clean_error(result, 2, "--body", "is for pytorch-retinaface checkpoints, not mtcnn")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("source", [name for name, importer in IMPORTERS.items() if not importer.folder])
def test_folder_for_a_source_that_takes_a_file(cli, tmp_path, source):
    folder = tmp_path / "weights"
    folder.mkdir()
    result = cli("import-model", source, folder, tmp_path / "out")
    clean_error(result, 2, f"{folder} is a folder; SOURCE {source} takes a file")
    assert not (tmp_path / "out").exists()
