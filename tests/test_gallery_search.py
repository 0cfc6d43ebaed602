"""Gallery search: exact blocked search against brute force, faiss flat, IVF and HNSW indexes, `auto`, the index
cache (LSH: tests/test_gallery_lsh.py)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from facekit.errors import DataFormatError, MissingDataError
from facekit.gallery import indexes as index_module
from facekit.gallery import search as search_module
from facekit.gallery.exact import exact_search
from facekit.gallery.indexes import FaissIndex, LshIndex, cached_index
from facekit.gallery.search import auto_index, open_index, search

KNN = "faces/face_recognition_examples/examples/knn_examples"


@pytest.fixture(autouse=True)
def one_faiss_thread():
    """faiss's OpenMP threads spin: on a busy 2-core machine building a 500-row HNSW index takes 2 s on 2 threads,
    0.1 s on one."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def brute(gallery: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference: all scores in float64, a stable argsort (ties to the lower index)."""
    scores = queries.astype(np.float64) @ gallery.T.astype(np.float64)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), order


def clustered(ids: int, per_id: int, queries: int, seed: int = 0, dim: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A gallery of `ids` identities x `per_id` noisy embeddings, and queries: fresh noisy views of random ids."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((ids, dim)))
    noise = 0.8 / np.sqrt(dim)
    gallery = unit(np.repeat(centres, per_id, 0) + noise * rng.standard_normal((ids * per_id, dim)))
    return gallery, unit(centres[rng.integers(0, ids, queries)] + noise * rng.standard_normal((queries, dim)))


@pytest.mark.parametrize(
    ("n", "q", "k", "block_rows"),
    [(1000, 7, 5, None), (1000, 7, 5, 128), (3000, 3, 4, 1024), (5000, 1, 10, 4096), (300, 5, 40, 16), (50, 4, 80, 8)],
)
def test_exact_matches_brute_force(n: int, q: int, k: int, block_rows: int | None):
    rng = np.random.default_rng(n + k)
    gallery, queries = unit(rng.standard_normal((n, 32))), unit(rng.standard_normal((q, 32)))
    scores, indices = exact_search(gallery, queries, k, block_rows=block_rows)
    expected_scores, expected = brute(gallery, queries, k)
    assert scores.dtype == np.float32 and indices.dtype == np.int64
    assert scores.shape == indices.shape == (q, min(k, n))
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)


# 10007 and (20000, 4100): blocks whose width is not a multiple of GROUP (the fast path plus tail columns)
@pytest.mark.parametrize(
    ("n", "block_rows"), [(20000, None), (20000, 4096), (20000, 4100), (10007, None), (300, 1), (3000, 7), (3000, 100)]
)
def test_exact_ties_go_to_the_lower_index(n: int, block_rows: int | None):
    # Small integers: every score is exact in float32, most are tied (including 0.0 against -0.0)
    rng = np.random.default_rng(1)
    gallery = rng.integers(-2, 3, (n, 3)).astype(np.float32)
    queries = rng.integers(-2, 3, (12, 3)).astype(np.float32)
    for k in (1, 5, 30):
        scores, indices = exact_search(gallery, queries, k, block_rows=block_rows)
        expected_scores, expected = brute(gallery, queries, k)
        np.testing.assert_array_equal(indices, expected)
        np.testing.assert_array_equal(scores, expected_scores)


def test_exact_fast_path_with_a_tie_at_the_boundary():
    # Three copies of query 0 tie for places 1-3 in one block (integers: exact scores); k = 2 takes the lower two
    rng = np.random.default_rng(2)
    gallery = rng.integers(-100, 101, (16384, 16)).astype(np.float32)
    queries = rng.integers(-100, 101, (4, 16)).astype(np.float32)
    gallery[[9000, 3000, 12000]] = queries[0]
    _, indices = exact_search(gallery, queries, 2, block_rows=16384)
    assert indices[0].tolist() == [3000, 9000]
    np.testing.assert_array_equal(indices, brute(gallery, queries, 2)[1])


