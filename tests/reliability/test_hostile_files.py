"""Files made to attack the reader: a model.pt whose pickle would run a shell command is refused before anything
runs, with a one-line error that names the file and what it holds, and never suggests loading it unsafely."""

from __future__ import annotations

import os

import pytest
import torch

from .helpers import OBAMA, clean_error, copy


class RunsAShellCommand:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # what an attacker writes into a pickle
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def hostile_model(tmp_path):
    """A recognizer directory whose model.pt holds the payload (and a sibling marker path it would create)."""
    marker = tmp_path / "pwned"
    model = tmp_path / "evil_recognizer"
    model.mkdir()
    torch.save({"format": "facekit-model", "kind": "recognizer", "payload": RunsAShellCommand(str(marker))},
               model / "model.pt")  # fmt: skip
    return model, marker


def test_pickle_payload_in_a_model_is_refused(cli, shared_data, scrfd, hostile_model, tmp_path):
    model, marker = hostile_model
    photo = copy(shared_data / OBAMA, tmp_path / "people/obama/obama.jpg")
    runs = {
        "build-db": ("build-db", photo.parents[1], scrfd, model, tmp_path / "g.h5"),
        "train-recognize --pretrained": (
            "train-recognize", photo.parents[1], tmp_path / "out", "--pretrained", model / "model.pt",
        ),
    }  # fmt: skip
    for name, args in runs.items():
        line = clean_error(cli(*args), 1, str(model / "model.pt"), "refused", "posix.system")
        assert "weights_only" not in line and "trusted" not in line, (name, line)
        assert not marker.exists(), name
    assert not (tmp_path / "g.h5").exists()


def test_db_list_keeps_each_name_on_one_line(cli, shared_data, scrfd, random_recognizer, tmp_path):
    """An identity folder whose name holds a newline and a tab (legal on Linux) is enrolled under that name, and
    db list escapes it, so a script reading one entry per line is not fooled into seeing another person."""
    name = "mallory\nobama\t9"
    photo = copy(shared_data / OBAMA, tmp_path / "people" / name / "a.jpg")
    db = tmp_path / "g.h5"
    assert cli("build-db", tmp_path / "people", scrfd, random_recognizer, db).exit_code == 0
    escaped = str(photo).replace("\n", "\\n").replace("\t", "\\t")
    assert cli("db", "list", db, "--sources").output == f"mallory\\nobama\\t9\t1\n\t{escaped}\n"
