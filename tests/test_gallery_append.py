"""Growing a gallery: Enrolment costs O(new faces); saving a loaded gallery with new rows appends them in place,
committed last, so a SIGKILL at any moment leaves the old or the new gallery; schema 1 files still load."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from facekit.errors import DataFormatError
from facekit.gallery.store import Enrolment, Gallery, ModelStamp

REC = ModelStamp("rec", "a" * 64)
DET = ModelStamp("det", "b" * 64)
PROJECT = Path(__file__).resolve().parents[1]


def batch(n: int, start: int, dim: int = 8, per_person: int = 3, seed: int = 0) -> tuple:
    """n faces numbered from `start` (per_person faces each): the arguments of Gallery.add."""
    rng = np.random.default_rng([seed, start])
    names = [f"p{(start + i) // per_person}" for i in range(n)]
    return (rng.normal(size=(n, dim)), names, [f"photos/{start + i}.jpg" for i in range(n)], rng.random((n, 4)),
            rng.random((n, 5, 2)), rng.random(n))  # fmt: skip


def empty(dim: int = 8) -> Gallery:
    return Gallery.empty(dim, REC, DET, crop_size=112, flip=False)


def same(a: Gallery, b: Gallery) -> bool:
    return (
        np.array_equal(a.embeddings, b.embeddings)
        and np.array_equal(a.identity_index, b.identity_index)
        and a.identities == b.identities
        and a.sources == b.sources
        and np.array_equal(a.boxes, b.boxes)
        and np.array_equal(a.landmarks, b.landmarks)
        and np.array_equal(a.det_scores, b.det_scores)
    )


def test_enrolment_in_batches_equals_one_add_and_leaves_the_base():
    base = empty().add(*batch(10, 0))
    before = base.embeddings.copy()
    enrolment = Enrolment(base)
    for start in range(10, 40, 7):
        enrolment.add(*batch(min(7, 40 - start), start))
    assert len(enrolment) == 40
    grown = enrolment.gallery()
    parts = zip(batch(10, 0), *(batch(min(7, 40 - s), s) for s in range(10, 40, 7)), strict=True)
    whole = empty().add(*[np.concatenate(c) if isinstance(c[0], np.ndarray) else sum(c, []) for c in parts])
    assert same(grown, whole) and grown.identities == [f"p{i}" for i in range(14)]
    assert grown.content_id != base.content_id and len(base) == 10 and np.array_equal(base.embeddings, before)
    with pytest.raises(DataFormatError, match="refusing to add embedding 1 of 2"):
        enrolment.add(np.array([[1.0] * 8, [np.nan] * 8]), ["a", "b"], ["x", "y"], np.zeros((2, 4)),
                      np.zeros((2, 5, 2)), np.ones(2))  # fmt: skip


def test_save_after_load_appends_in_place(tmp_path):
    """Same inode (no rewrite), new content_id, the rows of old and new people; the stored templates are every
    identity's mean, p3's (an old identity given one more face) included."""
    path = empty().add(*batch(10, 0)).save(tmp_path / "g.h5")
    inode, size = path.stat().st_ino, path.stat().st_size
    old = Gallery.load(path)
    grown = old.add(*batch(5, 10))
    grown.save(path)
    assert path.stat().st_ino == inode and path.stat().st_size > size
    back = Gallery.load(path)
    assert same(back, grown) and len(back) == 15 and back.identities[-1] == "p4"
    assert back.content_id == grown.content_id != old.content_id
    with h5py.File(path, "r") as f:
        assert list(f.attrs["committed"]) == [15, 5] and f.attrs["schema_version"] == 2
        np.testing.assert_allclose(f["templates"][()], back.templates(), atol=1e-6)
    back.add(*batch(3, 15)).save(path)  # again, from the gallery load() returned
    assert path.stat().st_ino == inode and len(Gallery.load(path)) == 18


def test_rewrites_when_the_file_changed_or_a_name_does_not_fit(tmp_path):
    path = empty().add(*batch(10, 0)).save(tmp_path / "g.h5")
    mine, theirs = Gallery.load(path), Gallery.load(path)
    theirs.add(*batch(2, 10)).save(path)
    inode = path.stat().st_ino
    mine.add(*batch(3, 20)).save(path)  # the file is not the one `mine` was read from: whole new file
    assert path.stat().st_ino != inode and [s[7:] for s in Gallery.load(path).sources[10:]] == ["20.jpg", "21.jpg",
                                                                                                 "22.jpg"]  # fmt: skip
    inode = path.stat().st_ino
    args = list(batch(1, 30))
    args[2] = ["x" * 300 + ".jpg"]  # longer than the 256 bytes the sources column holds
    Gallery.load(path).add(*args).save(path)
    assert path.stat().st_ino != inode and Gallery.load(path).sources[-1] == args[2][0]


def test_rows_past_the_committed_ones_are_ignored_and_overwritten(tmp_path):
    """What an append killed before its commit leaves: longer datasets, junk past the committed rows."""
    path = empty().add(*batch(10, 0)).save(tmp_path / "g.h5")
    old = Gallery.load(path)
    with h5py.File(path, "r+") as f:
        for name in ("embeddings", "identity_index", "sources", "boxes", "landmarks", "det_scores"):
            f[name].resize(5000, axis=0)
        f["embeddings"][10:] = np.nan
        f["identity_index"][10:] = 99
    assert same(Gallery.load(path), old)
    grown = old.add(*batch(4, 10))
    grown.save(path)
    assert same(Gallery.load(path), grown)
    with h5py.File(path, "r") as f:
        assert f["embeddings"].shape == (14, 8)


def test_schema_1_files_still_load_and_are_rewritten_as_schema_2(tmp_path):
    """A gallery as facekit wrote it before (fixed-size datasets, no `committed`): loads; adding rewrites it."""
    g = empty().add(*batch(6, 0))
    path = g.save(tmp_path / "new.h5")
    old = tmp_path / "old.h5"
    with h5py.File(path, "r") as src, h5py.File(old, "w", libver=("v110", "v110")) as dst:
        for name, dataset in src.items():
            dst.create_dataset(name, data=dataset[()], chunks=True, compression="gzip", fletcher32=True)
        dst.attrs.update({k: v for k, v in src.attrs.items() if k != "committed"})
        dst.attrs["schema_version"] = 1
    loaded = Gallery.load(old)
    assert same(loaded, g)
    loaded.add(*batch(2, 6)).save(old)
    with h5py.File(old, "r") as f:
        assert f.attrs["schema_version"] == 2 and f["embeddings"].maxshape == (None, 8)
    assert len(Gallery.load(old)) == 8


def test_committed_counts_are_checked(tmp_path):
    path = empty().add(*batch(6, 0)).save(tmp_path / "g.h5")
    for value, message in (([7, 2], r"dataset embeddings has shape \[6, 8\], expected \[N, 8\]"),
                           ([3, 4], r"attribute committed is \[3, 4\], expected 1 <= identities <= faces"),
                           ([1.5, 1], r"attribute committed is floats \[2\], expected integers \[2\]")):  # fmt: skip
        with h5py.File(path, "r+") as f:
            f.attrs["committed"] = np.array(value)
        with pytest.raises(DataFormatError, match=f"g.h5: {message}"):
            Gallery.load(path)


APPENDER = """
import sys
sys.path.insert(0, sys.argv[3])
from test_gallery_append import batch
from facekit.gallery.store import Gallery
g = Gallery.load(sys.argv[1]).add(*batch(int(sys.argv[2]), 0, dim=128, seed=1))
print("ready", flush=True)
g.save(sys.argv[1])
print("done", flush=True)
"""


@pytest.mark.slow  # ~100 s on 2 busy cores, 6 children; quicker sibling: test_rows_past_the_committed_ones_are_...
def test_sigkill_during_an_in_place_append_leaves_the_old_or_the_new_gallery(tmp_path):
    """A child appends 20,000 faces to a 60,000-face gallery in place and is killed (SIGKILL) at a random moment
    of its save, 6 times; after each kill the file loads as exactly the gallery before or the one after that
    append (the next round appends to whichever it is), and a last append runs to its end."""
    path = empty(128).add(*batch(60_000, 0, dim=128)).save(tmp_path / "g.h5")
    m = 20_000
    timed = Gallery.load(path).add(*batch(m, 0, dim=128, seed=1))
    copy = tmp_path / "copy.h5"
    copy.write_bytes(path.read_bytes())
    timed.stored = (str(copy.resolve()), *timed.stored[1:])
    t0 = time.perf_counter()
    timed.save(copy)
    duration = time.perf_counter() - t0
    rng, outcomes = random.Random(0), []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROJECT)}
    for _ in range(6):
        Gallery.load(path).save(path)  # a whole rewrite (no new rows): clears the mark a killed append leaves
        before, inode = Gallery.load(path), path.stat().st_ino
        child = subprocess.Popen([sys.executable, "-c", APPENDER, str(path), str(m), str(Path(__file__).parent)],
                                 stdout=subprocess.PIPE, env=env, start_new_session=True, text=True)  # fmt: skip
        try:
            assert child.stdout.readline() == "ready\n"
            time.sleep(rng.uniform(0, 1.2 * duration))
        finally:
            os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
        assert path.stat().st_ino == inode  # the append ran in place (a rewrite would rename a new file over)
        after = Gallery.load(path)
        expected = before.add(*batch(m, 0, dim=128, seed=1))
        outcomes.append("new" if same(after, expected) else "old" if same(after, before) else "neither")
        assert outcomes[-1] != "neither", outcomes
    assert "old" in outcomes, outcomes  # the kills did land inside appends
    last = Gallery.load(path).add(*batch(m, 0, dim=128, seed=1))
    last.save(path)
    assert same(Gallery.load(path), last)


PAUSED_APPENDER = """
import sys, uuid
sys.path.insert(0, sys.argv[3])
from test_gallery_append import batch
import facekit.gallery.store as store
from facekit.fileio import write_lock

