"""insightface's face verification protocol (lfw.bin, cfp_fp.bin, agedb_30.bin), and its ROC plot.

Pairs are scored by the squared L2 distance of L2-normalised embeddings, d = |a - b|^2 = 2 - 2 cos(a, b), and
called "same" when d < threshold. Accuracy is 10-fold cross-validated over the pairs in file order (sklearn's
KFold(shuffle=False)): each fold is scored at the threshold of the grid 0, 0.01, ..., 3.99 that is most accurate on
the other nine folds (the lowest such threshold on ties).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facekit import strict_json
from facekit.data.images import decode_image
from facekit.data.verification import VerificationSet
from facekit.errors import DataFormatError
from facekit.plot import Axis, render_curves, write_png

ACCURACY_THRESHOLDS = np.arange(0, 4, 0.01)  # squared L2 distances, as insightface's calculate_roc
FAR_THRESHOLDS = np.arange(0, 4, 0.001)  # finer, as insightface's calculate_val
FAR_TARGET = 1e-3
ROC_MIN_FAR = 1e-4  # the left end of the plotted FAR axis

EmbedFn = Callable[[np.ndarray], np.ndarray]  # uint8 BGR crops [N, H, W, 3] -> L2-normalised float [N, D]


@dataclass(frozen=True)
class VerificationResult:
    """What verification_metrics measured on P pairs (distances are squared L2 of unit vectors, in [0, 4])."""

    accuracy: float  # mean of fold_accuracy
    accuracy_std: float  # population std of fold_accuracy, as insightface reports it
    fold_accuracy: np.ndarray  # [F]: each fold's accuracy at the threshold chosen on the other folds
    fold_threshold: np.ndarray  # [F]: those thresholds (distances)
    threshold: float  # mean of fold_threshold: "same" when distance < threshold
    roc_fpr: np.ndarray  # [K]: false accept rate over all P pairs when accepting distance <= roc_threshold
    roc_tpr: np.ndarray  # [K]: true accept rate, same points; starts at (0, 0) and ends at (1, 1)
    roc_threshold: np.ndarray  # [K]: the distinct pair distances, ascending (-inf first, for the (0, 0) point)
    auc: float  # area under the ROC; NaN without both positive and negative pairs
    tar: float | None  # mean TAR at FAR_TARGET over folds (insightface's "val"); None when not computable
    tar_std: float | None
    far: float | None  # the mean FAR measured on the test folds at those thresholds
    pairs: int
    positives: int

    @property
    def cosine_threshold(self) -> float:
        """The calibrated threshold as a cosine similarity: "same" when cos > cosine_threshold."""
        return distance_to_cosine(self.threshold)

    def as_dict(self) -> dict:
        """JSON-able (NaN becomes None)."""
        return {
            "pairs": self.pairs,
            "positives": self.positives,
            "accuracy": strict_json.rounded(self.accuracy, 6),
            "accuracy_std": strict_json.rounded(self.accuracy_std, 6),
            "threshold": strict_json.rounded(self.threshold, 6),
            "cosine_threshold": strict_json.rounded(self.cosine_threshold, 6),
            "folds": {"accuracy": _rounded_list(self.fold_accuracy), "threshold": _rounded_list(self.fold_threshold)},
            "auc": strict_json.rounded(self.auc, 6),
            f"tar@far={FAR_TARGET:g}": strict_json.rounded(self.tar, 6),
            "tar_std": strict_json.rounded(self.tar_std, 6),
            "far": strict_json.rounded(self.far, 6),
            "roc": {
                "fpr": _rounded_list(self.roc_fpr),
                "tpr": _rounded_list(self.roc_tpr),
                "threshold": _rounded_list(self.roc_threshold),
            },
        }


def _rounded_list(values: np.ndarray) -> list[float | None]:
    return [strict_json.rounded(v, 6) for v in values]


def distance_to_cosine(distance: float | np.ndarray) -> float | np.ndarray:
    """Squared L2 distance of unit vectors -> cosine similarity: cos = 1 - d / 2."""
    return 1 - distance / 2


def cosine_to_distance(cosine: float | np.ndarray) -> float | np.ndarray:
    """Cosine similarity -> squared L2 distance of unit vectors: d = 2 - 2 cos."""
    return 2 - 2 * cosine


def fold_indices(n: int, nfolds: int) -> list[np.ndarray]:
    """The test indices of each fold of sklearn's KFold(nfolds, shuffle=False) over range(n): consecutive runs, the
    first n % nfolds one longer. nfolds 1 is insightface's LFold: a single fold, trained and tested on everything."""
    if not 1 <= nfolds <= n:
        raise ValueError(f"cannot make {nfolds} folds of {n} pairs")
    return np.array_split(np.arange(n), nfolds)


