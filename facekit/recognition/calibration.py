"""Calibrate a recognizer's open-set threshold on pairs of faces, and say where it came from.

Two faces are called one person when the cosine similarity of their embeddings is >= the threshold. Two rules:

- "best-accuracy": the threshold of the highest balanced accuracy, the mean of TAR and TNR (on a balanced set such
  as insightface's .bin, whose pairs are half "same", that is plain accuracy; on all pairs of identity folders, where
  different-person pairs outnumber same-person ones 10-1000 to 1, plain accuracy would reject every pair).
- "far=<x>": the threshold of the highest TAR whose FAR (false accepts over the different-person pairs) is <= x.
  Measuring x needs at least 1 / x different-person pairs.

Only the rates between neighbouring observed similarities matter, so the threshold is put halfway between the lowest
accepted similarity and the highest rejected one: it does not sit on one pair's score. The far, tar and accuracy of
a Calibration are measured on the calibration pairs at that threshold.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from facekit.data.folders import natural_key, scan_identity_folders
from facekit.data.images import read_image
from facekit.data.verification import bin_people, load_bin
from facekit.errors import DataFormatError, FacekitError
from facekit.recognition.verification import EmbedFn, decode_crops, roc_curve

BEST_ACCURACY = "best-accuracy"
MAX_DIFFERENT_PAIRS = 500_000  # identity folders with more different-person pairs than this give a seeded sample


class CalibrationError(FacekitError):
    """The pairs cannot calibrate a threshold by the asked rule (no same / different pairs, FAR not measurable)."""


@dataclass(frozen=True)
class Calibration:
    """A calibrated threshold and its provenance. threshold: cosine, "same" when cos >= threshold; rule:
    "best-accuracy" or "far=<x>"; far / tar / accuracy (balanced): measured on the calibration pairs at the threshold;
    source: the .bin or the folder of the pairs; pairs / same_pairs: how many pairs, and of them same-person ones;
    people: the people the pairs show (None when unknown, e.g. a .bin without a sidecar); embedder: the model
    whose similarities these are; detector: the one that found and aligned the faces (None: given aligned)."""

    threshold: float
    rule: str
    far: float | None
    tar: float | None
    accuracy: float | None
    source: str
    pairs: int
    people: list[str] | None = None
    same_pairs: int | None = None
    embedder: str | None = None
    detector: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def summary(self) -> str:
        """One line: `threshold 0.3412 (cosine): FAR 0.00098, TAR 0.812 on 3000 pairs (1500 same) of 50 people from
        eval.bin (rule far=0.001)`."""
        rates = ", ".join(
            f"{name} {_num(value)}"
            for name, value in (("FAR", self.far), ("TAR", self.tar), ("balanced accuracy", self.accuracy))
            if value is not None
        )
        if not self.pairs:  # translated, not measured (e.g. dlib's distance threshold)
            return f"threshold {self.threshold:.4f} (cosine): from {self.source}"
        same = f" ({self.same_pairs} same)" if self.same_pairs is not None else ""
        people = f"{len(self.people)} people" if self.people is not None else "unknown people"
        return (
            f"threshold {self.threshold:.4f} (cosine): {rates} on {self.pairs} pairs{same} of {people} from "
            f"{self.source} (rule {self.rule})"
        )


def _num(value: float) -> str:
    return f"{value:.3g}" if value < 0.01 else f"{value:.3f}"


def rule_name(far: float | None) -> str:
    """The rule's name in a Calibration: "best-accuracy", or "far=<x>" (x in %g form)."""
    return BEST_ACCURACY if far is None else f"far={far:g}"


def rule_far(rule: str) -> float | None:
    """The FAR target of a rule name (None for best accuracy): rule_name's inverse."""
    if rule == BEST_ACCURACY:
        return None
    try:
        far = float(rule.removeprefix("far=")) if rule.startswith("far=") else None
    except ValueError:
        far = None
    if far is None or not 0 < far < 1:
        raise ValueError(f"unknown calibration rule {rule!r}; expected {BEST_ACCURACY} or far=<x> with 0 < x < 1")
    return far


