"""evaluate-gallery: enrol a folder of people, search a folder of probes, measure open-set identification.

Both folders hold one sub-folder per person. Probes of people without a gallery folder are the unknowns the
threshold must reject. Every photo gives one face (the largest), aligned like build-db does; the recognizer and,
optionally, the eigenfaces baseline (fitted on other people's aligned crops) embed the same crops.

Honest thresholds: each method's is calibrated by one rule (facekit.recognition.calibration) on a calibration set
of people who are neither in the gallery nor among the probes; the metrics record where each threshold came from.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facekit.errors import DataFormatError, LayoutError, MissingDataError
from facekit.gallery.build import BuildReport, one_face_each
from facekit.gallery.evaluate import IdentificationResult, identification_metrics
from facekit.gallery.recognize import DEFAULT_THRESHOLD
from facekit.gallery.sources import enrolment_list
from facekit.gallery.store import mean_templates
from facekit.recognition.calibration import (
    PairSet,
    aligned_folder_crops,
    bin_pair_set,
    identity_pair_set,
    rule_far,
)
from facekit.recognition.verification import EmbedFn
from facekit.runtime.pipeline import FacePipeline

if TYPE_CHECKING:
    from facekit.recognition.eigenfaces import Eigenfaces  # sklearn: imported when fitted


@dataclass
class FaceCrops:
    """One aligned face per usable photo: crops uint8 [M, S, S, 3], names [M], and the photos left out."""

    crops: np.ndarray
    names: list[str]
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Thresholds:
    """Each method's open-set threshold (method name -> cosine) and where it came from (a Calibration dict,
    {"flag": value}, {"model": value} or {"default": value}); calibration_people: the people of the calibration set
    (None when there was none or its people are unknown)."""

    values: dict[str, float]
    sources: dict[str, dict]
    calibration_people: list[str] | None = None


@dataclass
class GalleryEvaluation:
    results: dict[str, IdentificationResult]  # method name ("facekit", "eigenfaces") -> metrics
    gallery_faces: int
    probe_faces: int
    skipped: list[str]
    threshold_sources: dict[str, dict]
    people: dict[str, list[str] | None]  # "calibration", "gallery" (enrolled) and "unknown" (probes only) people

    @property
    def overlap(self) -> list[str]:
        """Calibration people who are also gallery or probe people: their threshold is not an honest one."""
        calibration = set(self.people["calibration"] or ())
        return sorted(calibration & {*self.people["gallery"], *self.people["unknown"]})

    def as_dict(self) -> dict:
        return {
            "gallery_faces": self.gallery_faces,
            "probe_faces": self.probe_faces,
            "skipped": self.skipped,
            "people": self.people,
            "threshold_source": self.threshold_sources,
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
    thresholds: Thresholds,
    match: str = "image",
    baselines: dict[str, EmbedFn] | None = None,
    pick: str = "largest",
) -> GalleryEvaluation:
    """Metrics of the pipeline's recognizer ("facekit") and of each baseline embedder (crops -> L2-normalised
    embeddings) on the same crops, each at its threshold in `thresholds` (see open_set_thresholds). `pick`: the face
    kept from a photo with several (runtime.pipeline.PICKS)."""
    from facekit.data.folders import natural_key

    enrolled, _ = enrolment_list(gallery_dir)
    probes, _ = enrolment_list(probe_dir)
    gallery = collect_crops(enrolled, pipeline, pick, desc="gallery")
    queries = collect_crops(probes, pipeline, pick, desc="probes")
    identities = sorted(set(gallery.names))
    if not identities or not queries.names:
        raise LayoutError(f"{gallery_dir} / {probe_dir}: no usable face in the gallery or among the probes")
    position = {name: i for i, name in enumerate(identities)}
    labels = np.array([position[n] for n in gallery.names])
    probe_labels = np.array([position.get(n, -1) for n in queries.names])
    embedders = {"facekit": lambda crops: pipeline.recognizer.embed(crops, flip=pipeline.flip), **(baselines or {})}
    missing = sorted(set(embedders) - set(thresholds.values))
    if missing:
        raise ValueError(f"no threshold for method(s) {', '.join(missing)}")
    results = {}
    for name, embed in embedders.items():
        scores = identity_scores(embed(gallery.crops), labels, len(identities), embed(queries.crops), match)
        results[name] = identification_metrics(scores, probe_labels, thresholds.values[name])
    people = {
        "calibration": thresholds.calibration_people,
        "gallery": sorted({name for _, name in enrolled}, key=natural_key),
        "unknown": sorted({name for _, name in probes} - {name for _, name in enrolled}, key=natural_key),
    }
    return GalleryEvaluation(
        results, len(gallery.names), len(queries.names), gallery.skipped + queries.skipped,
        {name: thresholds.sources[name] for name in embedders}, people,
    )  # fmt: skip


def calibration_set(
    path: str | os.PathLike, *, size: int, pipeline: FacePipeline | None = None, pick: str = "largest"
) -> tuple[PairSet, list[str]]:
    """The pairs to calibrate a threshold on at `path`: a verification .bin of size x size crops, or identity folders
    of aligned crops (pipeline None) or of photos whose face (`pick`) `pipeline` detects and aligns (all same-person
    pairs and the different-person pairs of identity_pair_set). Returns the set and the photos left out."""
    p = Path(path)
    source = os.path.abspath(p)  # the set is found again from another working directory
    if p.is_file():
        if p.suffix.lower() != ".bin":
            raise LayoutError(f"{p}: expected a verification .bin or a folder of identity folders")
        pairs = bin_pair_set(source)
        if pairs.crops.shape[1:3] != (size, size):
            height, width = pairs.crops.shape[1:3]
            raise DataFormatError(f"{p}: crops of {width}x{height}, the recognizer takes aligned {size}x{size} crops")
        return pairs, []
    if pipeline is None:
        return identity_pair_set(*aligned_folder_crops(p, size), source), []
    entries, _ = enrolment_list(p)
    faces = collect_crops(entries, pipeline, pick, desc="calibration")
    if not faces.names:
        raise LayoutError(f"{p}: no face found in {len(entries)} photos")
    return identity_pair_set(faces.crops, faces.names, source, detector=pipeline.detector.name), faces.skipped


def model_threshold_source(recognizer: object) -> dict:
    """Where a recognizer's own threshold comes from: its Calibration dict, {"model": threshold} (calibrated
    before facekit recorded how) or {"default": DEFAULT_THRESHOLD}."""
    if recognizer.calibration is not None:
        return recognizer.calibration
    if recognizer.threshold is not None:
        return {"model": recognizer.threshold}
    return {"default": DEFAULT_THRESHOLD}


def open_set_thresholds(
    pipeline: FacePipeline,
    baselines: dict[str, EmbedFn],
    *,
    calibration: str | os.PathLike | None = None,
    far: float | None = None,
    threshold: float | None = None,
    pick: str = "largest",
) -> tuple[Thresholds, list[str]]:
    """The threshold of facekit (the pipeline's recognizer) and of each baseline, and the calibration photos left
    out. With `calibration` (see calibration_set; folders hold photos the pipeline detects), every method is
    calibrated on it by one rule (far None: best accuracy). Without, facekit takes `threshold` or its model's
    (default_threshold), and the baselines are calibrated by the model's rule on the set its calibration records."""
    from facekit.gallery.recognize import default_threshold

    recognizer = pipeline.recognizer
    size = recognizer.input_size
    values, sources, pairs, skipped = {}, {}, None, []
    if calibration is not None:
        pairs, skipped = calibration_set(calibration, size=size, pipeline=pipeline, pick=pick)
        embed = lambda crops: recognizer.embed(crops, flip=pipeline.flip)  # noqa: E731
        found = pairs.calibrate(embed, far=far, embedder=recognizer.name)
        values["facekit"], sources["facekit"] = found.threshold, found.as_dict()
    else:
        values["facekit"] = default_threshold(recognizer)[0] if threshold is None else threshold
        sources["facekit"] = model_threshold_source(recognizer) if threshold is None else {"flag": threshold}
        recorded = recognizer.calibration
        if baselines:
            if recorded is None or not Path(recorded["source"]).exists():
                where = "records none" if recorded is None else f"was calibrated on {recorded['source']}, not found"
                raise MissingDataError(
                    f"{', '.join(baselines)} needs a calibration set and {recognizer.name} {where}: give --calibration"
                )
            far = rule_far(recorded["rule"])
            pairs, skipped = calibration_set(
                recorded["source"], size=size, pipeline=pipeline if recorded.get("detector") else None, pick=pick
            )
    for name, embed in baselines.items():
        found = pairs.calibrate(embed, far=far, embedder=name)
        values[name], sources[name] = found.threshold, found.as_dict()
    people = pairs.people if pairs is not None else (recognizer.calibration or {}).get("people")
    return Thresholds(values, sources, people), skipped


def fit_eigenfaces(path: str | os.PathLike) -> Eigenfaces:
    """The eigenfaces baseline fitted on the aligned crops of a training set (recognition_train_data or identity
    folders): use the recognizer's training data."""
    from facekit.data.datasets import open_training_source
    from facekit.data.images import decode_image
    from facekit.recognition.eigenfaces import Eigenfaces

    source, _ = open_training_source(path)
    try:
        crops = np.stack([decode_image(source[i][1], f"{path} item {i}") for i in range(len(source))])
    finally:
        if hasattr(source, "close"):  # a RecordIO set; identity folders hold no open file
            source.close()
    return Eigenfaces.fit(crops)
