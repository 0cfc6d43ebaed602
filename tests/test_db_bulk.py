"""db merge | import | export: shards merged equal one build-db, exports import back, mismatched models and bad
rows refused with one line."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from facekit.gallery.store import Gallery, ModelStamp

REC = ModelStamp("rec", "a" * 64)
DET = ModelStamp("det", "b" * 64)


def make(path: Path, names: list[str], seed: int = 0, recognizer: ModelStamp = REC) -> Path:
    rng = np.random.default_rng(seed)
    n = len(names)
    g = Gallery.empty(8, recognizer, DET, crop_size=112, flip=False).add(
        rng.normal(size=(n, 8)), names, [f"photos/{name}/{seed}_{i}.jpg" for i, name in enumerate(names)],
        rng.random((n, 4)), rng.random((n, 5, 2)), rng.random(n))  # fmt: skip
    return g.save(path)


def one_error(result, code: int, fragment: str) -> None:
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    if code == 2:  # a usage error: click's usage lines, then the error
        lines = lines[-1:]
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in result.output, result.output


def test_merge_keeps_every_entry_and_joins_same_names(cli, tmp_path):
    a = make(tmp_path / "a.h5", ["ann", "bob", "ann"], seed=1)
    b = make(tmp_path / "b.h5", ["bob", "cy"], seed=2)
    result = cli("db", "merge", a, b, tmp_path / "out.h5")
    assert result.exit_code == 0, result.output
    ga, gb, out = Gallery.load(a), Gallery.load(b), Gallery.load(tmp_path / "out.h5")
    np.testing.assert_array_equal(out.embeddings, np.concatenate([ga.embeddings, gb.embeddings]))
    assert out.identities == ["ann", "bob", "cy"] and out.counts() == {"ann": 2, "bob": 2, "cy": 1}
    assert out.sources == ga.sources + gb.sources and out.content_id not in (ga.content_id, gb.content_id)


def test_merge_refuses_other_models_and_its_inputs(cli, tmp_path):
    a = make(tmp_path / "a.h5", ["ann"], seed=1)
    b = make(tmp_path / "b.h5", ["bob"], seed=2, recognizer=ModelStamp("other", "c" * 64))
    one_error(cli("db", "merge", a, b, tmp_path / "out.h5"), 1, f"{b}: faces made with recognizer other (cccccccccccc")
    assert not (tmp_path / "out.h5").exists()
    before = a.read_bytes()
    (tmp_path / "link.h5").symlink_to(a)
    one_error(cli("db", "merge", a, make(tmp_path / "c.h5", ["cy"]), tmp_path / "link.h5"), 2, "is also an input")
    assert a.read_bytes() == before
    one_error(cli("db", "merge", a, tmp_path / "out.h5"), 2, "expected two galleries or more and the output")


def test_export_import_round_trip_and_import_appends(cli, tmp_path):
    db = make(tmp_path / "g.h5", ["ann", "bob", "ann", "Zoë"])
    assert cli("db", "export", db, tmp_path / "e.h5").exit_code == 0
    result = cli("db", "import", tmp_path / "e.h5", tmp_path / "back.h5")
    assert result.exit_code == 0, result.output
    g, back = Gallery.load(db), Gallery.load(tmp_path / "back.h5")
    np.testing.assert_array_equal(back.embeddings, g.embeddings)
    assert (back.identities, back.sources, back.recognizer, back.detector) == (g.identities, g.sources, REC, DET)
    np.testing.assert_array_equal(back.boxes, g.boxes)
    inode = (tmp_path / "back.h5").stat().st_ino
    assert cli("db", "import", tmp_path / "e.h5", tmp_path / "back.h5").exit_code == 0  # in place: same file
    again = Gallery.load(tmp_path / "back.h5")
    assert (tmp_path / "back.h5").stat().st_ino == inode and len(again) == 8 and again.counts()["ann"] == 4
    one_error(cli("db", "export", db, db.with_suffix(".npy")), 2, "expected an output ending in .h5")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f["embeddings"].__setitem__((1, 0), np.nan), "dataset embeddings row 1 holds NaN or infinite"),
        (lambda f: f["embeddings"].__setitem__(2, np.full(8, 3.0)), "dataset embeddings row 2 has L2 norm 8.48528"),
        (lambda f: f.__delitem__("images") or f.create_dataset("images", data=[b"x"]),
         "dataset images has shape [1], expected [4]"),
        (lambda f: f.attrs.__delitem__("recognizer_fingerprint"), "lacks attribute(s) recognizer_fingerprint"),
    ],
    ids=["NaN", "norm 8.5", "3 images for 4 rows", "no fingerprint"],
)  # fmt: skip
def test_import_refuses_bad_rows_with_one_line(cli, tmp_path, change, message):
    db = make(tmp_path / "g.h5", ["ann", "bob", "ann", "cy"])
    cli("db", "export", db, tmp_path / "e.h5")
    with h5py.File(tmp_path / "e.h5", "r+") as f:
        change(f)
    one_error(cli("db", "import", tmp_path / "e.h5", tmp_path / "out.h5"), 1, f"{tmp_path / 'e.h5'}: {message}")
    assert not (tmp_path / "out.h5").exists()


def orl(shared_data: Path, root: Path, people: range, shots: range) -> Path:
    for person in people:
        (root / f"s{person}").mkdir(parents=True, exist_ok=True)
        for n in shots:
            (root / f"s{person}" / f"{n}.pgm").symlink_to(shared_data / f"faces/orl/s{person}/{n}.pgm")
    return root


def entries(g: Gallery) -> dict[tuple[str, str], np.ndarray]:
    """(identity, photo name) -> embedding: the gallery whatever the order of its rows."""
    return {(g.identities[i], Path(s).parent.name + "/" + Path(s).name): e
            for i, s, e in zip(g.identity_index, g.sources, g.embeddings, strict=True)}  # fmt: skip


@pytest.mark.slow  # ~30 s: 3 build-db and an embed on real photos; quicker sibling: test_merge_keeps_every_entry_...
def test_build_db_shards_merged_equal_one_build_and_embed_imports(cli, shared_data, scrfd, random_recognizer,
                                                                  tmp_path):  # fmt: skip
    """ORL s1-s4, 3 photos each, real detector: build-db of s1-s2 and of s3-s4 (plus s2's photos in both: a name
    in two shards) merged = one build-db of all, the same people and embeddings; `facekit embed` of s1-s4 imported
    (names from the photo folders) = the same embeddings too."""
    models = [scrfd, random_recognizer]
    whole = orl(shared_data, tmp_path / "all", range(1, 5), range(1, 4))
    first = orl(shared_data, tmp_path / "first", range(1, 3), range(1, 4))
    second = orl(shared_data, tmp_path / "second", range(3, 5), range(1, 4))
    for data, out in ((whole, "all.h5"), (first, "a.h5"), (second, "b.h5")):
        result = cli("build-db", data, *models, tmp_path / out)
        assert result.exit_code == 0, result.output
    assert cli("db", "merge", tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "m.h5").exit_code == 0
    one, merged = Gallery.load(tmp_path / "all.h5"), Gallery.load(tmp_path / "m.h5")
    assert sorted(merged.identities) == sorted(one.identities) == ["s1", "s2", "s3", "s4"]
    a, b = entries(one), entries(merged)
    assert a.keys() == b.keys() and len(a) == 12
    assert all(np.allclose(a[key], b[key], atol=1e-5) for key in a)

    result = cli("embed", *(whole / f"s{p}" for p in range(1, 5)), "--detect", scrfd, "--recognize",
                 random_recognizer, "--out", tmp_path / "e.h5")  # fmt: skip
    assert result.exit_code == 0, result.output
    result = cli("db", "import", tmp_path / "e.h5", tmp_path / "imported.h5")
    assert result.exit_code == 0, result.output
    c = entries(Gallery.load(tmp_path / "imported.h5"))
    assert c.keys() == a.keys() and all(np.allclose(a[key], c[key], atol=1e-5) for key in a)
