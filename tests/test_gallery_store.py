"""The HDF5 gallery: layout, round trip, edits, refusals, atomic writes."""

from __future__ import annotations

import numpy as np
import pytest

from facekit.align import template
from facekit.errors import DataFormatError, MissingDataError
from facekit.gallery.store import Gallery, ModelStamp, gallery_file

REC = ModelStamp("rec", "a" * 64)
DET = ModelStamp("det", "b" * 64)


def unit(rng: np.random.Generator, n: int, d: int = 8) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make(names: list[str], seed: int = 0) -> Gallery:
    rng = np.random.default_rng(seed)
    n = len(names)
    return Gallery.empty(8, REC, DET, crop_size=112, flip=False).add(
        unit(rng, n), names, [f"photos/{i}.jpg" for i in range(n)], rng.random((n, 4)), rng.random((n, 5, 2)),
        rng.random(n),
    )  # fmt: skip


def test_round_trip_and_plain_h5py_layout(tmp_path):
    import h5py

    g = make(["ann", "bob", "ann", "Zoë"])
    path = g.save(tmp_path / "g.h5")
    back = Gallery.load(path)
    np.testing.assert_array_equal(back.embeddings, g.embeddings)
    assert back.identities == ["ann", "bob", "Zoë"] and back.sources == g.sources
    assert back.content_id == g.content_id and back.recognizer == REC and back.detector == DET
    with h5py.File(path, "r") as f:
        assert f["embeddings"].dtype == np.float32 and f["embeddings"].shape == (4, 8)
        assert f["embeddings"].compression == "gzip" and f["embeddings"].chunks is not None
        assert list(f["identities"].asstr()[()][f["identity_index"][()]]) == ["ann", "bob", "ann", "Zoë"]
        assert f.attrs["schema_version"] == 2 and f.attrs["embedding_dim"] == 8
        assert f.attrs["recognizer_fingerprint"] == b"a" * 64  # fixed-length UTF-8: HDF5 checksums it
        assert all(f[name].fletcher32 for name in f) and f["sources"].asstr()[0] == "photos/0.jpg"
        assert f.attrs["alignment_template"].shape == (5, 2)
        templates = f["templates"][()]
    ann = g.embeddings[[0, 2]].sum(0)
    np.testing.assert_allclose(templates[0], ann / np.linalg.norm(ann), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(templates, axis=1), 1, rtol=1e-6)


def test_remove_renumbers_identities():
    g = make(["ann", "bob", "cid", "bob"]).remove(["bob"])
    assert g.identities == ["ann", "cid"] and g.identity_index.tolist() == [0, 1]
    assert g.sources == ["photos/0.jpg", "photos/2.jpg"]
    with pytest.raises(KeyError, match="dan"):
        g.remove(["dan"])


def test_add_keeps_the_input_and_changes_the_content_id():
    g = make(["ann"])
    bigger = g.add(unit(np.random.default_rng(1), 2), ["bob", "ann"], ["x", "y"], np.zeros((2, 4)),
                   np.zeros((2, 5, 2)), np.ones(2))  # fmt: skip
    assert len(g) == 1 and len(bigger) == 3 and bigger.counts() == {"ann": 2, "bob": 1}
    assert bigger.content_id != g.content_id


class Model:
    def __init__(self, name: str, fingerprint: str, embedding_size: int, input_size: int = 112) -> None:
        self.name, self.fingerprint, self.embedding_size = name, fingerprint, embedding_size
        self.input_size, self.template = input_size, template(input_size)


