"""Detection evaluation of a label.txt split (`facekit eval-detect`): run a detector on every image, measure AP and
landmark NME (facekit.detection.metrics) and, with the official ground truth, the WIDER FACE easy / medium / hard
AP (facekit.detection.wider); precision-recall plots (facekit.plot)."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facekit import strict_json
from facekit.detection.faces import DetectSettings
from facekit.detection.metrics import APResult, ImageDetections, ImageTruth, NMEResult, average_precision, landmark_nme
from facekit.detection.wider import WiderResult, read_wider_ground_truth, wider_face_ap, wider_key
from facekit.errors import DataFormatError, FacekitError
from facekit.plot import Axis, render_curves, write_png

EVAL_THRESHOLD = 0.02  # the score floor of Pytorch_Retinaface's WIDER FACE test script: low enough for a full PR curve


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
            "nme": strict_json.rounded(self.nme.nme, 6),
            "nme_faces": self.nme.num_faces,
            **self.ap.as_dict(),
            "wider": self.wider.as_dict() if self.wider else None,
        }


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
    from facekit.data.labels import LABEL_FILE, face_problems, read_labels, resolve_images

    label_path = Path(split_dir) / LABEL_FILE
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
