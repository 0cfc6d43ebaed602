"""Processes writing one gallery take turns: each holds GALLERY.lock (fcntl.flock) while it reads and rewrites the
file, so two build-db --append runs at once both keep their faces, and one that cannot get the lock in --wait
seconds fails with one line, the gallery unchanged."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .helpers import BIDEN, OBAMA, OBAMA2, clean_error, copy, environment, temp_files, wait_for


@contextmanager
def held(lock: Path) -> Iterator[None]:
    """Hold `lock` as a facekit process writing the gallery does: flock, and its pid in the file."""
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def test_a_gallery_another_process_writes_is_left_alone(cli, shared_data, scrfd, random_recognizer, knn_gallery,
                                                        tmp_path):  # fmt: skip
    """While another process holds g.h5.lock: build-db --append --wait 0 fails at once, --wait 1 after saying it
    waits, db remove --wait 0 at once, each with one line naming the gallery and the holder's pid, exit 1; the
    gallery is byte for byte the same, no temporary file. Once the lock is free, the same build-db adds its face."""
    db = copy(knn_gallery, tmp_path / "g.h5")
    before = db.read_bytes()
    people = tmp_path / "people"
    copy(shared_data / OBAMA, people / "barack/1.jpg")
    busy = f"{db}: gallery is being written by another process (pid {os.getpid()})"
    append = ["build-db", people, scrfd, random_recognizer, db, "--append", "--wait"]
    with held(tmp_path / "g.h5.lock"):
        clean_error(cli(*append, 0), 1, f"{busy}; try again or pass --wait SECONDS")
        waited = cli(*append, 1)
        clean_error(waited, 1, f"{busy}; try again or pass --wait SECONDS")
        assert f"note: {busy}; waiting up to 1 s" in waited.output
        clean_error(cli("db", "remove", db, "obama", "--wait", 0), 1, busy)
    assert db.read_bytes() == before and temp_files(tmp_path) == []
    result = cli(*append, 0)
    assert result.exit_code == 0, result.output
    assert cli("db", "list", db).output.splitlines()[-1] == "barack\t1"


def test_two_appends_at_once_keep_both_runs_faces(shared_data, scrfd, random_recognizer, knn_gallery, tmp_path):
    """Two build-db --append runs on one gallery at once (real processes, other people each): held at the lock
    until both wait there, then let go together, both end 0 and the gallery holds its 9 faces and both runs'."""
    db = copy(knn_gallery, tmp_path / "g.h5")
    runs = {"barack": [OBAMA, OBAMA2], "joe": [BIDEN]}
    processes = {}
    with held(tmp_path / "g.h5.lock"):
        for name, photos in runs.items():
            for i, photo in enumerate(photos):
                copy(shared_data / photo, tmp_path / name / name / f"{i}.jpg")
            args = ["build-db", tmp_path / name, scrfd, random_recognizer, db, "--append", "--wait", 120]
            command = [sys.executable, "-m", "facekit", *map(str, args)]
            with (tmp_path / f"{name}.err").open("w") as stderr:
                processes[name] = subprocess.Popen(command, env=environment(), stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            for name, process in processes.items():
                wait_for(lambda name=name: "waiting up to" in (tmp_path / f"{name}.err").read_text(), process)
        except BaseException:
            for process in processes.values():
                process.kill()
            raise
    for name, process in processes.items():
        assert process.wait(timeout=240) == 0, (tmp_path / f"{name}.err").read_text()
    from facekit.gallery.store import Gallery

    counts = Gallery.load(db).counts()
    assert counts == {**Gallery.load(knn_gallery).counts(), "barack": 2, "joe": 1}
