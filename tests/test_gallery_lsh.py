"""LSH gallery search (facekit.gallery.indexes.LshIndex): exact scores, exact answers when every row is a
candidate, recall on clustered identities, parameters, and `recognize --index lsh` on real photos."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_gallery_search import KNN, clustered

from facekit.gallery.exact import exact_search
from facekit.gallery.indexes import LSH_NBITS, LSH_RERANK, LshIndex
from facekit.gallery.recognize import Matcher


def test_all_rows_as_candidates_is_exact_search():
    """rerank >= N: every row is re-ranked, so the answer is exact search's (scores to float32 rounding: another
    order of summation), ties to the lower index included."""
    gallery, queries = clustered(ids=40, per_id=5, queries=30)
    gallery[7] = gallery[3]  # a tie
    queries[0] = gallery[3]
    scores, rows = LshIndex(gallery, rerank=len(gallery)).search(queries, 5)
    expected_scores, expected_rows = exact_search(gallery, queries, 5)
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-6)
    assert rows[0, :2].tolist() == [3, 7]


def test_recall_on_clustered_identities_with_few_candidates():
    """5,000 rows of 500 identities, 16 candidates of 5,000: the top-1 row is exact search's for nearly every query
    (a query's own identity stands out, as in a face gallery), and every score is the exact inner product."""
    gallery, queries = clustered(ids=500, per_id=10, queries=200)
    index = LshIndex(gallery, rerank=16)
    scores, rows = index.search(queries, 5)
    truth = exact_search(gallery, queries, 5)
    assert (rows[:, 0] == truth[1][:, 0]).mean() >= 0.97
    np.testing.assert_allclose(scores, np.einsum("qkd,qd->qk", gallery[rows], queries), atol=1e-6)
    assert (np.diff(scores, axis=1) <= 0).all()
    # at 8 bits the codes cannot tell identities apart: the same 16 candidates find far fewer
    coarse = LshIndex(gallery, nbits=8, rerank=16).search(queries, 1)[1][:, 0]
    assert (coarse == truth[1][:, 0]).mean() < 0.5


def test_shards_number_rows_on_from_each_other(monkeypatch: pytest.MonkeyPatch):
    """Codes split over 3 threads (shards of 1,666-1,667 rows) find what one set of codes finds: row numbers are the
    gallery's, and every row is found by its own search."""
    import faiss

    import facekit.gallery.indexes as indexes

    monkeypatch.setattr(indexes, "LSH_SHARD_ROWS", 1000)
    gallery, queries = clustered(ids=500, per_id=10, queries=200)
    sharded = LshIndex(gallery, rerank=16, shards=3)
    assert len(sharded.parts) == 3 and [p.ntotal for p in sharded.parts] == [1666, 1667, 1667]
    rotations = [faiss.vector_to_array(part.rrot.A) for part in sharded.parts]
    assert all(np.array_equal(rotations[0], r) for r in rotations[1:])  # one code for a vector in every shard
    assert (sharded.search(gallery[::50], 1)[1][:, 0] == np.arange(0, 5000, 50)).all()
    one = LshIndex(gallery, rerank=16, shards=1).search(queries, 5)[1]
    assert (sharded.search(queries, 5)[1][:, 0] == one[:, 0]).mean() >= 0.98
    assert len(LshIndex(gallery, shards=8).parts) == 5  # a shard takes at least LSH_SHARD_ROWS rows (here 1,000)


def test_defaults_memory_and_edge_cases():
    gallery, queries = clustered(ids=50, per_id=10, queries=10)
    index = LshIndex(gallery)
    assert (index.nbits, index.rerank) == (LSH_NBITS, LSH_RERANK) == (256, 256)
    assert index.embeddings is gallery  # re-ranked from the gallery's own rows, not a copy
    assert [part.code_size for part in index.parts] == [32] and len(index) == 500
    assert index.nbytes == 500 * 32 + 64 * 256 * 4
    assert index.search(queries[:0], 3)[1].shape == (0, 3)
    assert index.search(queries, 0)[1].shape == (10, 0)
    assert index.search(queries, 900)[1].shape == (10, 500)  # k beyond N: every row
    empty = LshIndex(gallery[:0])
    assert empty.search(queries, 3)[1].shape == (10, 0)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"nbits": 4}, "^nbits must be 8 to 2048, got 4$"),
        ({"rerank": 0}, "^rerank must be 1 to 65536, got 0$"),
    ],
)
def test_rejects_bad_parameters(params: dict, message: str):
    gallery, _ = clustered(ids=5, per_id=2, queries=1)
    with pytest.raises(ValueError, match=message):
        LshIndex(gallery, **params)


def test_rejects_bad_queries():
    gallery, queries = clustered(ids=5, per_id=2, queries=2)
    index = LshIndex(gallery)
    with pytest.raises(ValueError, match=r"queries must be \[Q, 64\] like the gallery"):
        index.search(queries[:, :8], 1)
    queries[0, 0] = np.nan
    with pytest.raises(ValueError, match="queries hold NaN"):
        index.search(queries, 1)


def test_matcher_opens_its_index_once(monkeypatch: pytest.MonkeyPatch):
    """recognize matches a batch of photos at a time: the index is built (or loaded and checked) on the first batch
    and kept, not rebuilt for each."""
    from types import SimpleNamespace

    import facekit.gallery.search as search_module

    opened = []
    real = search_module.open_index
    monkeypatch.setattr(search_module, "open_index", lambda *a, **kw: opened.append(a[1]) or real(*a, **kw))
    gallery, queries = clustered(ids=50, per_id=10, queries=6)
    people = SimpleNamespace(
        identities=[f"p{i}" for i in range(50)], embeddings=gallery, identity_index=np.arange(500) // 10,
        content_id="k", templates=lambda: None,
    )  # fmt: skip
    matcher = Matcher(people, index="lsh")
    first, second = matcher.match(queries[:3], 2), matcher.match(queries[3:], 2)
    assert opened == ["lsh"] and len(first) == len(second) == 3
    _, rows = exact_search(gallery, queries, 1)
    assert [m[0][0] for m in first + second] == [f"p{r // 10}" for r in rows[:, 0]]