def calibrate(
    similarities: np.ndarray,
    issame: np.ndarray,
    *,
    far: float | None = None,
    source: str,
    people: list[str] | None = None,
    embedder: str | None = None,
    detector: str | None = None,
) -> Calibration:
    """The threshold for pairs with cosine similarities float [P] and issame bool [P]: at the highest balanced
    accuracy (far None) or at the highest TAR with FAR <= far (0 < far < 1). Raises CalibrationError when the pairs
    lack same or different pairs, or hold fewer than 1 / far different ones."""
    scores = np.asarray(similarities, np.float64)
    same = np.asarray(issame, bool)
    if scores.ndim != 1 or same.shape != scores.shape:
        raise ValueError(f"expected similarities [P] and issame [P], got {scores.shape} and {same.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("similarities must be finite")
    if far is not None and not 0 < far < 1:
        raise ValueError(f"far must lie in (0, 1), got {far}")
    positives, negatives = int(same.sum()), int((~same).sum())
    if not positives or not negatives:
        raise CalibrationError(
            f"{source}: calibration needs pairs of the same and of different people, got {positives} same and "
            f"{negatives} different pairs"
        )
    if far is not None and negatives * far < 1:
        raise CalibrationError(
            f"{source}: FAR {far:g} cannot be measured on {negatives} different-person pairs (needs >= "
            f"{math.ceil(1 / far)}); use more people or a larger --far"
        )
    # accept the pairs with distance -s <= d: point i of the ROC accepts every similarity >= -thresholds[i]
    fpr, tpr, thresholds = roc_curve(-scores, same)
    if far is None:
        best = int(np.argmax(tpr - fpr))  # balanced accuracy (tpr + 1 - fpr) / 2; ties: the strictest
    else:
        best = int(np.flatnonzero(fpr <= far)[-1])
    threshold = _between(-thresholds, best)
    accepted = scores >= threshold
    tar, fa = float(accepted[same].mean()), float(accepted[~same].mean())
    return Calibration(
        threshold=threshold,
        rule=rule_name(far),
        far=fa,
        tar=tar,
        accuracy=(tar + 1 - fa) / 2,
        source=str(source),
        pairs=len(scores),
        people=None if people is None else [str(p) for p in people],
        same_pairs=positives,
        embedder=embedder,
        detector=detector,
    )


def _between(levels: np.ndarray, i: int) -> float:
    """Halfway between the lowest accepted similarity levels[i] and the next lower one levels[i + 1] (levels [K]:
    +inf, then the distinct similarities, descending; neither rule accepts every pair). Accepting nothing (i = 0)
    puts it just above the highest similarity."""
    if i == 0:
        return float(np.nextafter(levels[1], np.inf))
    return float((levels[i] + levels[i + 1]) / 2)


@dataclass
class PairSet:
    """Faces and the pairs to calibrate on: crops uint8 [N, S, S, 3], pairs int [P, 2] (rows of crops), issame
    bool [P]; source: the .bin or folder they came from; people: their names (None when unknown); detector: the
    one that found and aligned the faces (None: given aligned)."""

    crops: np.ndarray
    pairs: np.ndarray
    issame: np.ndarray
    source: str
    people: list[str] | None
    detector: str | None = None

    def similarities(self, embed: EmbedFn) -> np.ndarray:
        """Cosine similarity of each pair under `embed` (crops -> L2-normalised embeddings [N, D]): float [P]."""
        embeddings = np.asarray(embed(self.crops), np.float64)
        return np.einsum("pd,pd->p", embeddings[self.pairs[:, 0]], embeddings[self.pairs[:, 1]])

    def calibrate(self, embed: EmbedFn, *, far: float | None = None, embedder: str | None = None) -> Calibration:
        """calibrate() on the similarities of this set's pairs under `embed`."""
        return calibrate(self.similarities(embed), self.issame, far=far, source=self.source, people=self.people,
                         embedder=embedder, detector=self.detector)  # fmt: skip


def bin_pair_set(path: str | os.PathLike) -> PairSet:
    """The pairs of an insightface verification .bin; its people from the sidecar `facekit make-bin` writes."""
    vset = load_bin(path)
    if not vset.images:
        raise DataFormatError(f"{path}: no image pairs")
    crops = decode_crops(vset.images, 0, path)
    pairs = np.arange(len(crops)).reshape(-1, 2)
    return PairSet(crops, pairs, np.asarray(vset.issame, bool), str(path), bin_people(path))


def identity_pair_set(
    crops: np.ndarray,
    names: Sequence[str],
    source: str | os.PathLike,
    *,
    max_different: int = MAX_DIFFERENT_PAIRS,
    seed: int = 0,
    detector: str | None = None,
) -> PairSet:
    """Every same-person pair of crops uint8 [N, S, S, 3] of people `names` [N], and every different-person pair,
    or a seeded sample of `max_different` of them when there are more (`detector`: see PairSet)."""
    labels = np.unique(np.asarray(names), return_inverse=True)[1]
    n = len(labels)
    same = [_all_pairs(np.flatnonzero(labels == k)) for k in np.unique(labels)]
    same_pairs = np.concatenate([np.zeros((0, 2), np.int64), *same])
    if n * (n - 1) // 2 - len(same_pairs) <= max_different:
        first, second = np.triu_indices(n, 1)
        keep = labels[first] != labels[second]
        different = np.stack([first[keep], second[keep]], 1)
    else:
        different = _sample_different(labels, max_different, seed)
    pairs = np.concatenate([same_pairs, different])
    issame = np.arange(len(pairs)) < len(same_pairs)
    return PairSet(crops, pairs, issame, str(source), sorted(set(map(str, names)), key=natural_key), detector)


def _all_pairs(rows: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(len(rows), 1)
    return np.stack([rows[i], rows[j]], 1)


def _sample_different(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """`count` distinct pairs (i < j) of rows with different labels, drawn with a seeded generator: int [count, 2]."""
    rng, n, found = np.random.default_rng(seed), len(labels), np.zeros(0, np.int64)
    while len(found) < count:  # the caller has more than `count` different pairs, so this ends
        i, j = rng.integers(0, n, (2, 2 * count))
        keep = labels[i] != labels[j]
        found = np.concatenate([found, np.minimum(i, j)[keep] * n + np.maximum(i, j)[keep]])
        found = found[np.sort(np.unique(found, return_index=True)[1])][:count]  # no repeats, in draw order
    return np.stack([found // n, found % n], 1)


def aligned_folder_crops(root: str | os.PathLike, size: int) -> tuple[np.ndarray, list[str]]:
    """The aligned crops in identity folders `root/<person>/<image>`, each size x size: (uint8 [N, size, size, 3],
    each one's person [N]). An unreadable image or one of another size raises a one-line error."""
    folders = scan_identity_folders(root)
    crops = np.zeros((len(folders), size, size, 3), np.uint8)
    for i, (path, _) in enumerate(folders.items):
        crop = read_image(path)
        if crop.shape[:2] != (size, size):
            raise DataFormatError(
                f"{path}: {crop.shape[1]}x{crop.shape[0]}, not an aligned {size}x{size} crop (raw photos need a "
                "detector to find and align their faces)"
            )
        crops[i] = crop
    return crops, [folders.identities[label] for _, label in folders.items]
