"""recognize: every face in every photo -> the best gallery identities, or "unknown" below the threshold."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from facekit import strict_json
from facekit.data.images import NoReadablePhotos, photo_errors, photo_failure, read_each
from facekit.fileio import output_stream
from facekit.gallery.store import Gallery
from facekit.runtime.pipeline import FacePipeline

if TYPE_CHECKING:
    from facekit.gallery.search import Searcher

MATCHES = ("image", "template")
FORMATS = ("jsonl", "csv")
# Cosine similarity above which a face is someone in the gallery, for recognizers that carry no calibrated
# threshold (insightface packs): insightface's own examples call ArcFace R50/R100 pairs above ~0.3 one person.
DEFAULT_THRESHOLD = 0.3
CSV_COLUMNS = ["image", "face", "x1", "y1", "x2", "y2", "score", "identity", "similarity"]


def default_threshold(recognizer: object) -> tuple[float, str]:
    """The threshold to use when none is given, and where it comes from: the recognizer's calibrated one (set by
    train-recognize or `facekit calibrate --write`), else DEFAULT_THRESHOLD."""
    calibration = recognizer.calibration
    if calibration is not None:
        return recognizer.threshold, f"calibrated on {Path(calibration['source']).name}, rule {calibration['rule']}"
    if recognizer.threshold is not None:
        return recognizer.threshold, "calibrated by train-recognize"
    return DEFAULT_THRESHOLD, "default for uncalibrated recognizers"


class Matcher:
    """Top-k distinct identities for query embeddings, over the gallery's photos (`match="image"`: an identity
    scores its best photo) or its per-identity templates (`match="template"`)."""

    def __init__(
        self,
        gallery: Gallery,
        *,
        match: str = "image",
        index: str = "exact",
        cache_prefix: Path | None = None,
        params: dict[str, int] | None = None,
    ) -> None:
        if match not in MATCHES:
            raise ValueError(f"unknown match {match!r}; known: {', '.join(MATCHES)}")
        self.identities = gallery.identities
        if match == "template":
            self.vectors, self.labels = gallery.templates(), np.arange(len(gallery.identities))
            prefix = None if cache_prefix is None else cache_prefix.with_name(cache_prefix.name + ".templates")
        else:
            self.vectors, self.labels, prefix = gallery.embeddings, gallery.identity_index, cache_prefix
        self.per_identity = int(np.bincount(self.labels).max()) if len(self.labels) else 1
        self.index, self.cache_prefix, self.params = index, prefix, params or {}
        self.key = None if prefix is None else gallery.content_id

    @cached_property
    def searcher(self) -> Searcher:
        """The index over the vectors, built or loaded on the first match and kept for the run."""
        from facekit.gallery.search import open_index

        return open_index(self.vectors, self.index, cache_prefix=self.cache_prefix, key=self.key, **self.params)

    def match(self, embeddings: np.ndarray, top_k: int) -> list[list[tuple[str, float]]]:
        """embeddings [M, D] -> for each, up to top_k (identity, cosine similarity) pairs, best first."""
        if not len(embeddings):
            return []
        k = min(len(self.vectors), top_k * self.per_identity)  # enough entries to hold top_k distinct identities
        scores, indices = self.searcher.search(embeddings, k)
        results = []
        for row_scores, row_indices in zip(scores, indices, strict=True):
            best: dict[int, float] = {}
            for score, index in zip(row_scores.tolist(), row_indices.tolist(), strict=True):
                if index >= 0 and self.labels[index] not in best:
                    best[int(self.labels[index])] = score
            results.append([(self.identities[i], s) for i, s in list(best.items())[:top_k]])
        return results


@dataclass
class RecognizeReport:
    images: int = 0
    faces: int = 0
    unknown: int = 0
    no_face: int = 0
    found: Counter = field(default_factory=Counter)  # identity -> faces
    unreadable: list[str] = field(default_factory=list)


def recognize_images(
    paths: Sequence[Path],
    pipeline: FacePipeline,
    matcher: Matcher,
    *,
    threshold: float,
    top_k: int = 5,
    out: Path | None = None,
    fmt: str = "jsonl",
    annotated_dir: Path | None = None,
    batch_images: int = 16,
    progress: bool | None = None,
) -> RecognizeReport:
    """Write one record per readable photo (JSON Lines: {"image", "width", "height", "faces": [{"box", "score",
    "landmarks", "identity" (None = unknown), "similarity", "candidates"}]}; CSV: one row per face) to `out`
    (atomically) or stdout. Faces are embedded and searched `batch_images` photos at a time."""
    from facekit.draw import AnnotatedOutput

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    report = RecognizeReport()
    annotated = AnnotatedOutput(annotated_dir, paths) if annotated_dir is not None else None
    with output_stream(out) as sink:
        write = _csv_writer(sink) if fmt == "csv" else lambda record: sink.write(strict_json.dumps(record) + "\n")
        # (path, (height, width), faces, their aligned crops, the photo only when it is drawn on): a batch holds
        # crops, not photos, so memory does not grow with photo size x batch size
        batch: list[tuple[Path, tuple[int, int], list, np.ndarray, np.ndarray | None]] = []
        errors = photo_errors()
        photos = read_each(paths, report.unreadable, "recognize", progress, pipeline.max_pixels)
        for _, path, image in pipeline.timed_each("read", photos):
            try:
                faces = pipeline.detect(image)
                crops = pipeline.crops([image] * len(faces), faces)
            except errors as exc:
                report.unreadable.append(photo_failure(path, exc))
                continue
            batch.append((path, image.shape[:2], faces, crops, image if annotated is not None else None))
            if len(batch) >= batch_images:
                _recognize_batch(batch, pipeline, matcher, threshold, top_k, write, annotated, report)
        _recognize_batch(batch, pipeline, matcher, threshold, top_k, write, annotated, report)
        if paths and not report.images:  # raised inside the block: no empty --out file is left behind
            raise NoReadablePhotos(report.unreadable)
    return report


def face_record(face: object, candidates: list[tuple[str, float]], threshold: float) -> dict:
    """One face's record, for photos and video frames alike: {**face.as_dict(), "identity" (its best candidate at or
    above `threshold`, else None), "similarity" (the best candidate's, -1 without one), "candidates": [{"identity",
    "similarity"}]}, `candidates` being (identity, similarity) pairs, best first."""
    best_name, best = candidates[0] if candidates else (None, -1.0)
    return {
        **face.as_dict(),
        "identity": best_name if best >= threshold else None,
        "similarity": round(best, 5),
        "candidates": [{"identity": n, "similarity": round(s, 5)} for n, s in candidates],
    }


def _recognize_batch(batch, pipeline, matcher, threshold, top_k, write, annotated, report) -> None:
    if not batch:
        return
    embeddings = pipeline.embed_crops(np.concatenate([crops for _, _, _, crops, _ in batch]))
    with pipeline.timed("search"):
        matches = iter(matcher.match(embeddings, top_k))
    for path, (height, width), image_faces, _, image in batch:
        records = []
        for face in image_faces:
            records.append(face_record(face, next(matches), threshold))
            identity = records[-1]["identity"]
            if identity is None:
                report.unknown += 1
            else:
                report.found[identity] += 1
        write({"image": str(path), "width": width, "height": height, "faces": records})
        report.images += 1
        report.faces += len(records)
        report.no_face += not records
        if annotated is not None:
            from facekit.draw import draw_faces

            labels = [f"{r['identity'] or 'unknown'} {r['similarity']:.2f}" for r in records]
            annotated.write(path, draw_faces(image, image_faces, labels))
    batch.clear()


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what spreadsheets read as a formula (OWASP CSV injection)


def csv_text(value: str) -> str:
    """A text cell that a spreadsheet shows as text: a leading ' before = + - @ tab or CR (the OWASP rule)."""
    return "'" + value if value.startswith(FORMULA_START) else value


def _csv_writer(sink: IO):
    """One row per face (and one with empty face columns for a photo without faces); identity "unknown". Text cells
    (photo path, identity) pass through csv_text, so a name like =HYPERLINK(...) is not run as a formula."""
    writer = csv.writer(sink, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)

    def write(record: dict) -> None:
        image = csv_text(record["image"])
        if not record["faces"]:
            writer.writerow([image] + [""] * (len(CSV_COLUMNS) - 1))
        for i, face in enumerate(record["faces"]):
            writer.writerow([image, i, *face["box"], face["score"], csv_text(face["identity"] or "unknown"),
                             face["similarity"]])  # fmt: skip

    return write
