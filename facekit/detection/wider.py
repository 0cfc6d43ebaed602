"""The WIDER FACE easy / medium / hard protocol of the official evaluation tool (eval_tools, WiderFace-Evaluation):
its .mat ground truth, its image keys and its thresholded AP."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facekit.detection.metrics import IGNORED, APResult, ImageDetections, ImageTruth, interpolated_ap, match_image
from facekit.errors import DataFormatError, MissingDataError

WIDER_LEVELS = ("easy", "medium", "hard")
WIDER_THRESHOLDS = 1000


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
            order, outcome = match_image(det, ImageTruth(image.boxes, ~counted), iou_threshold, pixel_offset=1.0)
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
