"""evaluate-gallery: enrol a folder of people, search a folder of probes, measure open-set identification.

Both folders hold one sub-folder per person. Probes of people without a gallery folder are the unknowns the
threshold must reject. Every photo gives one face (the largest), aligned like build-db does; the recognizer and,
optionally, the eigenfaces baseline (fitted on other people's aligned crops) embed the same crops.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facekit.errors import LayoutError
from facekit.gallery.build import BuildReport, one_face_each
from facekit.gallery.evaluate import IdentificationResult, identification_metrics
from facekit.gallery.store import mean_templates
from facekit.runtime.pipeline import FacePipeline


@dataclass
class FaceCrops:
    """One aligned face per usable photo: crops uint8 [M, S, S, 3], names [M], and the photos left out."""

    crops: np.ndarray
    names: list[str]
    skipped: list[str] = field(default_factory=list)


@dataclass
class GalleryEvaluation:
    results: dict[str, IdentificationResult]  # method name ("facekit", "eigenfaces") -> metrics
    gallery_faces: int
    probe_faces: int
    skipped: list[str]

    def as_dict(self) -> dict:
        return {
            "gallery_faces": self.gallery_faces,
            "probe_faces": self.probe_faces,
            "skipped": self.skipped,
            "results": {name: r.as_dict() for name, r in self.results.items()},
        }


def collect_crops(
    entries: Sequence[tuple[Path, str]], pipeline: FacePipeline, pick: str = "largest", desc: str = "faces"
) -> FaceCrops:
    """Detect and align one face per (photo, name) as build-db does; unreadable photos and photos without a face are
    skipped."""
    report = BuildReport()
    picked = list(one_face_each([path for path, _ in entries], pipeline, report, pick, desc))
    skipped = report.unreadable + [f"{path}: no face found" for path in report.no_face]
    names = [entries[i][1] for i, *_ in picked]
    size = pipeline.recognizer.input_size
    crops = np.stack([crop for *_, crop in picked]) if picked else np.zeros((0, size, size, 3), np.uint8)
    return FaceCrops(crops, names, skipped)


def identity_scores(
    gallery: np.ndarray, labels: np.ndarray, identities: int, probes: np.ndarray, match: str = "image"
) -> np.ndarray:
    """Similarity of each probe [P, D] to each of `identities` people given gallery embeddings [N, D] with
    labels [N]: the best of the person's photos (match "image") or their mean template: [P, K]."""
    if match == "template":
        return probes @ mean_templates(gallery, labels, identities).T
    scores = np.full((len(probes), identities), -np.inf, np.float32)
    np.maximum.at(scores.T, labels, (probes @ gallery.T).T)
    return scores


def evaluate_gallery(
    gallery_dir: str | os.PathLike,
    probe_dir: str | os.PathLike,
    pipeline: FacePipeline,
    *,
    threshold: float,
    match: str = "image",
    baselines: dict[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    baseline_thresholds: dict[str, float] | None = None,
) -> GalleryEvaluation:
    """Metrics of the pipeline's recognizer ("facekit", at `threshold`) and of each baseline embedder (crops ->
    L2-normalised embeddings; at its own threshold from `baseline_thresholds`) on the same crops."""
    from facekit.gallery.sources import enrolment_list

    enrolled, _ = enrolment_list(gallery_dir)
    probes, _ = enrolment_list(probe_dir)
    gallery = collect_crops(enrolled, pipeline, desc="gallery")
    queries = collect_crops(probes, pipeline, desc="probes")
    identities = sorted(set(gallery.names))
    if not identities or not queries.names:
        raise LayoutError(f"{gallery_dir} / {probe_dir}: no usable face in the gallery or among the probes")
    position = {name: i for i, name in enumerate(identities)}
    labels = np.array([position[n] for n in gallery.names])
    probe_labels = np.array([position.get(n, -1) for n in queries.names])
    embedders = {"facekit": lambda crops: pipeline.recognizer.embed(crops, flip=pipeline.flip), **(baselines or {})}
    thresholds = {"facekit": threshold, **(baseline_thresholds or {})}
    missing = sorted(set(embedders) - set(thresholds))
    if missing:
        raise ValueError(f"no threshold for baseline(s) {', '.join(missing)}")
    results = {}
    for name, embed in embedders.items():
        scores = identity_scores(embed(gallery.crops), labels, len(identities), embed(queries.crops), match)
        results[name] = identification_metrics(scores, probe_labels, thresholds[name])
    return GalleryEvaluation(results, len(gallery.names), len(queries.names), gallery.skipped + queries.skipped)


def calibrate_threshold(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """The cosine threshold that best separates same-person from different-person pairs of training faces
    (embeddings [N, D], labels [N]): maximum balanced accuracy (mean of TPR and TNR) over all pairs."""
    sims = embeddings @ embeddings.T
    upper = np.triu_indices(len(labels), 1)
    scores, same = sims[upper], (labels[:, None] == labels[None, :])[upper]
    if same.all() or not same.any():
        raise ValueError("calibration needs pairs of the same and of different people")
    order = np.argsort(-scores, kind="stable")
    tpr = np.cumsum(same[order]) / same.sum()  # accepting the first i + 1 pairs
    tnr = 1 - np.cumsum(~same[order]) / (~same).sum()
    best = int(np.argmax(tpr + tnr))
    return float(scores[order][best])
