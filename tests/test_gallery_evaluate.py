"""Open-set identification metrics and their CMC / ROC plots, on score matrices worked out by hand."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from facekit.gallery.evaluate import identification_metrics, plot_cmc, plot_identification_roc

# 4 known probes (true identity ranked 1, 2, 6 and 4 on a tie) and 2 unknown ones (best scores 0.6 and 0.4)
SCORES = np.array(
    [
        [0.9, 0.1, 0.2, 0.3, 0.0, 0.1],
        [0.8, 0.7, 0.1, 0.0, 0.0, 0.0],
        [0.5, 0.5, 0.4, 0.6, 0.45, 0.9],
        [0.2, 0.2, 0.2, 0.2, 0.1, 0.1],
        [0.3, 0.6, 0.1, 0.0, 0.0, 0.0],
        [0.2, 0.1, 0.4, 0.0, 0.0, 0.0],
    ]
)
LABELS = np.array([0, 1, 2, 3, -1, -1])


def test_ranks_and_cmc() -> None:
    r = identification_metrics(SCORES, LABELS, threshold=0.5)
    assert (r.probes, r.known_probes, r.unknown_probes, r.identities) == (6, 4, 2, 6)
    assert r.cmc == pytest.approx([0.25, 0.5, 0.5, 0.75, 0.75, 1.0])
    assert (r.rank1, r.rank5) == (0.25, 0.75)


@pytest.mark.parametrize("label", [0, 1])
def test_ties_rank_the_true_identity_last(label: int) -> None:
    r = identification_metrics(np.array([[0.5, 0.5, 0.2]]), np.array([label]), threshold=0.0)
    assert r.cmc == pytest.approx([0.0, 1.0, 1.0])
    assert (r.rank1, r.rank5) == (0.0, 1.0)
    assert r.detection_and_identification_rate == 0.0  # a tied top-1 is not a right answer


def test_rank5_with_fewer_than_five_identities() -> None:
    r = identification_metrics(np.array([[0.1, 0.2, 0.9]]), np.array([0]), threshold=0.0)
    assert r.cmc == pytest.approx([0.0, 0.0, 1.0]) and (r.rank1, r.rank5) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("threshold", "dir_", "fpir", "accuracy"),
    [
        (0.5, 0.25, 0.5, 2 / 6),  # probe 0 identified (0.9); unknown 4 accepted (0.6), unknown 5 rejected (0.4)
        (0.6, 0.25, 0.5, 2 / 6),  # a score equal to the threshold is accepted
        (0.95, 0.0, 0.0, 2 / 6),  # probe 0 is ranked first but below the threshold; both unknowns rejected
        (0.3, 0.25, 1.0, 1 / 6),
    ],
)
def test_open_set_at_threshold(threshold: float, dir_: float, fpir: float, accuracy: float) -> None:
    r = identification_metrics(SCORES, LABELS, threshold=threshold)
    assert r.threshold == threshold
    assert r.detection_and_identification_rate == dir_
    assert r.false_accept_rate == fpir and r.rejection_rate == 1 - fpir
    assert r.open_set_accuracy == pytest.approx(accuracy)


def pairs_case(identities: int, genuine: tuple[float, float], top_impostors: tuple[float, ...]) -> np.ndarray:
    """Scores [4, identities]: probes 0 and 1 known (identities 0 and 1, genuine scores as given), probes 2 and 3
    unknown; top_impostors go to unknown probe 2, every other impostor score is below 0.5."""
    scores = np.random.default_rng(0).uniform(0.0, 0.5, (4, identities))
    scores[0, 0], scores[1, 1] = genuine
    scores[2, 2 : 2 + len(top_impostors)] = top_impostors
    return scores


@pytest.mark.parametrize(
    ("scores", "tar", "threshold"),
    [
        # 102 impostors allow 1 accepted at FAR 1e-2: t = 0.9 accepts the impostor at 0.95; 0.8 would add a second.
        # Choosing t among impostor scores only would give t = 0.95 and TAR 0 for the same FAR.
        (pairs_case(26, (0.9, 0.6), (0.95, 0.8)), 0.5, 0.9),
        (pairs_case(26, (0.9, 0.85), (0.95, 0.8)), 1.0, 0.85),
        # two impostors tie at the top: no threshold accepts a pair at FAR <= 1e-2
        (pairs_case(26, (0.9, 0.6), (0.99, 0.99)), 0.0, np.inf),
    ],
)
def test_tar_at_far_by_hand(scores: np.ndarray, tar: float, threshold: float) -> None:
    r = identification_metrics(scores, np.array([0, 1, -1, -1]), threshold=0.5)
    assert r.tar_at_far == {1e-2: tar, 1e-3: None}  # 102 impostor pairs cannot measure FAR 1e-3
    assert r.threshold_at_far == {1e-2: threshold, 1e-3: None}


@pytest.mark.parametrize(("identities", "measurable"), [(51, True), (50, False)])
def test_too_few_impostors(identities: int, measurable: bool) -> None:
    """2 known probes, no unknown ones: 100 impostor pairs measure FAR 1e-2 (1 of 100 is exactly 1e-2), 98 do not."""
    scores = np.random.default_rng(0).uniform(0.0, 0.5, (2, identities))
    scores[0, [0, 2, 3]] = 0.9, 0.95, 0.8
    scores[1, 1] = 0.7
    r = identification_metrics(scores, np.array([0, 1]), threshold=0.5)
    assert r.tar_at_far[1e-2] == (0.5 if measurable else None)
    assert r.threshold_at_far[1e-2] == (0.9 if measurable else None)


def test_tar_at_far_against_brute_force() -> None:
    """Every observed score as a threshold: the smallest with FAR <= target, and its TAR (scores with many ties)."""
    rng = np.random.default_rng(1)
    scores, labels = rng.integers(0, 10, (30, 12)) / 10, rng.integers(-1, 12, 30)
    targets = (0.2, 0.05, 1e-2)
    r = identification_metrics(scores, labels, threshold=0.5, far_targets=targets)
    genuine = np.zeros(scores.shape, bool)
    genuine[labels >= 0, labels[labels >= 0]] = True
    for target in targets:
        ok = [t for t in np.unique(scores) if (scores[~genuine] >= t).mean() <= target]
        t = min(ok, default=np.inf)
        assert r.threshold_at_far[target] == t
        assert r.tar_at_far[target] == pytest.approx((scores[genuine] >= t).mean())
    known = np.flatnonzero(labels >= 0)
    ranks = [sum(scores[p] >= scores[p, labels[p]]) for p in known]
    assert r.cmc == pytest.approx([np.mean(np.less_equal(ranks, k)) for k in range(1, 13)])


def test_roc_keeps_the_corners() -> None:
    """Genuine 0.9 and 0.8 above both impostors (0.1): (0, 0) -> (0, 0.5) -> (0, 1) -> (1, 1), the middle dropped."""
    r = identification_metrics(np.array([[0.9, 0.1], [0.1, 0.8]]), np.array([0, 1]), threshold=0.5)
    far, tar = r.roc
    assert far.tolist() == [0.0, 0.0, 1.0] and tar.tolist() == [0.0, 1.0, 1.0]


def test_no_known_probes() -> None:
    r = identification_metrics(np.array([[0.3, 0.7], [0.2, 0.1]]), np.array([-1, -1]), threshold=0.5)
    assert (r.known_probes, r.unknown_probes) == (0, 2)
    assert r.rank1 is None and r.rank5 is None and np.isnan(r.cmc).all() and r.cmc.shape == (2,)
    assert r.detection_and_identification_rate is None
    assert r.tar_at_far == {1e-2: None, 1e-3: None}
    assert (r.false_accept_rate, r.rejection_rate, r.open_set_accuracy) == (0.5, 0.5, 0.5)


def test_no_unknown_probes() -> None:
    r = identification_metrics(SCORES[:4], LABELS[:4], threshold=0.5)
    assert r.rejection_rate is None and r.false_accept_rate is None
    assert r.detection_and_identification_rate == r.open_set_accuracy == 0.25


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        (np.zeros(3), np.array([0]), r"expected scores \[P, K\]"),
        (np.zeros((2, 0)), np.array([0, 0]), r"expected scores \[P, K\]"),
        (np.array([[np.nan, 0.0]]), np.array([0]), "finite"),
        (np.zeros((2, 3)), np.array([0]), r"expected integer probe_labels \[2\]"),
        (np.zeros((1, 3)), np.array([0.0]), r"expected integer probe_labels \[1\]"),
        (np.zeros((1, 3)), np.array([3]), r"identity index 0\.\.2"),
        (np.zeros((1, 3)), np.array([-2]), r"identity index 0\.\.2"),
    ],
)
def test_rejects_bad_input(scores: np.ndarray, labels: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        identification_metrics(scores, labels, threshold=0.5)


def test_as_dict_is_json() -> None:
    results = [
        identification_metrics(SCORES, LABELS, threshold=1 / 3),
        identification_metrics(np.array([[0.3, 0.7]]), np.array([-1]), threshold=0.5),
        identification_metrics(pairs_case(26, (0.9, 0.6), (0.99, 0.99)), np.array([0, 1, -1, -1]), threshold=0.5),
    ]
    for r in results:
        json.dumps(r.as_dict(), allow_nan=False)
    first = results[0].as_dict()
    assert first["threshold"] == 0.33333 and first["rank5"] == 0.75 and first["rejection_rate"] == 0.0
    assert first["cmc"] == [0.25, 0.5, 0.5, 0.75, 0.75, 1.0] and set(first["tar_at_far"]) == {"0.01", "0.001"}
    assert results[1].as_dict()["rank1"] is None and results[1].as_dict()["cmc"] == [None, None]
    assert results[2].as_dict()["threshold_at_far"] == {"0.01": None, "0.001": None}
    assert len(identification_metrics(np.eye(30), np.arange(30), threshold=0.5).as_dict()["cmc"]) == 10


def coloured_pixels(image: np.ndarray) -> int:
    """Pixels of a curve (the axes, grid and text are grey)."""
    return int(((image.max(2).astype(int) - image.min(2)) > 60).sum())


@pytest.mark.parametrize("identities", [1, 6, 15, 50])
def test_plots_are_pngs(tmp_path, identities: int) -> None:
    rng = np.random.default_rng(identities)
    labels = np.concatenate([np.arange(identities), [-1, -1]])
    results = {
        name: identification_metrics(rng.uniform(size=(len(labels), identities)) + bonus, labels, threshold=0.5)
        for name, bonus in (("facekit", np.eye(len(labels), identities)), ("eigenfaces", 0.0))
    }
    results["no known probes"] = identification_metrics(np.ones((1, identities)), np.array([-1]), threshold=0.5)
    for plot, name in ((plot_cmc, "cmc.png"), (plot_identification_roc, "roc.png")):
        path = plot(results, tmp_path / name, title=f"{identities} identities")
        image = cv2.imread(str(path))
        assert path == tmp_path / name and image is not None and image.shape == (600, 720, 3)
        assert coloured_pixels(image) > 200


def test_evaluation_records_threshold_sources_and_flags_calibration_people_seen_again() -> None:
    from facekit.gallery.protocol import GalleryEvaluation

    result = identification_metrics(SCORES, LABELS, threshold=0.5)
    sources = {"facekit": {"threshold": 0.5, "rule": "best-accuracy"}, "eigenfaces": {"flag": 0.2}}
    people = {"calibration": ["c1", "g2", "u1"], "gallery": ["g1", "g2"], "unknown": ["u1", "u2"]}
    evaluation = GalleryEvaluation({"facekit": result}, 4, 6, [], sources, people)
    assert evaluation.overlap == ["g2", "u1"]
    facts = json.loads(json.dumps(evaluation.as_dict()))
    assert facts["threshold_source"] == sources and facts["people"] == people
    assert GalleryEvaluation({}, 4, 6, [], {}, {**people, "calibration": ["c1"]}).overlap == []
    assert GalleryEvaluation({}, 4, 6, [], {}, {**people, "calibration": None}).overlap == []