def pair_distances(embeddings: np.ndarray) -> np.ndarray:
    """embeddings [2P, D] (pair i = rows 2i, 2i+1), L2-normalised here -> squared L2 distances [P]."""
    embeddings = np.asarray(embeddings, np.float64)
    if embeddings.ndim != 2 or len(embeddings) % 2:
        raise ValueError(f"expected embeddings [2P, D], got shape {embeddings.shape}")
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    bad = np.flatnonzero(~np.isfinite(norms[:, 0]) | (norms[:, 0] == 0))
    if len(bad):
        raise ValueError(f"embedding {bad[0]} is zero or not finite")
    unit = embeddings / norms
    return np.sum(np.square(unit[0::2] - unit[1::2]), axis=1)


def accepted_counts(distances: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """How many distances are < each threshold: int [T]."""
    return np.searchsorted(np.sort(distances), thresholds, side="left")


def accuracies(distances: np.ndarray, issame: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Accuracy of "same iff distance < t" for each threshold t: distances [P], issame bool [P] -> [T]."""
    true_accepts = accepted_counts(distances[issame], thresholds)
    true_rejects = (~issame).sum() - accepted_counts(distances[~issame], thresholds)
    return (true_accepts + true_rejects) / len(distances)


def roc_curve(distances: np.ndarray, issame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact ROC of "same iff distance <= t" over every distinct distance t: (fpr, tpr, thresholds), each [K],
    from (0, 0) at t = -inf to (1, 1). Rates are NaN when there are no negative (fpr) or positive (tpr) pairs."""
    order = np.argsort(distances, kind="stable")
    d, same = distances[order], issame[order]
    last = np.flatnonzero(np.append(d[1:] != d[:-1], True))  # the last pair of each run of equal distances
    tps = np.concatenate([[0], np.cumsum(same)[last]])
    fps = np.concatenate([[0], np.cumsum(~same)[last]])
    positives, negatives = int(same.sum()), int((~same).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return fps / negatives, tps / positives, np.concatenate([[-np.inf], d[last]])


def tar_at_far(
    distances: np.ndarray, issame: np.ndarray, folds: list[np.ndarray], far_target: float = FAR_TARGET
) -> tuple[float, float, float] | None:
    """insightface's val/far: per fold, the largest threshold of FAR_THRESHOLDS whose FAR on the other folds is
    <= far_target, then the TAR and FAR on this fold. Returns (mean TAR, std TAR, mean FAR), or None when a fold's
    training pairs hold too few negatives to measure far_target (< 1 / far_target) or a test fold lacks positive or
    negative pairs.

    insightface interpolates a threshold in FAR (interp1d 'slinear'); taking the grid threshold (steps 0.001) never
    exceeds the target on the training folds and needs no interpolation over FAR's many repeated values.
    """
    tars, fars = [], []
    for test in folds:
        train = _train_indices(len(distances), test, len(folds))
        negatives = distances[train][~issame[train]]
        if len(negatives) < 1 / far_target or not issame[test].any() or issame[test].all():
            return None
        train_far = accepted_counts(negatives, FAR_THRESHOLDS) / len(negatives)
        threshold = FAR_THRESHOLDS[np.flatnonzero(train_far <= far_target)[-1]]
        accepted = distances[test] < threshold
        tars.append(accepted[issame[test]].mean())
        fars.append(accepted[~issame[test]].mean())
    return float(np.mean(tars)), float(np.std(tars)), float(np.mean(fars))


def _train_indices(n: int, test: np.ndarray, nfolds: int) -> np.ndarray:
    return np.arange(n) if nfolds == 1 else np.setdiff1d(np.arange(n), test)


def verification_metrics(
    embeddings: np.ndarray, issame: list[bool] | np.ndarray, *, nfolds: int = 10
) -> VerificationResult:
    """insightface's verification protocol on embeddings [2P, D] (pair i = rows 2i, 2i+1) and issame [P].

    Accuracy: per fold, the threshold of ACCURACY_THRESHOLDS most accurate on the other folds, applied to this
    fold; mean and std over folds. The reported threshold is the mean of the fold thresholds. The ROC and its AUC
    use all pairs at every distinct distance; TAR@FAR=1e-3 follows tar_at_far.
    """
    distances = pair_distances(embeddings)
    issame = np.asarray(issame, bool)
    if issame.shape != distances.shape:
        raise ValueError(f"{len(issame)} issame labels for {len(distances)} pairs")
    folds = fold_indices(len(distances), nfolds)
    fold_accuracy, fold_threshold = np.zeros(nfolds), np.zeros(nfolds)
    for k, test in enumerate(folds):
        train = _train_indices(len(distances), test, nfolds)
        best = ACCURACY_THRESHOLDS[np.argmax(accuracies(distances[train], issame[train], ACCURACY_THRESHOLDS))]
        fold_threshold[k] = best
        fold_accuracy[k] = accuracies(distances[test], issame[test], np.array([best]))[0]
    fpr, tpr, roc_threshold = roc_curve(distances, issame)
    val = tar_at_far(distances, issame, folds)
    return VerificationResult(
        accuracy=float(fold_accuracy.mean()),
        accuracy_std=float(fold_accuracy.std()),
        fold_accuracy=fold_accuracy,
        fold_threshold=fold_threshold,
        threshold=float(fold_threshold.mean()),
        roc_fpr=fpr,
        roc_tpr=tpr,
        roc_threshold=roc_threshold,
        auc=float(np.trapezoid(tpr, fpr)) if issame.any() and not issame.all() else math.nan,
        tar=val[0] if val else None,
        tar_std=val[1] if val else None,
        far=val[2] if val else None,
        pairs=len(distances),
        positives=int(issame.sum()),
    )


def embed_pairs(
    vset: VerificationSet,
    embed_fn: EmbedFn,
    *,
    batch_size: int = 64,
    flip: bool = False,
    source: str | os.PathLike = "verification .bin",
) -> np.ndarray:
    """Embed the 2P images of a verification set in file order: float [2P, D], L2-normalised.

    embed_fn gets uint8 BGR crops [N, H, W, 3] (all crops of the set must share one size). With flip, each
    embedding is normalise(embed_fn(crop) + embed_fn(horizontally flipped crop)), insightface's flip test.
    An image that does not decode raises ImageDecodeError (a DataFormatError) naming `source` and its index.
    """
    if not vset.images:
        raise DataFormatError(f"{source}: no image pairs")
    chunks, shape = [], None
    for start in range(0, len(vset.images), batch_size):
        crops = decode_crops(vset.images[start : start + batch_size], start, source, shape)
        shape = crops.shape[1:]
        embeddings = _checked(embed_fn(crops), len(crops))
        if flip:
            embeddings = embeddings + _checked(embed_fn(np.ascontiguousarray(crops[:, :, ::-1])), len(crops))
        chunks.append(embeddings)
    embeddings = np.concatenate(chunks)
    return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)


def decode_crops(
    images: list[bytes], start: int, source: str | os.PathLike, shape: tuple[int, ...] | None = None
) -> np.ndarray:
    """uint8 BGR [N, H, W, 3] of images[i], image start + i of the set; each of `shape` (default: the first's)."""
    crops = [decode_image(data, f"{source}: image {start + i}") for i, data in enumerate(images)]
    shape = shape or crops[0].shape
    for i, crop in enumerate(crops):
        if crop.shape != shape:
            raise DataFormatError(
                f"{source}: image {start + i} is {crop.shape[1]}x{crop.shape[0]}, image 0 is {shape[1]}x{shape[0]};"
                " the crops of a verification set must share one size"
            )
    return np.stack(crops)


def _checked(embeddings: np.ndarray, n: int) -> np.ndarray:
    embeddings = np.asarray(embeddings, np.float64)
    if embeddings.ndim != 2 or len(embeddings) != n:
        raise ValueError(f"embed_fn returned shape {embeddings.shape} for {n} crops, expected [{n}, D]")
    return embeddings


def render_roc(
    results: Mapping[str, VerificationResult], title: str = "ROC", size: tuple[int, int] = (720, 600)
) -> np.ndarray:
    """A BGR uint8 [H, W, 3] plot of TAR over FAR (log axis 1e-4..1; FAR below 1e-4 is drawn at 1e-4), one line per
    result and a legend with its accuracy and AUC. size: (width, height)."""
    decades = [10.0**e for e in range(round(math.log10(ROC_MIN_FAR)), 1)]
    far = Axis("False accept rate (FAR)", ROC_MIN_FAR, 1.0, [(v, f"{v:g}") for v in decades], log10=True)
    lines = {}
    for name, r in results.items():
        label = f"acc {r.accuracy:.4f} +- {r.accuracy_std:.4f}, AUC {r.auc:.4f}"
        lines[f"{name}: {label}" if name else label] = (r.roc_fpr, r.roc_tpr)
    tar = Axis("True accept rate (TAR)")
    return render_curves(lines, x_axis=far, y_axis=tar, title=title, legend_corner="bottom right", size=size)


def plot_roc(results: Mapping[str, VerificationResult], path: str | os.PathLike, title: str = "ROC") -> Path:
    """Write render_roc's plot as a PNG, atomically."""
    return write_png(render_roc(results, title), path)
