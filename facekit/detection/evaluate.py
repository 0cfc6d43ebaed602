"""Detection metrics: average precision (VOC all-point, and the WIDER FACE easy/medium/hard protocol), landmark NME,
and precision-recall plots (facekit.plot).

Boxes are corners (x1, y1, x2, y2) in pixels; landmarks are [5, 2] pixels in the order of
data_layouts/detection_train_data.md.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facekit.detection.box_utils import box_iou
from facekit.detection.faces import DetectSettings, Face
from facekit.errors import DataFormatError, FacekitError, MissingDataError
from facekit.plot import Axis, render_curves, write_png

EVAL_THRESHOLD = 0.02  # the score floor of Pytorch_Retinaface's WIDER FACE test script: low enough for a full PR curve
WIDER_LEVELS = ("easy", "medium", "hard")
WIDER_THRESHOLDS = 1000
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
            "ap": _finite(self.ap),
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


@dataclass(frozen=True)
class WiderImage:
    """One image of wider_face_val.mat: key '<event>/<file>', boxes float [G, 4], and per level (easy, medium, hard)
    bool [G]: the faces that count at that level (the others are ignored)."""

    key: str
    boxes: np.ndarray
    counted: dict[str, np.ndarray]


@dataclass(frozen=True)
class WiderResult:
    levels: dict[str, APResult]
    images: int  # ground-truth images evaluated
    missing: list[str]  # ground-truth images without detections (not in the split, or skipped)

    def as_dict(self) -> dict:
        return {"images": self.images, "missing": len(self.missing), **{k: v.as_dict() for k, v in self.levels.items()}}


@dataclass(frozen=True)
class DetectionMetrics:
    """What `evaluate_split` measured on one split."""

    split: str
    detector: str
    settings: DetectSettings
    iou_threshold: float
    images: int
    skipped: list[str]
    ap: APResult
    nme: NMEResult
    wider: WiderResult | None = None

    @property
    def curves(self) -> dict[str, APResult]:
        """The AP curve and, with WIDER FACE ground truth, the easy/medium/hard ones, by legend name."""
        levels = self.wider.levels if self.wider else {}
        return {f"all faces, IoU {self.iou_threshold:g}": self.ap, **{f"WIDER {k}": v for k, v in levels.items()}}

    def as_dict(self) -> dict:
        return {
            "split": self.split,
            "detector": self.detector,
            "settings": {
                "threshold": self.settings.threshold,
                "nms": self.settings.nms,
                "max_size": self.settings.max_size,
            },
            "iou_threshold": self.iou_threshold,
            "images": self.images,
            "skipped": self.skipped,
            "nme": _finite(self.nme.nme),
            "nme_faces": self.nme.num_faces,
            **self.ap.as_dict(),
            "wider": self.wider.as_dict() if self.wider else None,
        }


def _finite(value: float) -> float | None:
    return round(float(value), 6) if math.isfinite(value) else None


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
    offset = torch.tensor([0.0, 0.0, pixel_offset, pixel_offset], dtype=torch.float64)
    iou = box_iou(torch.as_tensor(boxes, dtype=torch.float64) + offset, torch.as_tensor(gt_boxes) + offset).numpy()
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


def _match_image(
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
        order, outcome = _match_image(det, truth, iou_threshold)
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
        order, outcome = _match_image(det, truth, iou_threshold)
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


def read_wider_ground_truth(gt_dir: str | os.PathLike) -> list[WiderImage]:
    """The official WIDER FACE val ground truth: wider_face_val.mat (event_list, file_list, face_bbx_list of
    x y w h) and wider_{easy,medium,hard}_val.mat (gt_list: 1-based indices of the faces that count)."""
    from scipy.io import loadmat

    gt_dir = Path(gt_dir)
    names = {"all": "wider_face_val.mat", **{level: f"wider_{level}_val.mat" for level in WIDER_LEVELS}}
    absent = [name for name in names.values() if not (gt_dir / name).is_file()]
    if absent:
        raise MissingDataError(f"{gt_dir}: missing WIDER FACE ground truth {', '.join(absent)}")
    mats = {}
    for key, name in names.items():
        try:
            mats[key] = loadmat(gt_dir / name)
        except (ValueError, TypeError, OSError, NotImplementedError) as exc:
            raise DataFormatError(f"{gt_dir / name}: not a readable MATLAB file ({exc})") from None
    try:
        return _wider_images(mats)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise DataFormatError(
            f"{gt_dir}: not the WIDER FACE ground-truth structure ({type(exc).__name__}: {exc})"
        ) from None


def _wider_images(mats: dict[str, dict]) -> list[WiderImage]:
    val = mats["all"]
    events, files, boxes = val["event_list"], val["file_list"], val["face_bbx_list"]
    levels = {level: mats[level]["gt_list"] for level in WIDER_LEVELS}
    images = []
    for i in range(len(events)):
        event = str(events[i][0][0])
        for j in range(len(files[i][0])):
            xywh = np.asarray(boxes[i][0][j][0], np.float64).reshape(-1, 4)
            counted = {}
            for level, gt_list in levels.items():
                keep = np.asarray(gt_list[i][0][j][0]).reshape(-1).astype(int)
                if ((keep < 1) | (keep > len(xywh))).any():
                    raise ValueError(f"{level} face index out of 1..{len(xywh)} in {event}/{files[i][0][j][0][0]}")
                counted[level] = np.zeros(len(xywh), bool)
                counted[level][keep - 1] = True
            key = f"{event}/{files[i][0][j][0][0]}"
            images.append(WiderImage(key, np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1), counted))
    return images


def wider_key(path: str) -> str:
    """'<event>/<file stem>' of an image path such as '0--Parade/0_Parade_marchingband_1_465.jpg'."""
    p = Path(path)
    return f"{p.parent.name}/{p.stem}"


def wider_face_ap(
    detections: Mapping[str, ImageDetections],
    truth: Sequence[WiderImage],
    iou_threshold: float = 0.5,
    thresh_num: int = WIDER_THRESHOLDS,
) -> WiderResult:
    """AP at the easy, medium and hard levels, by the protocol of the official WIDER FACE tool (eval_tools,
    WiderFace-Evaluation).

    detections: by wider_key. Scores are min-max normalised over all detections given (all equal -> 1). Per image,
    detections in descending score order are matched with inclusive-pixel IoU (match_detections, pixel_offset 1);
    the faces a level does not count are ignored. Images without faces or without detections add only their
    counted faces. Precision and recall are summed over images at the thresholds 1 - t / thresh_num,
    t = 1..thresh_num (thresholds that keep no detection are left out of the curve: their recall is 0), and the AP
    is the all-point area (interpolated_ap). Ground-truth images not in `detections` are left out and listed.
    """
    present = [image for image in truth if image.key in detections]
    if not present:
        raise MissingDataError(f"none of the {len(truth)} WIDER FACE ground-truth images is among the evaluated ones")
    scores = np.concatenate([np.zeros(0), *(d.scores for d in detections.values())])
    low, high = (scores.min(), scores.max()) if len(scores) else (0.0, 1.0)
    thresholds = 1 - np.arange(1, thresh_num + 1) / thresh_num
    levels = {}
    for level in WIDER_LEVELS:
        proposals, tps, num_gt = np.zeros(thresh_num), np.zeros(thresh_num), 0
        for image in present:
            counted = image.counted[level]
            num_gt += int(counted.sum())
            det = detections[image.key]
            if len(image.boxes) == 0 or len(det.scores) == 0:
                continue
            norm = (det.scores - low) / (high - low) if high > low else np.ones(len(det.scores))
            det = ImageDetections(det.boxes, norm)
            order, outcome = _match_image(det, ImageTruth(image.boxes, ~counted), iou_threshold, pixel_offset=1.0)
            kept = np.searchsorted(-norm[order], -thresholds, side="right")  # detections with score >= threshold
            proposals += np.concatenate([[0], np.cumsum(outcome != IGNORED)])[kept]
            tps += np.concatenate([[0], np.cumsum(outcome >= 0)])[kept]
        valid = proposals > 0
        precision = tps[valid] / proposals[valid]
        recall = tps[valid] / num_gt if num_gt else np.full(int(valid.sum()), math.nan)
        ap = interpolated_ap(recall, precision) if num_gt else math.nan
        levels[level] = APResult(ap, precision, recall, thresholds[valid], num_gt, int(proposals[-1]))
    missing = [image.key for image in truth if image.key not in detections]
    return WiderResult(levels, len(present), missing)


def evaluate_split(
    split_dir: str | os.PathLike,
    detector,  # any object with .detect(image, settings) -> list[Face]
    settings: DetectSettings = DetectSettings(threshold=EVAL_THRESHOLD),
    *,
    iou_threshold: float = 0.5,
    wider_gt: str | os.PathLike | None = None,
) -> DetectionMetrics:
    """Run `detector` on every image of a label.txt split and measure AP, landmark NME and (with wider_gt, the
    folder of the official .mat files) the WIDER FACE easy/medium/hard AP.

    Missing image files fail up front (resolve_images); unreadable ones are skipped, listed, and their faces left
    out of every metric. Each image's ground truth is checked against its size as it is read (face_problems): a face
    far outside its image fails the whole evaluation.
    """
    from tqdm import tqdm

    from facekit.data.images import read_image
    from facekit.data.labels import face_problems, read_labels, resolve_images

    label_path = Path(split_dir) / "label.txt"
    _, labels = read_labels(label_path)
    paths = resolve_images(label_path, labels)
    wider_truth = read_wider_ground_truth(wider_gt) if wider_gt is not None else None
    detections, truths, keys, skipped = [], [], [], []
    for labelled, path in tqdm(list(zip(labels, paths)), desc="evaluate", unit="img", disable=None, file=sys.stderr):
        try:
            image = read_image(path)
        except FacekitError as exc:
            skipped.append(str(exc))
            continue
        problems = face_problems(label_path, labelled, (image.shape[1], image.shape[0]))
        if problems:
            raise DataFormatError(problems[0])
        detections.append(ImageDetections.from_faces(detector.detect(image, settings)))
        truths.append(ImageTruth(labelled.boxes, landmarks=labelled.landmarks, landmark_mask=labelled.landmark_mask))
        keys.append(wider_key(labelled.path))
    return DetectionMetrics(
        split=str(split_dir),
        detector=getattr(detector, "name", type(detector).__name__),
        settings=settings,
        iou_threshold=iou_threshold,
        images=len(detections),
        skipped=skipped,
        ap=average_precision(detections, truths, iou_threshold),
        nme=landmark_nme(detections, truths, iou_threshold),
        wider=wider_face_ap(dict(zip(keys, detections)), wider_truth, iou_threshold)
        if wider_truth is not None
        else None,
    )


def render_pr_curve(
    curves: APResult | Mapping[str, APResult], title: str = "Precision-recall", size: tuple[int, int] = (720, 600)
) -> np.ndarray:
    """A BGR uint8 [H, W, 3] plot of precision over recall (0..1 grid, ticks every 0.1), one line per curve and a
    legend with each AP. size: (width, height)."""
    curves = {"": curves} if isinstance(curves, APResult) else curves
    lines = {
        f"{name + ': ' if name else ''}AP {'n/a' if math.isnan(r.ap) else f'{r.ap:.3f}'}": (r.recall, r.precision)
        for name, r in curves.items()
    }
    x_axis, y_axis = Axis("Recall"), Axis("Precision")
    return render_curves(lines, x_axis=x_axis, y_axis=y_axis, title=title, legend_corner="bottom left", size=size)


def plot_pr_curve(
    curves: APResult | Mapping[str, APResult], path: str | os.PathLike, title: str = "Precision-recall"
) -> Path:
    """Write render_pr_curve's plot as a PNG, atomically."""
    return write_png(render_pr_curve(curves, title), path)
