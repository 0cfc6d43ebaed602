"""Helpers for the detector tests: dlib's hand-labelled faces, and `facekit detect` run through the CLI."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from click.testing import Result

from facekit.detection.box_utils import box_iou

DLIB_TRAIN = "faces/dlib_train"


def dlib_boxes(xml_path: Path) -> dict[str, np.ndarray]:
    """{file name: [N, 4] corner boxes} from dlib's training.xml."""
    truth = {}
    for image in ET.parse(xml_path).getroot().iter("image"):
        boxes = [
            [
                float(b.get("left")),
                float(b.get("top")),
                float(b.get("left")) + float(b.get("width")),
                float(b.get("top")) + float(b.get("height")),
            ]
            for b in image.iter("box")
        ]
        truth[image.get("file")] = np.array(boxes, np.float32)
    return truth


def run_detect(cli: Callable[..., Result], *args: object) -> list[dict]:
    """`facekit detect ARGS`, which must succeed: its JSON records."""
    result = cli("detect", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def dlib_train_matches(cli: Callable[..., Result], shared_data: Path, model: Path) -> tuple[int, int]:
    """`facekit detect --model MODEL` over dlib's 4 photos with 18 hand-drawn faces: (faces found at IoU >= 0.4,
    matched greedily one to one, strongest overlap first; detections left over, the false positives)."""
    truth = dlib_boxes(shared_data / DLIB_TRAIN / "training.xml")
    records = run_detect(cli, *[shared_data / DLIB_TRAIN / name for name in truth], "--model", model)
    assert sum(len(b) for b in truth.values()) == 18 and len(records) == 4
    found = false_positives = 0
    for record in records:
        gt = torch.from_numpy(truth[record["image"].rsplit("/", 1)[-1]])
        iou = box_iou(torch.tensor([f["box"] for f in record["faces"]]).reshape(-1, 4), gt)
        matched = set()
        for i in iou.max(1).values.argsort(descending=True).tolist():
            j = int(iou[i].argmax())
            if iou[i, j] >= 0.4 and j not in matched:
                matched.add(j)
            else:
                false_positives += 1
        found += len(matched)
    return found, false_positives
