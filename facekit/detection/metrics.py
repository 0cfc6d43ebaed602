"""Detection metrics: greedy matching of detections to ground truth, average precision (VOC all-point) and landmark
NME. The WIDER FACE protocol is in facekit.detection.wider, the run over a split in facekit.detection.evaluate.

Boxes are corners (x1, y1, x2, y2) in pixels; landmarks are [5, 2] pixels in the order of
data_layouts/detection_train_data.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from facekit import strict_json
from facekit.detection.faces import Face
from facekit.detection.overlap import box_iou

FALSE_POSITIVE, IGNORED = -1, -2  # match outcomes besides a ground-truth index


@dataclass(frozen=True)
class ImageDetections:
    """One image's detections: boxes float [D, 4], scores float [D], landmarks float [D, 5, 2] or None."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray | None = None

    @classmethod
    def from_faces(cls, faces: Sequence[Face]) -> ImageDetections:
        has_points = bool(faces) and all(f.landmarks is not None for f in faces)
        return cls(
            boxes=np.asarray([f.box for f in faces], np.float64).reshape(-1, 4),
            scores=np.asarray([f.score for f in faces], np.float64),
            landmarks=np.asarray([f.landmarks for f in faces], np.float64).reshape(-1, 5, 2) if has_points else None,
        )


@dataclass(frozen=True)
class ImageTruth:
    """One image's ground truth: boxes float [G, 4]; ignore bool [G] or None (a detection matched to an ignored face
    is neither a true nor a false positive); landmarks float [G, 5, 2] with landmark_mask bool [G], or None."""

    boxes: np.ndarray
    ignore: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    landmark_mask: np.ndarray | None = None

    @property
    def ignored(self) -> np.ndarray:
        """bool [G]."""
        return np.zeros(len(self.boxes), bool) if self.ignore is None else np.asarray(self.ignore, bool)


@dataclass(frozen=True)
class APResult:
    """Average precision and the curve it came from: precision, recall and score thresholds [K], one point per
    counted detection (or per sampled threshold), by descending score."""

    ap: float  # NaN when there is no ground-truth face
    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray
    num_gt: int  # faces that count (not ignored)
    num_det: int  # detections on the curve (not matched to an ignored face)

    def as_dict(self, max_points: int = 1000) -> dict:
        """JSON-able, the curve thinned to at most max_points points (the last one always kept)."""
        keep = np.unique(np.linspace(0, len(self.recall) - 1, min(len(self.recall), max_points)).round().astype(int))
        return {
            "ap": strict_json.rounded(self.ap, 6),
            "faces": self.num_gt,
            "detections": self.num_det,
            "pr_curve": {
                "recall": [round(float(v), 5) for v in self.recall[keep]],
                "precision": [round(float(v), 5) for v in self.precision[keep]],
                "thresholds": [round(float(v), 5) for v in self.thresholds[keep]],
            },
        }


@dataclass(frozen=True)
class NMEResult:
    nme: float  # NaN when no face counts
    num_faces: int


def match_detections(
    boxes: np.ndarray, gt_boxes: np.ndarray, ignore: np.ndarray, iou_threshold: float, *, pixel_offset: float = 0.0
) -> np.ndarray:
    """Greedy matching in one image (PASCAL VOC's rule, also WIDER FACE's).

    boxes [D, 4] in descending score order; gt_boxes [G, 4]; ignore bool [G]. Each detection looks at the face it
    overlaps most: below iou_threshold it is a false positive; else, if that face is ignored it is IGNORED, if that
    face is still free it takes it (true positive), and if it was taken it is a duplicate (false positive).
    pixel_offset 1 measures IoU with inclusive pixel corners (x2 - x1 + 1 wide), as the WIDER FACE tool does.
    Returns int [D]: the matched face's index, FALSE_POSITIVE or IGNORED.
    """
    outcome = np.full(len(boxes), FALSE_POSITIVE)
    if len(boxes) == 0 or len(gt_boxes) == 0:
        return outcome
    offset = np.array([0.0, 0.0, pixel_offset, pixel_offset])
    iou = box_iou(np.asarray(boxes, np.float64) + offset, np.asarray(gt_boxes, np.float64) + offset)
    best, best_iou = iou.argmax(1), iou.max(1)
    taken = np.zeros(len(gt_boxes), bool)
    for d in np.flatnonzero(best_iou >= iou_threshold):
        g = best[d]
        if ignore[g]:
            outcome[d] = IGNORED
        elif not taken[g]:
            taken[g] = True
            outcome[d] = g
    return outcome


