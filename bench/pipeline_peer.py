"""bench/bench_pipeline.py's peer and yardsticks: insightface's FaceAnalysis on the same ONNX files, run and timed
the way facekit is, and how far two pipelines agree (boxes, landmarks, crops, embeddings, identities); plus the
Markdown table both scripts print."""

from __future__ import annotations

import json
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from unittest import mock

import cv2
import numpy as np

if TYPE_CHECKING:
    from insightface.app import FaceAnalysis
    from onnxruntime import SessionOptions

    from facekit.gallery.store import Gallery
    from facekit.runtime.pipeline import FacePipeline

CPU = ["CPUExecutionProvider"]
SPINNING = "session.intra_op.allow_spinning"  # onnxruntime session config key, "1" by default


class Stopwatch:
    """Seconds summed by stage: told by facekit's pipeline (`add`, its on_stage hook), or spent inside wrapped
    callables (insightface's, which has no such hook)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] += seconds

    def wrap(self, stage: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - start

        return timed


@dataclass
class Pass:
    """One timed pass of a pipeline over the photos: wall seconds, faces found, seconds by stage."""

    seconds: float
    faces: int
    stages: dict[str, float]


def load_insightface(
    detector: Path, recognizer: Path, root: Path, options: SessionOptions | None, det_size: tuple[int, int]
) -> FaceAnalysis:
    """FaceAnalysis over a model pack holding links to exactly the two files (root/models/<name>/), its sessions
    made with `options`; checked to route them to SCRFD and ArcFaceONNX."""
    from insightface.app import FaceAnalysis
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX
    from insightface.model_zoo.scrfd import SCRFD

    pack = root / "models" / "facekit_bench_pipeline"
    pack.mkdir(parents=True)
    (pack / "1_detector.onnx").symlink_to(detector.resolve())
    (pack / "2_recognizer.onnx").symlink_to(recognizer.resolve())
    app = FaceAnalysis(
        name=pack.name,
        root=str(root),
        allowed_modules=["detection", "recognition"],
        providers=CPU,
        sess_options=options,
    )
    app.prepare(ctx_id=-1, det_size=det_size)
    routed = {task: type(model).__name__ for task, model in app.models.items()}
    if not (isinstance(app.models.get("detection"), SCRFD) and isinstance(app.models.get("recognition"), ArcFaceONNX)):
        raise SystemExit(f"insightface routed the files as {routed}; expected SCRFD and ArcFaceONNX")
    return app


def check_sessions(app: FaceAnalysis, pipelines: dict[str, FacePipeline]) -> str:
    """Every session of insightface and of the facekit `pipelines` (by name) on the CPU provider alone, with the same
    intra-op threads and spinning; a description. insightface's SCRFD runs each det_size through a session of its
    own (fixed input shape), made on first use."""
    sessions = {
        "insightface detector": app.det_model.session,
        "insightface recognizer": app.models["recognition"].session,
    }
    for name, pipeline in pipelines.items():
        sessions[f"{name} detector"] = pipeline.detector.session
        sessions[f"{name} recognizer"] = pipeline.recognizer.session
    for size, session in getattr(app.det_model, "resolution_sessions", {}).items():
        sessions[f"insightface detector {size[0]}x{size[1]}"] = session
    seen = set()
    for name, session in sessions.items():
        if session.get_providers() != CPU:
            raise SystemExit(f"{name} runs on {session.get_providers()}, expected {CPU}")
        options = session.get_session_options()
        try:
            spinning = options.get_session_config_entry(SPINNING)
        except RuntimeError:  # not set: onnxruntime's default, spinning
            spinning = "1"
        seen.add((options.intra_op_num_threads, spinning))
    if len(seen) != 1:
        raise SystemExit(f"the sessions differ in (intra-op threads, spinning): {seen}")
    threads = seen.pop()[0]
    return str(threads) if threads else "onnxruntime's default (one per physical core)"


def insightface_recognize(
    path: Path, app: FaceAnalysis, gallery: Gallery, threshold: float, watch: Stopwatch | None = None
) -> list[tuple]:
    """One photo read by OpenCV, through FaceAnalysis.get and the gallery search in numpy: [(face, identity or
    None, similarity)]."""
    clock = time.perf_counter
    t0 = clock()
    image = cv2.imread(str(path))
    t1 = clock()
    faces = app.get(image)
    t2 = clock()
    if faces:
        scores = np.stack([face.normed_embedding for face in faces]) @ gallery.embeddings.T  # [faces, N]
        best = scores.argmax(1)
        similarity = scores[np.arange(len(faces)), best].tolist()
        names = [gallery.identities[i] for i in gallery.identity_index[best]]
    t3 = clock()
    if watch is not None:
        watch.seconds["read"] += t1 - t0
        watch.seconds["search"] += t3 - t2
    if not faces:
        return []
    return [(face, n if s >= threshold else None, s) for face, n, s in zip(faces, names, similarity, strict=True)]


def run_insightface(paths: list[Path], app: FaceAnalysis, gallery: Gallery, threshold: float) -> Pass:
    """FaceAnalysis over the files, its detector and recognizer timed by wrapping their methods (ArcFaceONNX.get
    aligns and calls get_feat, which embeds)."""
    watch = Stopwatch()
    recognizer = app.models["recognition"]
    with ExitStack() as stack:
        for target, attribute, stage in (
            (app.det_model, "detect", "detect"),
            (recognizer, "get", "align"),
            (recognizer, "get_feat", "embed"),
        ):
            stack.enter_context(mock.patch.object(target, attribute, watch.wrap(stage, getattr(target, attribute))))
        start = time.perf_counter()
        faces = sum(len(insightface_recognize(path, app, gallery, threshold, watch)) for path in paths)
        seconds = time.perf_counter() - start
    stages = dict(watch.seconds)
    stages["align"] = stages.get("align", 0.0) - stages.get("embed", 0.0)  # get = align + get_feat
    return Pass(seconds, faces, stages)


def pairs(boxes_a: list[np.ndarray], boxes_b: list[np.ndarray], minimum: float = 0.5) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching of (x1, y1, x2, y2) boxes by IoU (highest first, at least `minimum`): [(index in a,
    index in b, IoU)]."""
    from facekit.detection.overlap import box_iou

    overlaps = box_iou(np.asarray(boxes_a), np.asarray(boxes_b))  # [A, B]
    candidates = sorted(((float(overlaps[i, j]), i, j) for i, j in np.ndindex(overlaps.shape)), reverse=True)
    used_a, used_b, out = set(), set(), []
    for overlap, i, j in candidates:
        if overlap >= minimum and i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            out.append((i, j, overlap))
    return out