def test_exact_edge_cases():
    rng = np.random.default_rng(3)
    gallery = unit(rng.standard_normal((10, 8)))
    scores, indices = exact_search(gallery, gallery[:1], 50)  # k > N, Q = 1
    assert indices.shape == (1, 10) and indices[0, 0] == 0
    np.testing.assert_array_equal(np.sort(indices[0]), np.arange(10))
    assert np.all(np.diff(scores[0]) <= 0)
    empty_queries = np.empty((0, 8), np.float32)
    for g, q, k, shape in (
        (gallery, empty_queries, 5, (0, 5)),
        (gallery[:0], gallery, 5, (10, 0)),
        (gallery, gallery, 0, (10, 0)),
    ):
        scores, indices = exact_search(g, q, k)
        assert scores.shape == indices.shape == shape
        assert scores.dtype == np.float32 and indices.dtype == np.int64


def test_exact_rejects_bad_input():
    gallery = unit(np.random.default_rng(4).standard_normal((10, 8)))
    with pytest.raises(ValueError, match=r"queries must be \[Q, 8\] like the gallery, got shape \(2, 7\)"):
        exact_search(gallery, np.zeros((2, 7), np.float32), 1)
    with pytest.raises(ValueError, match="2-D"):
        exact_search(gallery[0], gallery, 1)
    with pytest.raises(ValueError, match="k must not be negative"):
        exact_search(gallery, gallery, -1)
    with pytest.raises(ValueError, match="queries hold NaN"):
        exact_search(gallery, np.full((1, 8), np.nan, np.float32), 1)
    bad = gallery.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="gallery holds NaN"):
        exact_search(bad, gallery, 1)


def test_exact_reads_a_read_only_float64_gallery():
    rng = np.random.default_rng(5)
    gallery = unit(rng.standard_normal((500, 16))).astype(np.float64)
    gallery.flags.writeable = False
    _, indices = exact_search(gallery, gallery[:3], 1, block_rows=64)
    assert indices[:, 0].tolist() == [0, 1, 2]


def test_flat_agrees_with_exact():
    rng = np.random.default_rng(6)
    gallery, queries = unit(rng.standard_normal((3000, 64))), unit(rng.standard_normal((40, 64)))
    index = FaissIndex.build(gallery)
    assert index.kind == "flat" and len(index) == 3000
    scores, indices = index.search(queries, 10)
    expected_scores, expected = exact_search(gallery, queries, 10)
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)
    assert index.search(queries, 5000)[1].shape == (40, 3000)  # k > N: trimmed, no -1
    assert FaissIndex.build(gallery[:0]).search(queries, 3)[1].shape == (40, 0)


def test_ivf_top1_agrees_with_exact_on_clustered_data():
    gallery, queries = clustered(ids=400, per_id=10, queries=200)
    index = FaissIndex.build(gallery, "ivf")
    assert index.kind == "ivf" and index.index.nlist == 4000 // 39  # 4 sqrt(N) = 253 is too many for 4000 points
    _, indices = index.search(queries, 5)
    _, expected = exact_search(gallery, queries, 1)
    assert np.mean(indices[:, 0] == expected[:, 0]) >= 0.95


def test_ivf_small_galleries_and_missing_results(capfd: pytest.CaptureFixture):
    gallery, queries = clustered(ids=4, per_id=5, queries=3)
    index = FaissIndex.build(gallery, "ivf", nlist=8, nprobe=1)  # 20 points: faiss would warn below 39 per list
    assert index.index.nlist == 8
    scores, indices = index.search(queries, 20)
    assert indices.shape == (3, 20)
    assert np.all((indices >= 0) == np.isfinite(scores)) and (indices < 0).any()
    assert FaissIndex.build(gallery[:0], "ivf").search(queries, 3)[1].shape == (3, 0)
    assert capfd.readouterr().err == ""


