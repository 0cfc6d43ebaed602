"""Special files where a photo should be: a FIFO (reading it blocks forever), a character device (/dev/zero never
ends), a socket, broken symbolic links and link loops, and a file far larger than any photo. Each is refused before
it is read: a one-line error when it is the photo named on the command line, a skipped photo listed at the end when
it sits in a folder or a list, while every good photo is processed. A symbolic link to a photo is followed."""

from __future__ import annotations

import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from .helpers import BIDEN, OBAMA, OBAMA2, PEAK_CEILING_MB, clean_error, copy, measured, records, skipped

UNREADABLE = "warning: unreadable photos, skipped"


@pytest.fixture
def fifo():
    """mkfifo(path) for a test. Should facekit open one to read it (the regression these tests look for), a watchdog
    opens its other end after a few seconds and closes it: the reader sees an empty file and the test fails
    instead of hanging."""
    made = []
    stop = threading.Event()

    def unblock() -> None:
        while not stop.wait(3):
            for path in made:
                try:
                    os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:  # ENXIO: nobody is reading it
                    pass

    watchdog = threading.Thread(target=unblock, daemon=True)
    watchdog.start()

    def make(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        made.append(path)
        return path

    yield make
    stop.set()
    watchdog.join()


@pytest.mark.slow
def test_special_file_named_as_the_photo(shared_data, scrfd, random_recognizer, knn_gallery, tmp_path):
    """A FIFO or /dev/zero given as the photo: a one-line error naming it and what it is, at once (a FIFO opened to
    read would block until the timeout; /dev/zero read to its end would grow memory past the ceiling). /dev/zero
    linked from a folder is listed and the folder's photo processed. Real processes, run side by side."""
    pipe = tmp_path / "pipe.jpg"
    os.mkfifo(pipe)
    folder = tmp_path / "photos"
    copy(shared_data / OBAMA, folder / "obama.jpg")
    (folder / "zero.jpg").symlink_to("/dev/zero")
    detect = ("detect", "--model", scrfd)
    runs = {
        "detect fifo": (*detect, pipe),
        "detect /dev/zero": (*detect, "/dev/zero"),
        "recognize /dev/zero": ("recognize", "/dev/zero", knn_gallery, scrfd, random_recognizer),
        "detect folder": (*detect, folder, "--out", tmp_path / "out.jsonl"),
    }
    with ThreadPoolExecutor(len(runs)) as pool:
        done = dict(zip(runs, pool.map(lambda args: measured(*args, timeout=120), runs.values()), strict=True))
    for name, (code, output, peak) in done.items():
        assert peak < PEAK_CEILING_MB, (name, peak, output)
        assert "Traceback" not in output, (name, output)
        last = output.rstrip("\n").splitlines()[-1]
        if name == "detect folder":
            assert code == 0 and f"  - {folder / 'zero.jpg'}: not a regular file (a character device)" in output
        else:
            assert code == 1, (name, output)
            assert last in (f"Error: {pipe}: not a regular file (a FIFO)",
                            "Error: /dev/zero: not a regular file (a character device)"), (name, last)  # fmt: skip
    assert sorted(records((tmp_path / "out.jsonl").read_text())) == ["obama.jpg"]


def test_special_files_in_folders_are_listed(cli, shared_data, scrfd, random_recognizer, fifo, tmp_path, monkeypatch):
    """In identity folders: a FIFO, a socket, a broken symbolic link and a link loop, each with a photo's name,
    next to two real photos and a symbolic link to a third. build-db, recognize, detect and align list each special
    one with what it is and process the rest; the linked photo is read through its link."""
    people = tmp_path / "people"
    copy(shared_data / OBAMA, people / "obama/obama.jpg")
    copy(shared_data / BIDEN, people / "biden/biden2.jpg")
    (people / "obama/linked.jpg").symlink_to(shared_data / OBAMA2)
    bad = {
        fifo(people / "obama/pipe.jpg"): "not a regular file (a FIFO)",
        people / "biden/gone.jpg": "broken symbolic link (to nowhere.jpg)",
        people / "biden/loop.jpg": "cannot read (Too many levels of symbolic links)",
        people / "obama/sock.png": "not a regular file (a socket)",
    }
    (people / "biden/gone.jpg").symlink_to("nowhere.jpg")
    (people / "biden/loop.jpg").symlink_to("loop.jpg")
    server = socket.socket(socket.AF_UNIX)
    with monkeypatch.context() as here:
        here.chdir(people / "obama")  # a socket's path has to be short
        server.bind("sock.png")
    db = tmp_path / "g.h5"
    runs = {
        "build-db": (cli("build-db", people, scrfd, random_recognizer, db), UNREADABLE),
        "recognize": (cli("recognize", people, db, scrfd, random_recognizer), UNREADABLE),
        "detect": (cli("detect", people, "--model", scrfd), "warning: skipped 4 unreadable images:"),
        "align": (cli("align", people, tmp_path / "aligned", "--detect", scrfd), "warning: unreadable photos"),
    }
    server.close()
    for name, (result, title) in runs.items():
        for path, why in bad.items():
            assert skipped(result, title, path).endswith(f"{path}: {why}"), name
    assert cli("db", "list", db).output == "biden\t1\nobama\t2\n"
    assert sorted(records(runs["recognize"][0].stdout)) == ["biden2.jpg", "linked.jpg", "obama.jpg"]
    assert sorted(records(runs["detect"][0].stdout)) == ["biden2.jpg", "linked.jpg", "obama.jpg"]
    assert sorted(p.name for p in (tmp_path / "aligned").rglob("*.jpg")) == ["biden2.jpg", "linked.jpg", "obama.jpg"]


def test_fifo_in_a_list(cli, shared_data, scrfd, random_recognizer, knn_gallery, fifo, tmp_path):
    """A FIFO named in recognize's .txt, .csv and .lst lists and in build-db's CSV and .lst: listed, the listed
    photo next to it processed. A FIFO given as the list itself (or as build-db's DATA_PATH) is a one-line error."""
    photo = copy(shared_data / OBAMA, tmp_path / "obama.jpg")
    pipe = fifo(tmp_path / "pipe.jpg")
    lists = {
        "q.txt": "obama.jpg\npipe.jpg\n",
        "q.csv": "path,identity\nobama.jpg,obama\npipe.jpg,obama\n",
        "q.lst": "1\tobama.jpg\t0\n1\tpipe.jpg\t0\n",
    }
    for name, text in lists.items():
        (tmp_path / name).write_text(text)
        result = cli("recognize", tmp_path / name, knn_gallery, scrfd, random_recognizer)
        assert skipped(result, UNREADABLE, pipe).endswith(f"{pipe}: not a regular file (a FIFO)"), name
        assert sorted(records(result.stdout)) == ["obama.jpg"], name
    for name in ("q.csv", "q.lst"):
        built = cli("build-db", tmp_path / name, scrfd, random_recognizer, tmp_path / f"{name}.h5")
        assert skipped(built, UNREADABLE, pipe).endswith(f"{pipe}: not a regular file (a FIFO)"), name
        assert "added 1 faces of 1 people from 2 photos; skipped 1" in built.output, name
    as_list = fifo(tmp_path / "list.csv")
    clean_error(cli("recognize", as_list, knn_gallery, scrfd, random_recognizer), 1,
                f"{as_list}: not a regular file (a FIFO)")  # fmt: skip
    clean_error(cli("build-db", as_list, scrfd, random_recognizer, tmp_path / "x.h5"), 1,
                f"{as_list}: not a regular file (a FIFO); expected a folder or a list file")  # fmt: skip
    assert photo.is_file() and not (tmp_path / "x.h5").exists()


def test_file_too_large_to_be_a_photo_is_not_read(cli, shared_data, scrfd, tmp_path):
    """A file larger than any photo within --max-pixels can be (16 bytes a pixel, plus 16 MB of metadata) is
    refused by its size, unread: here a 100 MB sparse file with a photo's name, at --max-pixels 2000000."""
    folder = tmp_path / "photos"
    copy(shared_data / OBAMA, folder / "obama.jpg")
    huge = folder / "huge.jpg"
    with open(huge, "wb") as f:
        f.truncate(100 << 20)
    result = cli("detect", folder, "--model", scrfd, "--max-pixels", 2_000_000)
    line = skipped(result, "warning: skipped 1 unreadable images:", huge)
    assert line.endswith(f"{huge}: {100 << 20} bytes, more than any photo within the --max-pixels limit takes "
                         f"({16 * 2_000_000 + (1 << 24)}); not read")  # fmt: skip
    assert sorted(records(result.stdout)) == ["obama.jpg"]


def test_split_people_leaves_special_files_out(cli, shared_data, fifo, tmp_path):
    """split-people links (or copies) photos: a FIFO, a broken link and a link loop among them are left out and
    listed (copying a FIFO would block, resolving a loop raised a traceback), the photos are placed."""
    people = tmp_path / "people"
    copy(shared_data / OBAMA, people / "obama/1.jpg")
    copy(shared_data / BIDEN, people / "biden/1.jpg")
    bad = {
        fifo(people / "obama/2.jpg"): "not a regular file (a FIFO)",
        people / "obama/3.jpg": "broken symbolic link (to nowhere.jpg)",
        people / "biden/2.jpg": "cannot read (Too many levels of symbolic links)",
    }
    (people / "obama/3.jpg").symlink_to("nowhere.jpg")
    (people / "biden/2.jpg").symlink_to("2.jpg")
    for mode in ([], ["--copy"]):
        out = tmp_path / f"split{len(mode)}"
        result = cli("split-people", people, out, "--calibration", 0, "--gallery", 2, "--unknown", 0, *mode)
        for path, why in bad.items():
            assert skipped(result, "warning: skipped 3 files that are not photos:", path).endswith(f"{path}: {why}")
        placed = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg"))
        assert placed == ["gallery/biden/1.jpg", "gallery/obama/1.jpg"], mode
