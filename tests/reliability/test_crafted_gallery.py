"""Crafted and damaged galleries (a few KB made with h5py from the session gallery), a poisoned faiss cache,
temporaries of killed writes. Every command that reads a gallery refuses a bad one with one line naming it, without
reading more than the file holds; a cache that does not hold the gallery's rows is rebuilt, never trusted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from .helpers import KNN, PROJECT, clean_error, copy, environment, measured, records

NAMED = ["alex_lacamoire", "biden", "kit_harington", "obama", "rose_leslie"]  # the gallery's identities, in order
PER_FACE = ("identity_index", "embeddings", "sources", "boxes", "landmarks", "det_scores")
Change = Callable[[h5py.File], None]  # what a test does to an open copy of the session gallery


def redeclare(f: h5py.File, name: str, shape: tuple[int, ...], **kw) -> None:
    """Replace dataset `name` by one of `shape` whose values were never written (no chunk is stored)."""
    dtype = f[name].dtype
    del f[name]
    f.create_dataset(name, shape=shape, dtype=dtype, **kw)


def rows(n: int) -> Change:
    """Every per-face dataset declares n rows (in chunks of 4096, none written)."""

    def change(f: h5py.File) -> None:
        for name in PER_FACE:
            tail = f[name].shape[1:]
            redeclare(f, name, (n, *tail), chunks=(4096, *tail))

    return change


def wide(f: h5py.File) -> None:
    redeclare(f, "embeddings", (4, 2**31), chunks=(1, 1 << 20))


def setter(name: str, value: object) -> Change:
    def change(f: h5py.File) -> None:
        f.attrs[name] = value

    return change


def replacer(name: str, values: object) -> Change:
    """Dataset `name` holds `values` (or values(f)) instead; lists of str as UTF-8 strings."""

    def change(f: h5py.File) -> None:
        data = values(f) if callable(values) else values
        del f[name]
        text = isinstance(data, list) and isinstance(data[0], str)
        f.create_dataset(name, data=data, dtype=h5py.string_dtype("utf-8") if text else None)

    return change


def group(f: h5py.File) -> None:
    del f["embeddings"]
    f.create_group("embeddings").create_dataset("data", data=np.zeros((9, 32), np.float32))


def external(f: h5py.File) -> None:
    """embeddings: a link to the same rows in another file (a valid gallery's, even)."""
    other = f.filename.replace("g.h5", "other.h5")
    with h5py.File(other, "w") as o:
        o["embeddings"] = f["embeddings"][()]
    del f["embeddings"]
    f["embeddings"] = h5py.ExternalLink(other, "/embeddings")


def scaled(name: str, factor: float, row: int = 0) -> Change:
    def change(f: h5py.File) -> None:
        values = f[name][()]
        values[row] *= factor
        f[name][...] = values

    return change


def lzf(f: h5py.File) -> None:
    values = f["boxes"][()]
    del f["boxes"]
    f.create_dataset("boxes", data=values, compression="lzf")


CASES = {  # change -> what the one-line error says after "Error: g.h5: "
    "3e7 rows": (rows(30_000_000), "dataset embeddings has shape [30000000, 32], expected [N, 32]"),
    "1e9 rows": (rows(10**9), "dataset embeddings has shape [1000000000, 32], expected [N, 32]"),
    "(4, 2^31) embeddings": (wide, "dataset embeddings has shape [4, 2147483648], expected [N, 32]"),
    "embeddings a group": (group, "embeddings is a group, expected a dataset"),
    "integer identities": (replacer("identities", np.arange(5)),
                           "dataset identities holds integers, expected strings"),
    "content_id ../../x": (setter("content_id", "../../x"),
                           "attribute content_id is '../../x', expected 32 hex digits"),
    "external link": (external, "dataset embeddings is a link to /embeddings in another file ("),
    "schema_version '1'": (setter("schema_version", "1"),
                           "attribute schema_version is a string, expected an integer"),
    "crop_size 0": (setter("crop_size", 0), "attribute crop_size is 0, expected 16 to 1024"),
    "crop_size 100000": (setter("crop_size", 100_000), "attribute crop_size is 100000, expected 16 to 1024"),
    "flip 'yes'": (setter("flip", "yes"), "attribute flip is a string, expected a bool"),
    "3-point template": (setter("alignment_template", np.ones(3, np.float32)),
                         "attribute alignment_template is floats [3], expected floats [5, 2]"),
    "template of one point": (setter("alignment_template", np.ones((5, 2), np.float32)),
                              "attribute alignment_template is [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0], "
                              "[1.0, 1.0]], expected 5 (x, y) points inside the 112x112 crop, the eyes apart"),
    "template outside the crop": (setter("alignment_template", np.full((5, 2), 1e6, np.float32)),
                                  "attribute alignment_template is [[1000000.0, 1000000.0], "),
    "NaN template": (scaled("templates", np.nan, 2), "dataset templates row 2 holds NaN or infinite values"),
    "6 templates": (replacer("templates", np.eye(6, 32, dtype=np.float32)),
                    "dataset templates has shape [6, 32], expected [5, 32]"),
    "NaN embedding": (scaled("embeddings", np.nan, 3), "dataset embeddings row 3 holds NaN or infinite values"),
    "embedding x 1000": (scaled("embeddings", 1000), "dataset embeddings row 0 has L2 norm 1000, expected 1"),
    "infinite box": (scaled("boxes", np.inf, 1), "dataset boxes row 1 holds NaN or infinite values"),
    "identity 7 of 5": (replacer("identity_index", np.full(9, 7, np.int32)),
                        "dataset identity_index row 0 is 7, outside the 5 identities"),
    "a name twice": (replacer("identities", [NAMED[0], *NAMED[:4]]),
                     "identities rows 0 and 1 are both 'alex_lacamoire'"),
    "lzf filter": (lzf, "dataset boxes is stored through HDF5 filter 32000; facekit writes only gzip, shuffle"),
}  # fmt: skip


def crafted(knn_gallery: Path, tmp_path: Path, change: Change) -> Path:
    db = copy(knn_gallery, tmp_path / "g.h5")
    with h5py.File(db, "a") as f:
        change(f)
    return db


@pytest.mark.parametrize("case", CASES)
def test_crafted_gallery(cli, knn_gallery, tmp_path, case):
    """Each crafted field (an attribute of the wrong type or range, a dataset of the wrong kind, shape or count, one
    declaring rows it does not store, one in another file, a non-finite or unnormalised row): db info, db list and
    inspect refuse it with one line naming the file, exit 1."""
    change, message = CASES[case]
    db = crafted(knn_gallery, tmp_path, change)
    assert db.stat().st_size < 64_000
    for args in (["db", "info", db], ["db", "list", db], ["inspect", db]):
        clean_error(cli(*args), 1, f"Error: {db}: {message}")


def test_templates_of_other_people(cli, knn_gallery, tmp_path):
    """Stored templates that are not the identities' means (recognize computes its own; other readers would use
    these): inspect reports the first such row, exit 1."""
    db = crafted(knn_gallery, tmp_path, replacer("templates", lambda f: f["templates"][()][::-1]))
    result = cli("inspect", db)
    assert result.exit_code == 1 and "problems: 1" in result.output, result.output
    assert f"  - {db}: dataset templates row 0 ('alex_lacamoire') is not the mean of that identity's embeddings" in (
        result.output)  # fmt: skip


def test_crafted_gallery_in_recognize_and_append(cli, shared_data, scrfd, random_recognizer, knn_gallery, tmp_path):
    """recognize and build-db --append refuse them too, before any search (a NaN gallery row once answered, and
    unnormalised rows gave similarities of 1000); the gallery is left as it was."""
    for case in ("NaN embedding", "embedding x 1000", "flip 'yes'", "1e9 rows"):
        change, message = CASES[case]
        db = crafted(knn_gallery, tmp_path, change)
        before = db.read_bytes()
        clean_error(cli("recognize", shared_data / KNN / "test", db, scrfd, random_recognizer), 1, f"{db}: {message}")
        result = cli("build-db", shared_data / KNN / "train", scrfd, random_recognizer, db, "--append")
        clean_error(result, 1, f"{db}: {message}")
        assert db.read_bytes() == before


def test_declared_sizes_cost_no_memory(knn_gallery, tmp_path):
    """A 30 KB gallery declaring 3 x 10^7 or 10^9 faces, or (4, 2^31) embeddings (once 6.2 GB of memory for db info,
    or a numpy _ArrayMemoryError traceback): refused before any row is read, within 64 MB of what db info of the
    intact gallery takes."""
    baseline = measured("db", "info", knn_gallery)
    assert baseline[0] == 0, baseline[1]
    for case in ("3e7 rows", "1e9 rows", "(4, 2^31) embeddings"):
        change, message = CASES[case]
        db = crafted(knn_gallery, tmp_path / case.replace(" ", "_"), change)
        code, err, peak = measured("db", "info", db)
        assert code == 1 and err.startswith(f"Error: {db}: {message}") and len(err.splitlines()) == 1, err
        assert peak < baseline[2] + 64, (case, peak, baseline[2])


@pytest.mark.slow  # ~30 s: a CLI call per 7 bytes; quick: test_crafted_gallery's damaged-gallery cases
def test_new_galleries_carry_checksums_old_ones_still_load(cli, shared_data, scrfd, random_recognizer, knn_gallery,
                                                          tmp_path):  # fmt: skip
    """build-db writes every byte under a checksum (fletcher32 on every dataset, names and paths as fixed-length
    UTF-8, metadata in HDF5 1.10's checksummed format): one flipped bit anywhere in the file (every 7th byte tried)
    gives 'damaged gallery file' or, where the byte is unused, the same listing; never other answers. A gallery
    written before (no checksums, variable-length strings) loads and answers as the new one does."""
    good = knn_gallery.read_bytes()
    listing = cli("db", "list", knn_gallery, "--sources").output
    db = tmp_path / "g.h5"
    outcomes = set()
    for offset in range(0, len(good), 7):
        db.write_bytes(good[:offset] + bytes([good[offset] ^ 0x10]) + good[offset + 1 :])
        result = cli("db", "list", db, "--sources")
        if result.exit_code:
            outcomes.add(clean_error(result, 1, f"Error: {db}: ").split(" (")[0])
        else:
            assert result.output == listing, offset
    assert outcomes == {f"Error: {db}: damaged gallery file", f"Error: {db}: not an HDF5 file"}, outcomes
    with h5py.File(knn_gallery) as f:
        offset = f["embeddings"].id.get_chunk_info(0).byte_offset + 40
    db.write_bytes(good[:offset] + bytes([good[offset] ^ 0x04]) + good[offset + 1 :])
    clean_error(cli("recognize", shared_data / KNN / "test", db, scrfd, random_recognizer), 1,
                f"Error: {db}: damaged gallery file (")  # fmt: skip

    old = tmp_path / "old.h5"
    with h5py.File(knn_gallery) as f, h5py.File(old, "w") as o:  # as facekit wrote galleries before
        text = h5py.string_dtype("utf-8")
        for name, dataset in f.items():
            values = dataset.asstr()[()].astype(object) if name in ("sources", "identities") else dataset[()]
            kw = {} if name == "identities" else {"chunks": True, "compression": "gzip", "shuffle": True}
            o.create_dataset(name, data=values, dtype=text if values.dtype == object else values.dtype, **kw)
        o.attrs.update({k: v.decode() if isinstance(v, bytes) else v for k, v in f.attrs.items() if k != "committed"})
        o.attrs["schema_version"] = 1  # fixed-size datasets, no commit marker
    assert cli("db", "list", old, "--sources").output == listing
    answers = [cli("recognize", shared_data / KNN / "test", g, scrfd, random_recognizer) for g in (old, knn_gallery)]
    assert answers[0].exit_code == 0 and answers[0].stdout == answers[1].stdout


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_poisoned_faiss_cache_is_rebuilt(cli, shared_data, scrfd, random_recognizer, knn_gallery, tmp_path, kind):
    """A cached faiss index beside the gallery holding other vectors (random ones, under the gallery's content id):
    inspect reports it (exit 1); recognize --index KIND checks it against the gallery's rows, rebuilds it and answers
    as exact search does; then inspect is content."""
    from facekit.gallery.indexes import FaissIndex, cache_path
    from facekit.gallery.store import Gallery

    db = copy(knn_gallery, tmp_path / "g.h5")
    gallery = Gallery.load(db)
    test = shared_data / KNN / "test"
    exact = records(cli("recognize", test, db, scrfd, random_recognizer).stdout)
    assert cli("recognize", test, db, scrfd, random_recognizer, "--index", kind).exit_code == 0
    cache = cache_path(db, kind, gallery.content_id)
    assert FaissIndex.load(cache).mismatch(gallery.embeddings) is None
    poison = np.random.default_rng(0).standard_normal(gallery.embeddings.shape).astype(np.float32)
    FaissIndex.build(poison / np.linalg.norm(poison, axis=1, keepdims=True), kind).save(cache)

    report = cli("inspect", db)
    assert report.exit_code == 1 and "problems: 1" in report.output, report.output
    assert f"{cache}: cached index row 0 differs from the gallery's; recognize --index {kind} rebuilds it" in (
        report.output)  # fmt: skip
    answered = records(cli("recognize", test, db, scrfd, random_recognizer, "--index", kind).stdout)
    assert answered.keys() == exact.keys()
    for name, record in answered.items():
        for face, expected in zip(record["faces"], exact[name]["faces"], strict=True):
            assert face["identity"] == expected["identity"]
            assert face["similarity"] == pytest.approx(expected["similarity"], abs=1e-5)
    assert FaissIndex.load(cache).mismatch(gallery.embeddings) is None
    assert cli("inspect", db).exit_code == 0


WRITER = """
import sys, time, h5py
from facekit.gallery.store import Gallery
create = h5py.Group.create_dataset
def stuck(self, name, **kw):  # the first dataset is written, then the writer waits to be killed
    create(self, name, **kw)
    print("writing", flush=True)
    time.sleep(600)
h5py.Group.create_dataset = stuck
Gallery.load(sys.argv[1]).save(sys.argv[1])
"""


def test_temporaries_of_killed_writes(cli, knn_gallery, tmp_path):
    """A writer killed (SIGKILL) in the middle of a gallery write leaves its hidden .g.h5.*.tmp. While it still
    runs, its temporary is not stale: db info does not list it and another write leaves it. Once it is killed, db
    info lists it, inspect mentions it, and the next write to that gallery removes it, and nothing else."""
    db = copy(knn_gallery, tmp_path / "g.h5")
    neighbours = [tmp_path / n for n in (".other.h5.abcd1234.tmp", ".g.h5.flat.0123.faiss.abcd1234.tmp", "g.h5.lock")]
    for path in neighbours:
        path.write_bytes(b"")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], env=environment(), cwd=PROJECT,
                              stdout=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        assert writer.stdout.readline() == "writing\n"
        (temporary,) = set(tmp_path.glob(".g.h5.*.tmp")) - set(neighbours)
        assert "stale_temporaries        none" in cli("db", "info", db).output
        assert cli("db", "remove", db, "alex_lacamoire").exit_code == 0
        assert temporary.exists()
    finally:
        os.killpg(writer.pid, signal.SIGKILL)
        writer.communicate()
    info = cli("db", "info", db)
    assert f"stale_temporaries        {temporary.name}\n" in info.stdout, info.output
    assert "note: stale temporaries of killed writes beside g.h5: 1; the next write removes them" in info.output
    inspected = cli("inspect", db)
    assert inspected.exit_code == 0 and "notes:" in inspected.output, inspected.output
    assert f"  - {temporary}: temporary file of a killed write; the next write to g.h5 removes it" in inspected.output
    assert cli("db", "remove", db, "biden").exit_code == 0
    assert not temporary.exists() and all(path.exists() for path in neighbours)
    assert "stale_temporaries        none" in cli("db", "info", db).output
    assert cli("db", "list", db).output.split()[::2] == NAMED[2:]
