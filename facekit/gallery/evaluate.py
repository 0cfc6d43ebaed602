"""Open-set 1:N identification metrics (rank-k, CMC, TAR@FAR, rejection of unknown people) and their plots.

A probe is one face searched against a gallery of K identities; its scores are similarities (larger = more alike)
to each identity. A known probe belongs to one gallery identity, an unknown probe to nobody in the gallery.

- rank of a known probe: how many identities score >= its true identity's score, the true one included. Ties are
  pessimistic: the true identity is ranked after every other identity with the same score. It is found at rank k
  when its rank <= k; CMC[k - 1] is the fraction of known probes found at rank k.
- TAR@FAR, over (probe, identity) pairs: genuine pairs are (known probe, its identity); impostor pairs are (probe,
  every other identity), every pair of an unknown probe included. A pair is accepted when its score >= t. For each
  target FAR, t is the smallest observed score (genuine or impostor) whose FAR over the impostor pairs is <= target,
  which gives the highest TAR any threshold reaches at that FAR; TAR is the fraction of genuine scores >= t.
- Open set, at the caller's threshold: a probe is answered with its top-1 identity when its best score >= threshold,
  and "unknown" otherwise.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facekit import strict_json
from facekit.plot import Axis, render_curves, write_png
from facekit.recognition.verification import ROC_MIN_FAR, roc_curve

FAR_TARGETS = (1e-2, 1e-3)
CMC_JSON_RANKS = 10  # as_dict keeps the CMC up to this rank


@dataclass(frozen=True)
class IdentificationResult:
    """What identification_metrics measured for P probes against K gallery identities. Rates over known probes are
    None without known probes, rates over unknown probes None without unknown probes."""

    probes: int  # P
    known_probes: int
    unknown_probes: int
    identities: int  # K
    rank1: float | None  # closed-set identification rate at rank 1, over known probes
    rank5: float | None  # ... at rank 5 (1.0 when K <= 5)
    cmc: np.ndarray  # [K]: identification rate at rank 1..K (NaN without known probes)
    tar_at_far: dict[float, float | None]  # target FAR -> TAR; None when impostor pairs < 1 / FAR or no genuine pair
    threshold_at_far: dict[float, float | None]  # target FAR -> its score threshold t (inf: accept none)
    threshold: float  # the score threshold of the open-set numbers below
    detection_and_identification_rate: float | None  # DIR: known probes whose top-1 is right and >= threshold
    false_accept_rate: float | None  # FPIR: unknown probes whose best score >= threshold
    rejection_rate: float | None  # unknown probes whose best score < threshold: 1 - false_accept_rate
    open_set_accuracy: float  # all probes answered right: known ones as DIR counts, unknown ones rejected
    roc: tuple[np.ndarray, np.ndarray]  # (FAR [M], TAR [M]) over the pairs, the corners of the exact ROC

    def as_dict(self) -> dict:
        """JSON-able: rates rounded to 5 digits, None (and NaN) as null, the CMC up to rank CMC_JSON_RANKS."""
        return {
            "probes": self.probes,
            "known_probes": self.known_probes,
            "unknown_probes": self.unknown_probes,
            "identities": self.identities,
            "rank1": strict_json.rounded(self.rank1, 5),
            "rank5": strict_json.rounded(self.rank5, 5),
            "cmc": [strict_json.rounded(v, 5) for v in self.cmc[:CMC_JSON_RANKS]],
            "tar_at_far": {f"{far:g}": strict_json.rounded(tar, 5) for far, tar in self.tar_at_far.items()},
            "threshold_at_far": {f"{far:g}": strict_json.rounded(t, 5) for far, t in self.threshold_at_far.items()},
            "threshold": strict_json.rounded(self.threshold, 5),
            "detection_and_identification_rate": strict_json.rounded(self.detection_and_identification_rate, 5),
            "false_accept_rate": strict_json.rounded(self.false_accept_rate, 5),
            "rejection_rate": strict_json.rounded(self.rejection_rate, 5),
            "open_set_accuracy": strict_json.rounded(self.open_set_accuracy, 5),
        }


def identification_metrics(
    scores: np.ndarray, probe_labels: np.ndarray, threshold: float, far_targets: Sequence[float] = FAR_TARGETS
) -> IdentificationResult:
    """Identification metrics (see the module docstring) of scores float [P, K], the similarity of each probe to
    each gallery identity (the caller reduces per-image similarities to per-identity ones, e.g. by max), and
    probe_labels int [P], each probe's gallery identity index, -1 for people not in the gallery."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(probe_labels)
    if scores.ndim != 2 or scores.size == 0:
        raise ValueError(f"expected scores [P, K] with P, K >= 1, got shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    probes, identities = scores.shape
    if labels.shape != (probes,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"expected integer probe_labels [{probes}], got {labels.dtype} {labels.shape}")
    if labels.min() < -1 or labels.max() >= identities:
        raise ValueError(f"probe_labels must be -1 or an identity index 0..{identities - 1}")
    if not all(0 < far <= 1 for far in far_targets):
        raise ValueError(f"FAR targets must lie in (0, 1], got {list(far_targets)}")

    known = np.flatnonzero(labels >= 0)
    true_scores = scores[known, labels[known]]
    ranks = (scores[known] >= true_scores[:, None]).sum(1)  # [known]: pessimistic on ties
    with np.errstate(invalid="ignore"):
        cmc = np.cumsum(np.bincount(ranks, minlength=identities + 1)[1:]) / len(known)
    identified = (ranks == 1) & (true_scores >= threshold)  # [known]
    rejected = scores[labels < 0].max(1, initial=-np.inf) < threshold  # [unknown]

    genuine = np.zeros(scores.shape, bool)
    genuine[known, labels[known]] = True
    far, tar, distances = roc_curve(-scores.ravel(), genuine.ravel())  # distance -s: "same iff s >= -distance"
    impostors = scores.size - len(known)
    tar_at_far, threshold_at_far = {}, {}
    for target in far_targets:
        measurable = len(known) > 0 and impostors * target >= 1
        i = np.flatnonzero(far <= target)[-1] if measurable else None
        tar_at_far[target] = float(tar[i]) if measurable else None
        threshold_at_far[target] = float(-distances[i]) if measurable else None

    return IdentificationResult(
        probes=probes,
        known_probes=len(known),
        unknown_probes=len(rejected),
        identities=identities,
        rank1=_mean(ranks <= 1),
        rank5=_mean(ranks <= 5),
        cmc=cmc,
        tar_at_far=tar_at_far,
        threshold_at_far=threshold_at_far,
        threshold=float(threshold),
        detection_and_identification_rate=_mean(identified),
        false_accept_rate=_mean(~rejected),
        rejection_rate=_mean(rejected),
        open_set_accuracy=float(identified.sum() + rejected.sum()) / probes,
        roc=_corners(far, tar),
    )


def _mean(hits: np.ndarray) -> float | None:
    return float(hits.mean()) if len(hits) else None


def _corners(far: np.ndarray, tar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ROC points [M] less those inside a straight run of horizontal or vertical steps: the same line, drawn
    from at most about twice as many points as there are genuine pairs."""
    up, right = np.diff(tar) > 0, np.diff(far) > 0
    vertical, horizontal = up & ~right, right & ~up
    straight = (vertical[1:] & vertical[:-1]) | (horizontal[1:] & horizontal[:-1])
    keep = np.concatenate([[True], ~straight, [True]])
    return far[keep], tar[keep]


def _label(name: str, text: str) -> str:
    return f"{name}: {text}" if name and text else name or text


def _rank_axis(identities: int) -> Axis:
    """Rank 1..identities: linear with integer ticks up to 20, log10 with ticks at powers of ten beyond."""
    hi = max(identities, 2)
    if hi <= 20:
        step = 1 if hi <= 10 else 2
        return Axis("Rank", 1, hi, [(v, str(v)) for v in sorted({1, *range(step, hi + 1, step)})])
    powers = [10**e for e in range(len(str(hi)))]  # every power of ten <= hi
    return Axis("Rank", 1, hi, [(v, str(v)) for v in powers], log10=True)


def render_cmc(
    results: Mapping[str, IdentificationResult], title: str = "CMC", size: tuple[int, int] = (720, 600)
) -> np.ndarray:
    """A BGR uint8 [H, W, 3] plot of the identification rate over rank 1..K (the largest K of the results; a linear
    axis up to 20, log10 beyond), one line per result and a legend with its rank-1 rate. size: (width, height)."""
    lines = {}
    for name, r in results.items():
        text = "" if r.rank1 is None else f"rank-1 {r.rank1:.4f}"
        lines[_label(name, text)] = (np.arange(1, r.identities + 1, dtype=np.float64), r.cmc)
    x_axis = _rank_axis(max((r.identities for r in results.values()), default=1))
    y_axis = Axis("Identification rate")
    return render_curves(lines, x_axis=x_axis, y_axis=y_axis, title=title, legend_corner="bottom right", size=size)


def plot_cmc(results: Mapping[str, IdentificationResult], path: str | os.PathLike, title: str = "CMC") -> Path:
    """Write render_cmc's plot as a PNG, atomically."""
    return write_png(render_cmc(results, title), path)


def render_identification_roc(
    results: Mapping[str, IdentificationResult], title: str = "ROC", size: tuple[int, int] = (720, 600)
) -> np.ndarray:
    """A BGR uint8 [H, W, 3] plot of TAR over FAR of the (probe, identity) pairs (log axis 1e-4..1; FAR below 1e-4 is
    drawn at 1e-4), one line per result and a legend with its TAR at the smallest measured target FAR.
    size: (width, height)."""
    decades = [10.0**e for e in range(round(math.log10(ROC_MIN_FAR)), 1)]
    x_axis = Axis("False accept rate (FAR)", ROC_MIN_FAR, 1.0, [(v, f"{v:g}") for v in decades], log10=True)
    lines = {}
    for name, r in results.items():
        measured = sorted((far, tar) for far, tar in r.tar_at_far.items() if tar is not None)
        text = f"TAR {measured[0][1]:.4f} @ FAR {measured[0][0]:g}" if measured else ""
        lines[_label(name, text)] = r.roc
    y_axis = Axis("True accept rate (TAR)")
    return render_curves(lines, x_axis=x_axis, y_axis=y_axis, title=title, legend_corner="bottom right", size=size)


def plot_identification_roc(
    results: Mapping[str, IdentificationResult], path: str | os.PathLike, title: str = "ROC"
) -> Path:
    """Write render_identification_roc's plot as a PNG, atomically."""
    return write_png(render_identification_roc(results, title), path)