def test_build_rejects_bad_arguments(tmp_path):
    gallery = unit(np.random.default_rng(7).standard_normal((100, 8)))
    with pytest.raises(ValueError, match="unknown faiss index 'annoy'; choose from flat, ivf, hnsw"):
        FaissIndex.build(gallery, "annoy")
    with pytest.raises(ValueError, match="^nlist and nprobe apply to 'ivf' indexes only, not 'flat'$"):
        FaissIndex.build(gallery, "flat", nlist=4)
    with pytest.raises(ValueError, match="^nprobe must be 1 to 65536, got 0$"):
        FaissIndex.build(gallery, "ivf", nprobe=0)
    FaissIndex.build(gallery).save(tmp_path / "people.h5.flat.k1.faiss")
    with pytest.raises(ValueError, match="'ivf' indexes only"):  # also when the cache holds the index
        cached_index(gallery, "flat", tmp_path / "people.h5", "k1", nprobe=2)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_roundtrip(tmp_path, kind: str):
    gallery, queries = clustered(ids=50, per_id=10, queries=20)
    index = FaissIndex.build(gallery, kind)
    index.save(tmp_path / "people.faiss")
    assert [p.name for p in tmp_path.iterdir()] == ["people.faiss"]  # no temporary file left
    loaded = FaissIndex.load(tmp_path / "people.faiss")
    assert loaded.kind == kind and len(loaded) == len(gallery)
    for got, expected in zip(loaded.search(queries, 5), index.search(queries, 5)):
        np.testing.assert_array_equal(got, expected)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(MissingDataError, match=r"nothing\.faiss: no such file"):
        FaissIndex.load(tmp_path / "nothing.faiss")
    (tmp_path / "bad.faiss").write_bytes(b"not a faiss index")
    with pytest.raises(
        DataFormatError, match=r"bad\.faiss: not a readable faiss index \(Index type .* not recognized\)"
    ):
        FaissIndex.load(tmp_path / "bad.faiss")
    import faiss

    faiss.write_index(faiss.IndexFlatL2(4), str(tmp_path / "l2.faiss"))
    with pytest.raises(
        DataFormatError, match=r"l2\.faiss: a faiss IndexFlatL2, not an inner-product flat, IVF or HNSW index"
    ):
        FaissIndex.load(tmp_path / "l2.faiss")


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts FaissIndex.build calls (the kinds built)."""
    calls: list[str] = []
    build = FaissIndex.build.__func__

    def counting(cls, embeddings, kind="flat", **kw):
        calls.append(kind)
        return build(cls, embeddings, kind, **kw)

    monkeypatch.setattr(FaissIndex, "build", classmethod(counting))
    return calls


def test_cached_index_builds_once_then_loads(tmp_path, builds: list[str]):
    gallery, queries = clustered(ids=50, per_id=10, queries=10)
    prefix = tmp_path / "people.h5"
    first = cached_index(gallery, "flat", prefix, "k1")
    second = cached_index(gallery, "flat", prefix, "k1")
    assert builds == ["flat"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["people.h5.flat.k1.faiss"]
    np.testing.assert_array_equal(second.search(queries, 3)[1], first.search(queries, 3)[1])


def test_cached_index_new_key_replaces_only_its_own_kind(tmp_path, builds: list[str]):
    gallery, _ = clustered(ids=50, per_id=10, queries=1)
    prefix = tmp_path / "people.h5"
    others = ["people.h5.ivf.k1.faiss", "people.h5.flat.k1.other", "friends.h5.flat.k1.faiss", "people.h5"]
    for name in others:
        (tmp_path / name).write_bytes(b"")
    cached_index(gallery, "flat", prefix, "k1")
    cached_index(gallery, "flat", prefix, "k2")
    assert builds == ["flat", "flat"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*others, "people.h5.flat.k2.faiss"])


def test_cached_index_rebuilds_a_bad_cache(tmp_path, builds: list[str], caplog: pytest.LogCaptureFixture):
    gallery, queries = clustered(ids=50, per_id=10, queries=10)
    path = tmp_path / "people.h5.ivf.k1.faiss"
    path.write_bytes(b"\x00garbage")
    with caplog.at_level(logging.WARNING, logger=index_module.__name__):
        index = cached_index(gallery, "ivf", tmp_path / "people.h5", "k1", nprobe=4)
    assert builds == ["ivf"] and "not a readable faiss index" in caplog.text and "rebuilding" in caplog.text
    assert index.search(queries, 1)[1].shape == (10, 1)
    assert FaissIndex.load(path).index.nprobe == 4  # the rebuilt index was saved
    assert cached_index(gallery, "ivf", tmp_path / "people.h5", "k1", nprobe=2).index.nprobe == 2  # loaded, not built
    assert builds == ["ivf"]
    FaissIndex.build(gallery[:100], "ivf").save(path)  # readable, but for other embeddings
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=index_module.__name__):
        cached_index(gallery, "ivf", tmp_path / "people.h5", "k1")
    assert builds == ["ivf", "ivf", "ivf"] and "holds 100 x 64 (ivf), the gallery 500 x 64 (ivf)" in caplog.text


def test_cached_index_rejects_unsafe_keys(tmp_path):
    with pytest.raises(ValueError, match="cache key '../x'"):
        cached_index(np.zeros((1, 4), np.float32), "flat", tmp_path / "people.h5", "../x")


def test_search_entry_point(tmp_path):
    gallery, queries = clustered(ids=50, per_id=10, queries=10)
    _, expected = exact_search(gallery, queries, 3)
    for index in ("exact", "flat"):
        np.testing.assert_array_equal(search(gallery, queries, 3, index)[1], expected)
    cached = search(gallery, queries, 3, "flat", cache_prefix=tmp_path / "people.h5", key="abc")
    np.testing.assert_array_equal(cached[1], expected)
    assert (tmp_path / "people.h5.flat.abc.faiss").is_file()
    assert search(gallery, queries, 1, "ivf")[1].shape == (10, 1)
    with pytest.raises(ValueError, match="unknown index 'annoy'; choose from exact, flat, ivf, hnsw, lsh, auto"):
        search(gallery, queries, 3, "annoy")
    with pytest.raises(ValueError, match="go together"):
        search(gallery, queries, 3, "flat", key="abc")


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, facekit.gallery.search; print('torch' in sys.modules, 'faiss' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split() == ["False"] * 2


def test_mismatch_checks_every_row_and_sampled_lists():
    """An index that serves the gallery passes; a changed row (flat or IVF), or IVF centroids that no longer match
    their lists (their rows were filed under other centroids), is named."""
    import faiss

    gallery, _ = clustered(ids=50, per_id=10, queries=1)
    for kind in ("flat", "ivf"):
        index = FaissIndex.build(gallery, kind, **({"nlist": 8} if kind == "ivf" else {}))
        assert index.mismatch(gallery) is None
        assert index.mismatch(gallery[:-1]) == "holds 500 x 64, the gallery 499 x 64"
        changed = gallery.copy()
        changed[123, 5] += 1e-3
        assert index.mismatch(changed) == "row 123 differs from the gallery's"
    quantizer = faiss.downcast_index(index.index.quantizer)
    centroids = faiss.rev_swig_ptr(quantizer.get_xb(), 8 * 64).reshape(8, 64)
    centroids[:] = centroids[::-1].copy()
    assert index.mismatch(gallery).endswith("in a list other than its nearest centroid's")


def test_hnsw_top1_agrees_with_exact_on_clustered_data():
    gallery, queries = clustered(ids=400, per_id=10, queries=200)
    index = FaissIndex.build(gallery, "hnsw")
    assert index.kind == "hnsw" and len(index) == 4000
    hnsw = index.index.hnsw
    assert (hnsw.nb_neighbors(1), hnsw.efConstruction, hnsw.efSearch) == (32, 80, 256)  # the documented defaults
    scores, indices = index.search(queries, 5)
    expected_scores, expected = exact_search(gallery, queries, 5)
    assert np.mean(indices[:, 0] == expected[:, 0]) >= 0.99
    assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(indices, expected, strict=True)]) >= 0.95
    np.testing.assert_allclose(scores[:, 0], expected_scores[:, 0], atol=1e-5)  # inner products, not distances
    small = FaissIndex.build(gallery[:3], "hnsw", m=4, ef_search=1)
    scores, indices = small.search(queries[:2], 5)  # k > N: trimmed
    assert indices.shape == (2, 3) and np.all((indices >= 0) == np.isfinite(scores))
    assert FaissIndex.build(gallery[:0], "hnsw").search(queries, 3)[1].shape == (200, 0)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"m": 1}, "^m must be 2 to 256, got 1$"),
        ({"m": 100000}, "^m must be 2 to 256, got 100000$"),
        ({"ef_search": 0}, "^ef_search must be 1 to 4096, got 0$"),
        ({"ef_construction": -3}, "^ef_construction must be 1 to 4096, got -3$"),
        ({"nprobe": 4}, "^nlist and nprobe apply to 'ivf' indexes only, not 'hnsw'$"),
        ({"efSearch": 4}, "^unknown index parameter 'efSearch'; known: nlist, nprobe, m, ef_construction"),
    ],
)
def test_hnsw_rejects_bad_parameters(tmp_path, params: dict, message: str):
    """One-line errors, from building and from the cache (which checks before it reads or writes a file)."""
    gallery = unit(np.random.default_rng(7).standard_normal((100, 8)))
    if "efSearch" not in params:  # build takes only its own keywords
        with pytest.raises(ValueError, match=message):
            FaissIndex.build(gallery, "hnsw", **params)
    with pytest.raises(ValueError, match=message):
        cached_index(gallery, "hnsw", tmp_path / "people.h5", "k1", **params)
    with pytest.raises(ValueError, match="^m, ef_construction and ef_search apply to 'hnsw' indexes only, not 'ivf'$"):
        FaissIndex.build(gallery, "ivf", ef_search=10)
    assert not list(tmp_path.iterdir())


def test_auto_picks_exact_below_the_boundary_and_lsh_from_it(monkeypatch: pytest.MonkeyPatch, builds: list[str]):
    assert search_module.AUTO_APPROXIMATE_FROM == 100_000
    assert [auto_index(n) for n in (0, 99_999, 100_000, 10**7)] == ["exact", "exact", "lsh", "lsh"]
    monkeypatch.setattr(search_module, "AUTO_APPROXIMATE_FROM", 500)  # the rule, at a size a test can build
    gallery, queries = clustered(ids=50, per_id=10, queries=10)
    _, expected = exact_search(gallery, queries, 3)
    small = open_index(gallery[:499], "auto")
    assert isinstance(small, search_module.ExactSearcher)
    np.testing.assert_array_equal(small.search(queries, 3)[1], exact_search(gallery[:499], queries, 3)[1])
    large = open_index(gallery, "auto")
    assert isinstance(large, LshIndex) and builds == []  # LSH is built in memory, no faiss cache
    assert (large.search(queries, 3)[1][:, 0] == expected[:, 0]).mean() >= 0.9


def test_cli_offers_every_index():
    from facekit.cli.gallery import recognize_cmd

    (option,) = [p for p in recognize_cmd.params if p.name == "index"]
    assert tuple(option.type.choices) == ("auto", *search_module.INDEXES) and option.default == "auto"
    assert set(option.type.choices) == set(search_module.CHOICES)


def test_cached_hnsw_refuses_a_stale_or_poisoned_file(tmp_path, builds: list[str], caplog: pytest.LogCaptureFixture):
    """A cached HNSW index for other rows, other build parameters, or with a broken graph is rebuilt, never used;
    ef_search is the caller's, not the file's."""
    import faiss

    gallery, queries = clustered(ids=50, per_id=10, queries=10)
    prefix, path = tmp_path / "people.h5", tmp_path / "people.h5.hnsw.k1.faiss"
    cached_index(gallery, "hnsw", prefix, "k1", ef_search=16)
    assert cached_index(gallery, "hnsw", prefix, "k1").index.hnsw.efSearch == 256  # loaded, with the default
    assert builds == ["hnsw"]

    def rebuilt(index: FaissIndex, reason: str, **kw) -> None:
        index.save(path)
        caplog.clear()
        built = len(builds)
        with caplog.at_level(logging.WARNING, logger=index_module.__name__):
            cached_index(gallery, "hnsw", prefix, "k1", **kw)
        assert len(builds) == built + 1
        assert f"cached index {reason}" in caplog.text and "; rebuilding it" in caplog.text
        assert FaissIndex.load(path).mismatch(gallery) is None  # the rebuilt index replaced the bad one

    changed = gallery.copy()
    changed[77, 3] += 1e-3
    rebuilt(FaissIndex.build(changed, "hnsw"), "row 77 differs from the gallery's")
    rebuilt(FaissIndex.build(gallery[:400], "hnsw"), "holds 400 x 64 (hnsw), the gallery 500 x 64 (hnsw)")
    rebuilt(FaissIndex.build(gallery, "flat"), "holds 500 x 64 (flat), the gallery 500 x 64 (hnsw)")
    rebuilt(FaissIndex.build(gallery, "hnsw", m=8), "was built with m 8, ef_construction 80, not 32, 80")
    rebuilt(
        FaissIndex.build(gallery, "hnsw"), "was built with m 32, ef_construction 80, not 32, 64", ef_construction=64
    )
    poisoned = FaissIndex.build(gallery, "hnsw")
    links = faiss.rev_swig_ptr(poisoned.index.hnsw.neighbors.data(), poisoned.index.hnsw.neighbors.size())
    links[links >= 0] = 0  # every link leads to row 0: valid numbers, a useless graph
    rebuilt(poisoned, "finds only 1% of 256 sampled rows when searched for them")


def test_hnsw_mismatch_checks_rows_and_graph():
    import faiss

    gallery, _ = clustered(ids=50, per_id=10, queries=1)
    index = FaissIndex.build(gallery, "hnsw", m=8)
    assert index.mismatch(gallery) is None
    assert index.mismatch(gallery[:-1]) == "holds 500 x 64, the gallery 499 x 64"
    hnsw = index.index.hnsw
    links = faiss.rev_swig_ptr(hnsw.neighbors.data(), hnsw.neighbors.size())
    saved = links[5]
    links[5] = 500
    assert index.mismatch(gallery) == "has graph links to nodes outside 0..499"
    links[5] = saved
    entry = hnsw.entry_point
    hnsw.entry_point = 500
    assert index.mismatch(gallery) == "has a graph entry point 500 that is not a node on its top level"
    hnsw.entry_point = entry
    levels = faiss.rev_swig_ptr(hnsw.levels.data(), hnsw.levels.size())
    levels[7] += 1
    assert index.mismatch(gallery) == "has a graph whose link lists do not fit its levels"
    levels[7] -= 1
    assert index.mismatch(gallery) is None


def test_recognize_with_hnsw_and_auto_on_real_photos(cli, shared_data, random_recognizer, scrfd, tmp_path):
    """A gallery of real faces: --index hnsw finds an enrolled photo's face and caches its index; auto (exact at
    this size) gives the same record."""
    db = tmp_path / "people.h5"
    assert cli("build-db", shared_data / KNN / "train", scrfd, random_recognizer, db).exit_code == 0
    photo = next((shared_data / KNN / "train/rose_leslie").iterdir())
    hnsw = cli("recognize", photo, db, scrfd, random_recognizer, "--index", "hnsw")
    assert hnsw.exit_code == 0, hnsw.output
    (face,) = json.loads(hnsw.stdout)["faces"]
    assert face["identity"] == "rose_leslie" and face["similarity"] > 0.999
    assert len(list(tmp_path.glob("people.h5.hnsw.*.faiss"))) == 1
    assert json.loads(cli("recognize", photo, db, scrfd, random_recognizer).stdout) == json.loads(hnsw.stdout)
    bad = cli("recognize", photo, db, scrfd, random_recognizer, "--index", "annoy")
    assert bad.exit_code == 2 and "'annoy' is not one of 'auto', 'exact', 'flat', 'ivf', 'hnsw', 'lsh'" in bad.output


def test_bench_indexes_table():
    """bench/bench_gallery.py --table indexes on a tiny gallery: exact with its GEMM ceiling, then HNSW's and LSH's
    rows (tests/test_bench_smoke.py runs its peers table)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench/bench_gallery.py"
    args = ["--table", "indexes", "--sizes", "2000", "--singles", "3", "--repeats", "1", "--threads", "1",
            "--approximate", "hnsw,lsh", "--ef-search", "16", "--lsh", "128:64"]  # fmt: skip
    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, check=True).stdout
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| 2,000 x 512 |")]
    assert [row[1] for row in rows] == [
        "exact", "hnsw (M 32, efC 80, efS 16)", "hnsw (M 32, efC 80, efS 256)", "lsh (128 bits, rerank 64)"
    ]  # fmt: skip
    assert rows[0][4:6] == ["1.000", "1.000"] and "GFLOP/s, exact" in rows[0][8]
    assert all(0.9 <= float(row[4]) <= 1 and float(row[3]) > 3.9 for row in rows[1:3])  # 2000 x 512 x 4 B = 3.9 MiB
    assert 0.9 <= float(rows[3][4]) <= 1 and rows[3][3] == "0"  # 16 B codes + a 512 x 128 rotation: 0.28 MiB