def test_refuses_another_recognizer(tmp_path):
    g = make(["ann"])
    g.check_recognizer(Model("same file", "a" * 64, 8), "g.h5")
    with pytest.raises(DataFormatError, match=r"g.h5: gallery holds 8-d embeddings, recognizer big makes 512-d"):
        g.check_recognizer(Model("big", "a" * 64, 512), "g.h5")
    with pytest.raises(DataFormatError, match=r"built by recognizer rec \(sha256 aaaaaaaaaaaa\), not"):
        g.check_recognizer(Model("other", "c" * 64, 8), "g.h5")
    crops = r"g.h5: gallery faces were aligned to 112x112 crops with the ArcFace template; recognizer {} takes {}"
    with pytest.raises(DataFormatError, match=crops.format("big", "150x150 crops with the ArcFace template")):
        g.check_recognizer(Model("big", "a" * 64, 8, input_size=150), "g.h5")
    moved = Model("moved", "a" * 64, 8)
    moved.template = moved.template + 2
    moved_crops = r"112x112 crops with the template \(40.29, 53.7\)"
    with pytest.raises(DataFormatError, match=crops.format("moved", moved_crops)):
        g.check_recognizer(moved, "g.h5")


def test_load_errors_name_the_file(tmp_path):
    import h5py

    with pytest.raises(MissingDataError, match="no such gallery file"):
        Gallery.load(tmp_path / "none.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(DataFormatError, match="text.h5: not an HDF5 file"):
        Gallery.load(tmp_path / "text.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(DataFormatError, match="other.h5: an HDF5 file, but not a facekit gallery"):
        Gallery.load(tmp_path / "other.h5")
    path = make(["ann", "bob"]).save(tmp_path / "g.h5")
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(DataFormatError, match="schema version 99"):
        Gallery.load(path)
    path = make(["ann", "bob"]).save(tmp_path / "g2.h5")
    with h5py.File(path, "a") as f:
        del f["boxes"]
        f["boxes"] = np.zeros((3, 4), np.float32)
    with pytest.raises(DataFormatError, match=r"g2.h5: dataset boxes has shape \[3, 4\], expected \[2, 4\]"):
        Gallery.load(path)


def test_a_failed_write_leaves_the_old_gallery(tmp_path, monkeypatch):
    import h5py

    path = make(["ann"]).save(tmp_path / "g.h5")
    before = path.read_bytes()

    def broken(self, name, **kwargs):
        if name == "identities":
            raise OSError("disk full")
        return original(self, name, **kwargs)

    original = h5py.Group.create_dataset
    monkeypatch.setattr(h5py.Group, "create_dataset", broken)
    with pytest.raises(OSError, match="disk full"):
        make(["bob", "cid"]).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["g.h5"]  # no temporary file left behind


def test_gallery_file_accepts_a_folder(tmp_path):
    assert gallery_file(tmp_path) == tmp_path / "gallery.h5"
    assert gallery_file(f"{tmp_path}/new/") == tmp_path / "new" / "gallery.h5"
    assert gallery_file(tmp_path / "people.h5") == tmp_path / "people.h5"


def test_refuses_to_write_an_empty_gallery(tmp_path):
    with pytest.raises(ValueError, match="without faces"):
        Gallery.empty(8, REC, DET, crop_size=112, flip=False).save(tmp_path / "g.h5")


def test_refuses_rows_that_are_not_unit_vectors(tmp_path):
    """add() refuses NaN, infinite and zero embeddings (they cannot be normalised); save() refuses rows that are not
    unit vectors, so that no gallery is written that load() would refuse."""
    from dataclasses import replace

    g = make(["ann"])
    for bad, what in ((np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"), (0.0, "zero")):
        rows = unit(np.random.default_rng(1), 2)
        rows[1] = bad
        with pytest.raises(DataFormatError, match=rf"refusing to add embedding 1 of 2 \(bob, y\): {what}; the reco"):
            g.add(rows, ["ann", "bob"], ["x", "y"], np.zeros((2, 4)), np.zeros((2, 5, 2)), np.ones(2))
    scaled = replace(g, embeddings=g.embeddings * 2)
    with pytest.raises(DataFormatError, match=r"g.h5: refusing to write embedding 0: L2 norm 2, not 1"):
        scaled.save(tmp_path / "g.h5")
    assert not list(tmp_path.iterdir())
