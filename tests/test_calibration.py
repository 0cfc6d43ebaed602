"""Threshold calibration rules on similarities worked out by hand, and the Calibration record."""

from __future__ import annotations

import numpy as np
import pytest

from facekit.recognition.calibration import Calibration, CalibrationError, calibrate, identity_pair_set
from facekit.recognition.config import RecognizerConfig

# descending similarities; accepting >= each gives (TAR, FAR): 0.9 (.25, 0), 0.8 (.5, 0), 0.7 (.5, .25),
# 0.6 (.75, .25), 0.5 (.75, .5), 0.4 (.75, .75), 0.3 (1, .75), 0.2 (1, 1)
SIMS = np.array([0.5, 0.9, 0.2, 0.8, 0.3, 0.7, 0.6, 0.4])
SAME = np.array([False, True, False, True, True, False, True, False])


def test_best_accuracy_takes_the_strictest_of_tied_thresholds_halfway_to_the_next_pair():
    c = calibrate(SIMS, SAME, source="pairs.bin")
    # TAR - FAR is 0.5 at 0.8 and at 0.6: the stricter one, put halfway between 0.8 and 0.7
    assert c.threshold == pytest.approx(0.75)
    assert (c.tar, c.far, c.accuracy) == (0.5, 0.0, 0.75)
    assert (c.rule, c.pairs, c.same_pairs, c.people, c.source) == ("best-accuracy", 8, 4, None, "pairs.bin")


@pytest.mark.parametrize(("far", "threshold", "tar", "measured"), [(0.25, 0.55, 0.75, 0.25), (0.5, 0.45, 0.75, 0.5),
                                                                   (0.8, 0.25, 1.0, 0.75)])  # fmt: skip
def test_far_rule_takes_the_highest_tar_within_the_far(far, threshold, tar, measured):
    c = calibrate(SIMS, SAME, far=far, source="x", people=["a", "b"])
    assert c.threshold == pytest.approx(threshold)
    assert (c.tar, c.far, c.rule, c.people) == (tar, measured, f"far={far:g}", ["a", "b"])


def test_nothing_accepted_when_every_different_pair_scores_higher():
    c = calibrate(np.array([0.9, 0.8, 0.1]), np.array([False, False, True]), source="x")
    assert c.threshold > 0.9 and c.threshold == pytest.approx(0.9)
    assert (c.tar, c.far) == (0.0, 0.0)


def test_far_needs_enough_different_pairs_and_lies_in_the_open_unit_interval():
    with pytest.raises(
        CalibrationError, match=r"^x: FAR 0.1 cannot be measured on 4 different-person pairs \(needs >= 10\)"
    ):
        calibrate(SIMS, SAME, far=0.1, source="x")
    for far in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="far must lie in"):
            calibrate(SIMS, SAME, far=far, source="x")
    with pytest.raises(CalibrationError, match="got 0 same and 2 different pairs"):
        calibrate(np.array([0.1, 0.2]), np.array([False, False]), source="x")


def test_record_round_trips_and_summarises():
    c = calibrate(SIMS, SAME, far=0.25, source="eval.bin", people=["s31", "s32"])
    assert Calibration.from_dict(c.as_dict()) == c
    assert Calibration.from_dict({**c.as_dict(), "later_field": 1}) == c
    assert c.summary() == (
        "threshold 0.5500 (cosine): FAR 0.250, TAR 0.750, balanced accuracy 0.750 on 8 pairs (4 same) of 2 people "
        "from eval.bin (rule far=0.25)"
    )
    config = RecognizerConfig(backbone="mobilefacenet", threshold=c.threshold, calibration=c.as_dict())
    assert RecognizerConfig.from_dict(config.as_dict()) == config
    assert RecognizerConfig.from_dict({"backbone": "mobilefacenet"}).calibration is None  # models before calibrate
    with pytest.raises(ValueError, match="is not its calibration's"):
        RecognizerConfig(backbone="mobilefacenet", threshold=0.1, calibration=c.as_dict())


def test_identity_pairs_list_every_pair_or_a_seeded_sample():
    names = ["a", "a", "b", "b", "b", "c"]
    crops = np.zeros((6, 2, 2, 3), np.uint8)
    every = identity_pair_set(crops, names, "folders")
    assert every.pairs[every.issame].tolist() == [[0, 1], [2, 3], [2, 4], [3, 4]]
    assert len(every.pairs) == 15 and every.people == ["a", "b", "c"]
    sample = identity_pair_set(crops, names, "folders", max_different=5)
    assert sample.pairs[sample.issame].tolist() == [[0, 1], [2, 3], [2, 4], [3, 4]]
    different = sample.pairs[~sample.issame]
    assert len(different) == 5 and len({tuple(p) for p in different.tolist()}) == 5
    assert all(names[i] != names[j] and i < j for i, j in different)
    assert (identity_pair_set(crops, names, "folders", max_different=5).pairs == sample.pairs).all()
    embed = lambda c: np.eye(6)[[0, 0, 1, 1, 2, 3]]  # noqa: E731  a, a, b, b, b', c: unit vectors
    assert every.similarities(embed).tolist() == [1, 1, 0, 0] + [0] * 11