def match_image(
    det: ImageDetections, truth: ImageTruth, iou_threshold: float, pixel_offset: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(order int [D]: detection indices by descending score, outcome int [D] of match_detections in that order)."""
    order = np.argsort(-det.scores, kind="stable")
    outcome = match_detections(det.boxes[order], truth.boxes, truth.ignored, iou_threshold, pixel_offset=pixel_offset)
    return order, outcome


def interpolated_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP (VOC2010+): the area under the monotone envelope max_{r' >= r} precision(r').

    recall, precision: [K] with recall non-decreasing.
    """
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def average_precision(
    detections: Sequence[ImageDetections], ground_truth: Sequence[ImageTruth], iou_threshold: float = 0.5
) -> APResult:
    """VOC-style AP over a set of images (lists aligned by image).

    Detections are matched greedily by descending score (match_detections; the order across images does not change
    who matches whom), then pooled over all images and sorted by score: point k of the curve counts the k strongest
    detections. Detections matched to ignored faces are left out.
    """
    if len(detections) != len(ground_truth):
        raise ValueError(f"{len(detections)} detection lists for {len(ground_truth)} ground-truth images")
    scores, hits, num_gt = [], [], 0
    for det, truth in zip(detections, ground_truth, strict=True):
        order, outcome = match_image(det, truth, iou_threshold)
        counted = outcome != IGNORED
        scores.append(det.scores[order][counted])
        hits.append(outcome[counted] >= 0)
        num_gt += int((~truth.ignored).sum())
    score = np.concatenate([np.zeros(0), *scores])
    order = np.argsort(-score, kind="stable")
    tp = np.cumsum(np.concatenate([np.zeros(0, bool), *hits])[order])
    precision = tp / np.arange(1, len(tp) + 1)
    recall = tp / num_gt if num_gt else np.full(len(tp), math.nan)
    ap = interpolated_ap(recall, precision) if num_gt else math.nan
    return APResult(ap, precision, recall, score[order], num_gt, len(tp))


def landmark_nme(
    detections: Sequence[ImageDetections], ground_truth: Sequence[ImageTruth], iou_threshold: float = 0.5
) -> NMEResult:
    """Box-normalised landmark NME.

    Over the true positives (matched as in average_precision, IoU >= iou_threshold) whose face has ground-truth
    landmarks: the mean over the 5 points of the L2 distance between predicted and true point, divided by
    sqrt(w * h) of the ground-truth box; then the mean over those faces. Images whose detector gives no landmarks
    add nothing; faces with an empty box are left out.
    """
    errors = []
    for det, truth in zip(detections, ground_truth, strict=True):
        if det.landmarks is None or truth.landmarks is None:
            continue
        order, outcome = match_image(det, truth, iou_threshold)
        tp = outcome >= 0
        faces = outcome[tp]
        wh = truth.boxes[faces, 2:] - truth.boxes[faces, :2]
        area = wh.prod(-1)
        mask = np.ones(len(faces), bool) if truth.landmark_mask is None else truth.landmark_mask[faces]
        keep = mask & (area > 0)
        distances = np.linalg.norm(det.landmarks[order][tp][keep] - truth.landmarks[faces[keep]], axis=-1)  # [M, 5]
        errors.append(distances.mean(-1) / np.sqrt(area[keep]))
    error = np.concatenate([np.zeros(0), *errors])
    return NMEResult(float(error.mean()) if len(error) else math.nan, len(error))