def test_recognize_with_lsh_on_real_photos(cli, shared_data, random_recognizer, scrfd, tmp_path):
    """A gallery of real faces: --index lsh answers every test photo exactly as exact search does (at this size
    every row is a candidate) and writes no cache file."""
    db = tmp_path / "people.h5"
    assert cli("build-db", shared_data / KNN / "train", scrfd, random_recognizer, db).exit_code == 0
    test = shared_data / KNN / "test"
    lsh = cli("recognize", test, db, scrfd, random_recognizer, "--index", "lsh")
    exact = cli("recognize", test, db, scrfd, random_recognizer, "--index", "exact")
    assert lsh.exit_code == exact.exit_code == 0, lsh.output
    records = [json.loads(line) for line in lsh.stdout.splitlines()]
    assert len(records) >= 3 and sum(len(r["faces"]) for r in records) >= 3
    assert lsh.stdout == exact.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["people.h5", "people.h5.lock"]


def test_recognize_index_params(cli, shared_data, random_recognizer, scrfd, tmp_path):
    """--index-param reaches the index (lsh nbits and rerank: the same answers at this size, every row a candidate
    or not); a parameter of another index, out of range, malformed, or with --index auto is a one-line usage error."""
    db = tmp_path / "people.h5"
    assert cli("build-db", shared_data / KNN / "train", scrfd, random_recognizer, db).exit_code == 0
    test = shared_data / KNN / "test"
    exact = cli("recognize", test, db, scrfd, random_recognizer, "--index", "exact")
    tuned = cli("recognize", test, db, scrfd, random_recognizer, "--index", "lsh", "--index-param", "nbits=512",
                "--index-param", "rerank=300")  # fmt: skip
    assert tuned.exit_code == 0, tuned.output
    assert tuned.stdout == exact.stdout
    for params, message in [
        (["--index", "hnsw", "--index-param", "nbits=512"], "nbits and rerank apply to 'lsh' indexes only, not 'hnsw'"),
        (["--index", "lsh", "--index-param", "nbits=4"], "nbits must be 8 to 2048, got 4"),
        (["--index", "lsh", "--index-param", "bits=64"], "unknown index parameter 'bits'; known: nlist"),
        (["--index", "lsh", "--index-param", "nbits"], "'nbits': expected NAME=INTEGER, such as nbits=512"),
        (["--index-param", "nbits=512"], "applies to --index flat, ivf, hnsw or lsh, not auto"),
    ]:
        bad = cli("recognize", test, db, scrfd, random_recognizer, *params)
        assert bad.exit_code == 2 and message in bad.output and "Traceback" not in bad.output, (params, bad.output)


def test_matcher_passes_index_params():
    from types import SimpleNamespace

    gallery, queries = clustered(ids=50, per_id=10, queries=6)
    people = SimpleNamespace(
        identities=[f"p{i}" for i in range(50)], embeddings=gallery, identity_index=np.arange(500) // 10,
        content_id="k", templates=lambda: None,
    )  # fmt: skip
    matcher = Matcher(people, index="lsh", params={"nbits": 64, "rerank": 40})
    assert (matcher.searcher.nbits, matcher.searcher.rerank) == (64, 40)


def test_recognize_auto_uses_lsh_from_100k_faces(cli, shared_data, random_recognizer, scrfd, tmp_path, monkeypatch):
    """100,000 random faces plus the knn examples' real ones, enrolled with build-db --append: `--index auto` (LSH at
    this size) names each test photo's faces as exact search does, with the same similarities."""
    import facekit.gallery.indexes as indexes
    from facekit.gallery.store import Gallery, ModelStamp
    from facekit.runtime.onnx_detector import OnnxDetector
    from facekit.runtime.recognizer import load_face_recognizer

    n = 100_000
    names = [f"stranger_{i // 5:05d}" for i in range(n)]
    recognizer, detector = ModelStamp.of(load_face_recognizer(random_recognizer)), ModelStamp.of(OnnxDetector(scrfd))
    rng = np.random.default_rng(0)
    crowd = Gallery.empty(32, recognizer, detector, crop_size=112, flip=False).add(
        rng.standard_normal((n, 32), np.float32), names, [f"/photos/{i}.jpg" for i in range(n)], np.zeros((n, 4)),
        np.zeros((n, 5, 2)), np.ones(n))  # fmt: skip
    db = tmp_path / "people.h5"
    crowd.save(db)
    assert cli("build-db", shared_data / KNN / "train", scrfd, random_recognizer, db, "--append").exit_code == 0
    test = shared_data / KNN / "test"
    built = []
    monkeypatch.setattr(indexes, "LshIndex", lambda rows, **kw: built.append(len(rows)) or LshIndex(rows, **kw))
    auto = cli("recognize", test, db, scrfd, random_recognizer, "--top-k", 1)
    assert built == [len(Gallery.load(db))] and built[0] > n  # auto picked LSH, built once for all the photos
    exact = cli("recognize", test, db, scrfd, random_recognizer, "--top-k", 1, "--index", "exact")
    assert auto.exit_code == exact.exit_code == 0, auto.output
    assert auto.stdout == exact.stdout
    faces = [face for line in auto.stdout.splitlines() for face in json.loads(line)["faces"]]
    assert len(faces) >= 3 and all(not f["candidates"][0]["identity"].startswith("stranger") for f in faces)
