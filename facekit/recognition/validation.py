"""The verification sets of a training run: which people they show, whether the training data shows them too, and
the one set the recognizer's threshold is calibrated on."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facekit.data.verification import VerificationSet, bin_people, load_bin
from facekit.recognition.calibration import Calibration, calibrate
from facekit.recognition.trainset import training_people

log = logging.getLogger("facekit.train_recognize")


@dataclass
class ValidationSet:
    """A .bin and its people (None: unknown, no sidecar); shared: those also in the training data (None: unknown)."""

    path: Path
    pairs: VerificationSet
    people: list[str] | None
    shared: list[str] | None

    def as_dict(self) -> dict:
        return {
            "path": str(self.path),
            "pairs": len(self.pairs),
            "people": self.people,
            "shared_with_training": self.shared,
        }


def verification_sets(data_path: Path, extra: list[str], source) -> dict[str, ValidationSet]:
    """Every .bin in `data_path` and each of `extra`, by name (file stem); warns about people the training data
    (`source`) also shows, and logs whose people are unknown."""
    paths = sorted(data_path.glob("*.bin")) + [Path(p) for p in extra]
    if not paths:
        return {}
    trained = training_people(source)
    if trained is None:
        log.info(
            "the people of the training data are unknown (no identity folders, no cele.lst of person/file paths): "
            "cannot check the verification sets for people seen in training"
        )
    sets = {}
    for path in paths:
        people = bin_people(path)
        shared = sorted(set(people) & set(trained), key=str) if people is not None and trained is not None else None
        if people is None:
            log.info("%s: its people are unknown (no sidecar %s)", path, path.with_suffix(".json").name)
        elif shared:
            log.warning(
                "%s shares %d of its %d people with the training data (%s%s): its accuracy and a threshold calibrated "
                "on it are optimistic",
                path,
                len(shared),
                len(people),
                ", ".join(shared[:5]),
                ", ..." if len(shared) > 5 else "",
            )
        sets[path.stem] = ValidationSet(path, load_bin(path), people, shared)
    if len(sets) > 1:
        log.info("the threshold is calibrated on %s (of %s)", sets[calibration_set(sets)].path, ", ".join(sets))
    return sets


def calibration_set(sets: dict[str, ValidationSet]) -> str:
    """The set the threshold is calibrated on: the one with most pairs (the first of equals), preferring sets that
    share no known people with the training data."""
    return min(sets, key=lambda name: (bool(sets[name].shared), -len(sets[name].pairs)))


def calibrate_on(sets: dict[str, ValidationSet], embeddings: dict[str, np.ndarray]) -> Calibration:
    """The best-accuracy threshold on calibration_set(sets), from its pairs' embeddings [2P, D] (L2-normalised)."""
    name = calibration_set(sets)
    v, emb = sets[name], embeddings[name]
    similarities = np.sum(emb[0::2] * emb[1::2], axis=1)
    return calibrate(similarities, np.asarray(v.pairs.issame, bool), source=str(v.path), people=v.people)