def pause():
    print("paused", flush=True)
    sys.stdin.readline()

with write_lock(sys.argv[1], wait=0, what="gallery"):  # as build-db --append holds it
    grown = store.Gallery.load(sys.argv[1]).add(*batch(5, 10))
    if sys.argv[2] == "rows":  # the new content_id is drawn after the rows are written, before the commit
        store.uuid = type(sys)("paused_uuid")
        store.uuid.uuid4 = lambda: (pause(), uuid.uuid4())[1]
    else:  # "open": the file is open for writing, nothing written yet
        committed_rows = store.committed_rows
        store.committed_rows = lambda f: (pause(), committed_rows(f))[1]
    grown.save(sys.argv[1])
print("done", flush=True)
"""


@pytest.mark.parametrize(
    ("moment", "then"), [("rows", "finish"), ("rows", "kill"), ("open", "finish"), ("open", "kill")]
)
def test_a_reader_during_an_in_place_append_sees_the_old_gallery(tmp_path, moment, then):
    """A child appends 5 faces in place, holding the gallery's write lock, and is held still either with the rows
    written but not committed or just after opening the file for writing. Gallery.load (recognize's read) meanwhile
    gives exactly the old gallery without waiting for the lock; once the child finishes a fresh load gives the new
    one, and if it is killed instead, the old one (a writer once opened the file without SWMR and switched after:
    a reader in between got 'not an HDF5 file', and a kill in between left the file so for good)."""
    import fcntl

    path = empty().add(*batch(10, 0)).save(tmp_path / "g.h5")
    old = Gallery.load(path)
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    child = subprocess.Popen([sys.executable, "-c", PAUSED_APPENDER, str(path), moment, str(Path(__file__).parent)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)  # fmt: skip
    try:
        assert child.stdout.readline() == "paused\n"
        with open(path.with_name("g.h5.lock"), "rb") as lock, pytest.raises(BlockingIOError):
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)  # the writer holds the lock all along
        with h5py.File(path, "r", swmr=True) as f:  # the rows are there (or not yet), the commit is not
            assert f["embeddings"].shape[0] == (15 if moment == "rows" else 10)
            assert list(f.attrs["committed"]) == [10, 4]
        during = Gallery.load(path)
        assert same(during, old) and during.content_id == old.content_id and len(during.identities) == 4
        if then == "finish":
            child.stdin.write("\n")
            child.stdin.flush()
            assert child.stdout.readline() == "done\n"
    finally:
        child.kill()
        child.communicate()
    after = Gallery.load(path)
    if then == "finish":
        assert same(after, old.add(*batch(5, 10))) and after.identities == [f"p{i}" for i in range(5)]
    else:
        assert same(after, old)
