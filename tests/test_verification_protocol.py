"""insightface's verification protocol (facekit.recognition.verification) and the eigenfaces baseline."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from facekit.data.images import decode_image
from facekit.data.recset import open_recognition_set
from facekit.data.verification import VerificationSet, load_bin
from facekit.errors import DataFormatError
from facekit.recognition.eigenfaces import Eigenfaces
from facekit.recognition.verification import (
    cosine_to_distance,
    distance_to_cosine,
    embed_pairs,
    fold_indices,
    plot_roc,
    roc_curve,
    verification_metrics,
)


def pairs_at(distances: list[float] | np.ndarray) -> np.ndarray:
    """Unit vectors [2P, 2] whose pair i has squared L2 distance distances[i] (cos = 1 - d / 2)."""
    cos = 1 - np.asarray(distances, np.float64) / 2
    out = np.zeros((2 * len(cos), 2))
    out[0::2, 0] = 1
    out[1::2] = np.stack([cos, np.sqrt(1 - cos**2)], 1)
    return out


def test_pairs_at_gives_the_distances() -> None:
    e = pairs_at([0.25, 1.0, 3.5])
    assert np.allclose(np.sum((e[0::2] - e[1::2]) ** 2, 1), [0.25, 1.0, 3.5])


def test_fold_indices_are_sklearns_sequential_kfold() -> None:
    from sklearn.model_selection import KFold

    assert [len(f) for f in fold_indices(400, 10)] == [40] * 10
    assert [len(f) for f in fold_indices(23, 10)] == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]
    for ours, (_, theirs) in zip(fold_indices(23, 10), KFold(10, shuffle=False).split(np.arange(23)), strict=True):
        assert ours.tolist() == theirs.tolist()
    assert [f.tolist() for f in fold_indices(3, 1)] == [[0, 1, 2]]
    with pytest.raises(ValueError, match="cannot make 10 folds of 9 pairs"):
        fold_indices(9, 10)


def test_hand_worked_best_threshold() -> None:
    # Sorted: 0.25 same, 0.45 diff, 0.55 same, 0.75 same, 0.95 diff, 1.65 diff. "Same iff d < t" is best (5/6) for t
    # in (0.75, 0.95]; the lowest grid threshold there is 0.76.
    issame = [True, True, True, False, False, False]
    result = verification_metrics(pairs_at([0.25, 0.55, 0.75, 0.45, 0.95, 1.65]), issame, nfolds=1)
    assert result.accuracy == pytest.approx(5 / 6)
    assert result.threshold == pytest.approx(0.76)
    assert result.cosine_threshold == pytest.approx(0.62)


def test_hand_worked_folds() -> None:
    # Fold 0 = pairs 0, 1 (same 0.3, diff 1.0); fold 1 = pairs 2, 3 (same 0.6, diff 1.5). Fold 0 is scored at the
    # threshold fold 1 picks (0.61: both right); fold 1 at fold 0's (0.31: rejects the same pair at 0.6).
    result = verification_metrics(pairs_at([0.3, 1.0, 0.6, 1.5]), [True, False, True, False], nfolds=2)
    assert result.fold_threshold == pytest.approx([0.61, 0.31])
    assert result.fold_accuracy == pytest.approx([1.0, 0.5])
    assert (result.accuracy, result.accuracy_std, result.threshold) == pytest.approx((0.75, 0.25, 0.46))


def test_separable_embeddings() -> None:
    rng = np.random.default_rng(0)
    people = rng.normal(size=(600, 128))
    issame = rng.random(300) < 0.5
    a = people[0::2]
    b = np.where(issame[:, None], a + 0.05 * rng.normal(size=a.shape), people[1::2])
    embeddings = np.empty((600, 128))
    embeddings[0::2], embeddings[1::2] = a, b
    result = verification_metrics(embeddings, issame)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    d = np.sum((unit[0::2] - unit[1::2]) ** 2, 1)
    assert result.accuracy == 1.0 and result.accuracy_std == 0.0
    assert d[issame].max() < result.fold_threshold.min() and result.fold_threshold.max() <= d[~issame].min()
    assert result.auc == 1.0
    assert len(result.fold_accuracy) == 10


def test_random_embeddings_are_at_chance() -> None:
    rng = np.random.default_rng(1)
    result = verification_metrics(rng.normal(size=(4000, 64)), rng.random(2000) < 0.5)
    assert 0.45 < result.accuracy < 0.55
    assert 0.45 < result.auc < 0.55


def test_roc_matches_sklearn_with_ties() -> None:
    from sklearn.metrics import roc_auc_score
    from sklearn.metrics import roc_curve as sk_roc_curve

    rng = np.random.default_rng(2)
    distances = rng.integers(0, 8, 200) / 2  # many ties
    issame = rng.random(200) < distances / 4
    fpr, tpr, thresholds = roc_curve(distances, issame)
    sk_fpr, sk_tpr, sk_thresholds = sk_roc_curve(issame, -distances, drop_intermediate=False)
    assert fpr == pytest.approx(sk_fpr) and tpr == pytest.approx(sk_tpr)
    assert thresholds[1:] == pytest.approx(-sk_thresholds[1:])
    result = verification_metrics(pairs_at(distances), issame)
    assert result.auc == pytest.approx(roc_auc_score(issame, -distances))


def test_tar_at_far_hand_worked() -> None:
    # 2000 different pairs, 3 of them at 0.5005: FAR <= 1e-3 allows 2 false accepts, so t = 0.500 (the largest grid
    # threshold accepting none of them). 60% of the same pairs lie below it.
    distances = np.r_[np.full(3, 0.5005), np.full(1997, 3.0005), np.full(600, 0.2505), np.full(400, 1.0005)]
    issame = np.r_[np.zeros(2000, bool), np.ones(1000, bool)]
    result = verification_metrics(pairs_at(distances), issame, nfolds=1)
    assert (result.tar, result.tar_std, result.far) == pytest.approx((0.6, 0.0, 0.0))


def test_tar_at_far_needs_enough_negatives() -> None:
    result = verification_metrics(pairs_at(np.r_[np.full(500, 0.1), np.full(500, 3.0)]), np.arange(1000) % 2 == 0)
    assert result.tar is None and result.far is None  # 450 negatives per training split < 1 / 1e-3
    assert json.loads(json.dumps(result.as_dict(), allow_nan=False))["tar@far=0.001"] is None


def test_cosine_and_distance() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(2, 100, 16))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    cos = np.sum(a * b, 1)
    assert cosine_to_distance(cos) == pytest.approx(np.sum((a - b) ** 2, 1))
    assert distance_to_cosine(cosine_to_distance(cos)) == pytest.approx(cos)
    assert (distance_to_cosine(0.0), distance_to_cosine(2.0), distance_to_cosine(4.0)) == (1.0, 0.0, -1.0)


def test_metrics_input_errors() -> None:
    with pytest.raises(ValueError, match="3 issame labels for 2 pairs"):
        verification_metrics(pairs_at([0.1, 0.2]), [True, False, True], nfolds=1)
    with pytest.raises(ValueError, match="expected embeddings"):
        verification_metrics(np.ones((3, 4)), [True], nfolds=1)
    with pytest.raises(ValueError, match="embedding 1 is zero"):
        verification_metrics(np.array([[1.0, 0.0], [0.0, 0.0]]), [True], nfolds=1)


def half_brightness(crops: np.ndarray) -> np.ndarray:
    """A toy embed_fn: the unit vector of (mean of the left half, mean of the right half): [N, 2]."""
    w = crops.shape[2] // 2
    e = np.stack([crops[:, :, :w].mean((1, 2, 3)), crops[:, :, w:].mean((1, 2, 3))], 1) + 1
    return e / np.linalg.norm(e, axis=1, keepdims=True)


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


@pytest.fixture
def halves() -> tuple[VerificationSet, np.ndarray]:
    """5 pairs of 8x8 crops with a left and a right grey level each, losslessly encoded; and the crops [10, 8, 8, 3]."""
    levels = np.random.default_rng(4).integers(0, 255, (10, 2))
    crops = np.zeros((10, 8, 8, 3), np.uint8)
    crops[:, :, :4] = levels[:, 0, None, None, None]
    crops[:, :, 4:] = levels[:, 1, None, None, None]
    return VerificationSet([png(c) for c in crops], [True, False] * 2 + [True]), crops


def test_embed_pairs_keeps_order_across_batches(halves) -> None:
    vset, crops = halves
    assert embed_pairs(vset, half_brightness, batch_size=3) == pytest.approx(half_brightness(crops))


def test_embed_pairs_flip(halves) -> None:
    vset, crops = halves
    calls = []

    def recording(batch: np.ndarray) -> np.ndarray:
        calls.append(batch)
        return half_brightness(batch)

    flipped = embed_pairs(vset, recording, batch_size=4, flip=True)
    assert [len(c) for c in calls] == [4, 4, 4, 4, 2, 2]  # each batch, then its mirror image
    assert calls[1] == pytest.approx(calls[0][:, :, ::-1])
    expected = half_brightness(crops) + half_brightness(crops[:, :, ::-1])
    assert flipped == pytest.approx(expected / np.linalg.norm(expected, axis=1, keepdims=True))
    assert flipped[:, 0] == pytest.approx(flipped[:, 1])  # left/right symmetric after the flip test


def test_embed_pairs_names_an_unreadable_image(halves) -> None:
    vset, _ = halves
    vset.images[7] = b"not an image"
    with pytest.raises(DataFormatError, match=r"^x\.bin: image 7: cannot decode"):
        embed_pairs(vset, half_brightness, batch_size=3, source="x.bin")


def test_embed_pairs_needs_one_crop_size(halves) -> None:
    vset, _ = halves
    vset.images[4] = png(np.zeros((8, 10, 3), np.uint8))
    with pytest.raises(DataFormatError, match=r"^x\.bin: image 4 is 10x8, image 0 is 8x8"):
        embed_pairs(vset, half_brightness, batch_size=3, source="x.bin")


def test_embed_pairs_checks_embed_fn_output(halves) -> None:
    vset, _ = halves
    with pytest.raises(ValueError, match=r"embed_fn returned shape \(2,\) for 3 crops"):
        embed_pairs(vset, lambda crops: np.ones(2), batch_size=3)


def test_plot_roc_without_negatives(tmp_path) -> None:
    only_positive = verification_metrics(pairs_at(np.full(10, 0.3)), [True] * 10)
    assert only_positive.accuracy == 1.0 and np.isnan(only_positive.auc)
    assert cv2.imread(str(plot_roc({"all same": only_positive}, tmp_path / "roc.png"))) is not None


# --- real data: ORL s1-s30 for fitting, orl_val.bin (s31-s40) for verifying -----------------------------------------


@pytest.fixture(scope="module")
def eigenfaces(shared_data) -> Eigenfaces:
    """Eigenfaces (default settings) fitted on the 300 crops of ORL s1-s30 in recognition_train_data."""
    with open_recognition_set(shared_data / "layouts/recognition_train_data") as rset:
        crops = np.stack([decode_image(rset[i][1], f"cele.rec: image {i}") for i in range(len(rset))])
    assert crops.shape == (300, 112, 112, 3)
    return Eigenfaces.fit(crops)


def test_eigenfaces_embedding(eigenfaces) -> None:
    crops = np.random.default_rng(5).integers(0, 256, (3, 112, 112, 3), np.uint8)
    e = eigenfaces.embed(crops)
    assert e.shape == (3, eigenfaces.dim) and np.linalg.norm(e, axis=1) == pytest.approx(1.0)
    assert 100 < eigenfaces.dim < 300


def test_eigenfaces_baseline_on_unseen_people(eigenfaces, shared_data, tmp_path) -> None:
    """The baseline a trained recognizer must beat: 0.8875 +- 0.0375 at distance 1.630 (cosine 0.185), AUC 0.941."""
    path = shared_data / "layouts/recognition_train_data/orl_val.bin"
    vset = load_bin(path)
    result = verification_metrics(embed_pairs(vset, eigenfaces.embed, source=path), vset.issame)
    assert (result.pairs, result.positives) == (400, 200)
    assert 0.85 <= result.accuracy <= 0.92
    assert 0.9 <= result.auc <= 0.97
    assert 1.4 <= result.threshold <= 1.8 and result.cosine_threshold == pytest.approx(1 - result.threshold / 2)
    assert result.tar is None  # 180 negatives per training split cannot measure FAR = 1e-3
    json.dumps(result.as_dict(), allow_nan=False)
    chance = verification_metrics(np.random.default_rng(6).normal(size=(800, 8)), vset.issame)
    out = plot_roc({"eigenfaces": result, "random": chance}, tmp_path / "roc.png", title="orl_val.bin")
    image = cv2.imread(str(out))
    assert image is not None and image.shape == (600, 720, 3)


def test_insightface_small_lfw_goes_through(eigenfaces, shared_data) -> None:
    path = shared_data / "fixtures/insightface_small_lfw_bin/small_lfw.bin"
    vset = load_bin(path)
    embeddings = embed_pairs(vset, eigenfaces.embed, flip=True, source=path)
    assert embeddings.shape == (20, eigenfaces.dim) and np.linalg.norm(embeddings, axis=1) == pytest.approx(1.0)
    assert verification_metrics(embeddings, vset.issame).positives == 10