def agreement(
    photos: list[Path], pipeline: FacePipeline, app: FaceAnalysis, results: Path, gallery: Gallery, threshold: float
) -> dict:
    """How far the two pipelines agree on `photos` (facekit's results in the JSON Lines file `results`, insightface
    searching `gallery` at `threshold`): faces per photo, IoU of matched boxes, landmark distance, aligned-crop pixel
    difference, embedding cosine, identity; plus the cosine between different faces (facekit's), the floor against
    which the embedding cosine says anything."""
    from insightface.utils.face_align import norm_crop

    records = {}
    with open(results) as f:
        for line in f:
            record = json.loads(line)
            records[record["image"]] = record
    size = pipeline.recognizer.input_size
    same_count, ious, point_px, crop_diff, cosines, same_identity, embeddings = 0, [], [], [], [], 0, []
    for path in photos:
        image = cv2.imread(str(path))
        ours = pipeline.detect(image)
        our_embeddings = pipeline.embed([image] * len(ours), ours)
        embeddings.append(our_embeddings)
        our_identities = [face["identity"] for face in records[str(path)]["faces"]]
        theirs = insightface_recognize(path, app, gallery, threshold)
        same_count += len(ours) == len(theirs)
        for i, j, overlap in pairs([f.box for f in ours], [face.bbox for face, _, _ in theirs]):
            face, identity, _ = theirs[j]
            ious.append(overlap)
            point_px.append(float(np.abs(ours[i].landmarks - face.kps).max()))
            crop = norm_crop(image, landmark=face.kps, image_size=size).astype(np.float32)
            crop_diff.append(float(np.abs(pipeline.crops([image], [ours[i]])[0] - crop).mean()))
            cosines.append(float(our_embeddings[i] @ face.normed_embedding))
            same_identity += our_identities[i] == identity
    ours_all = np.concatenate(embeddings)
    between = (ours_all @ ours_all.T)[~np.eye(len(ours_all), dtype=bool)]
    nan = float("nan")
    return {
        "photos": len(photos),
        "same_count": same_count,
        "matched": len(cosines),
        "iou_min": min(ious, default=nan),
        "points_max_px": max(point_px, default=nan),
        "crop_mean_abs": statistics.fmean(crop_diff) if crop_diff else nan,
        "crop_worst_abs": max(crop_diff, default=nan),
        "cosine_min": min(cosines, default=nan),
        "cosine_mean": statistics.fmean(cosines) if cosines else nan,
        "different_faces_cosine_mean": float(between.mean()) if len(between) else nan,
        "same_identity": same_identity,
    }


def embedding_agreement(photos: list[Path], pipeline: FacePipeline, other: FacePipeline) -> dict:
    """Cosine between the embeddings of `pipeline` and `other` (e.g. its int8 recognizer) of every face `pipeline`
    finds in `photos`, both embedding the same aligned crops."""
    cosines = []
    for path in photos:
        image = cv2.imread(str(path))
        faces = pipeline.detect(image)
        if faces:
            ours, theirs = pipeline.embed([image] * len(faces), faces), other.embed([image] * len(faces), faces)
            cosines += (ours * theirs).sum(1).tolist()
    nan = float("nan")
    return {"faces": len(cosines), "cosine_min": min(cosines, default=nan),
            "cosine_mean": statistics.fmean(cosines) if cosines else nan}  # fmt: skip


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table, columns padded to line up in a terminal too."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])
