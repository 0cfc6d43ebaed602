"""MTCNN at inference time: the three-stage cascade of facekit.detection.mtcnn's nets, returning faces in image
pixels like the other detectors (facekit.runtime.detector.load_face_detector picks it from the model's config)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

from facekit.detection.faces import DetectSettings, Face, postprocess, resize_for_detection
from facekit.detection.mtcnn import Mtcnn, MtcnnConfig, calibrate, load_mtcnn, pyramid_scales, square, window_boxes
from facekit.detection.overlap import nms as nms_numpy
from facekit.errors import ModelError
from facekit.runtime.detector_base import TorchDetectorBase

BATCH = 512  # R-Net and O-Net crops per forward pass


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float, *, smaller: bool = False) -> torch.Tensor:
    """facekit.detection.overlap.nms on CPU tensors (boxes [N, 4], scores [N]): the kept indices, int64 [K]."""
    return torch.from_numpy(nms_numpy(boxes.numpy(), scores.numpy(), iou_threshold, smaller=smaller))


def crop_squares(image: np.ndarray, boxes: torch.Tensor, size: int, norm: Callable) -> torch.Tensor:
    """The boxes [N, 4] cut out of a BGR image, black where they leave it, resized to size x size and normalised by
    `norm`: [N, 3, size, size]. Only the part inside the image is resized, so memory stays bounded by the image."""
    h, w = image.shape[:2]
    out = np.empty((len(boxes), 3, size, size), np.float32)
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        f = size / max(x2 - x1, y2 - y1, 1e-3)  # output pixels per image pixel
        ix1, iy1, ix2, iy2 = (
            max(math.floor(x1), 0),
            max(math.floor(y1), 0),
            min(math.ceil(x2), w),
            min(math.ceil(y2), h),
        )
        patch = np.zeros((size, size, 3), np.uint8)
        # where the inside part lands in the patch, clipped to it
        px1, py1 = min(max(round((ix1 - x1) * f), 0), size), min(max(round((iy1 - y1) * f), 0), size)
        px2, py2 = min(max(round((ix2 - x1) * f), px1), size), min(max(round((iy2 - y1) * f), py1), size)
        if ix2 > ix1 and iy2 > iy1 and px2 > px1 and py2 > py1:
            inside = image[iy1:iy2, ix1:ix2]
            shrink = inside.shape[0] > py2 - py1
            patch[py1:py2, px1:px2] = cv2.resize(
                inside, (px2 - px1, py2 - py1), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            )
        out[i] = norm(patch)
    return torch.from_numpy(out)


class MtcnnDetector(TorchDetectorBase):
    """MTCNN's cascade (PyTorch). P-Net scans an image pyramid for 12-pixel windows (faces from min_face_size up);
    R-Net rescores and refines their 24x24 crops; O-Net gives the final boxes and the 5 landmarks from 48x48 crops.
    Each stage keeps what scores over its threshold, suppresses overlaps, applies its box regression and squares the
    boxes for the next stage. `settings.threshold` can only raise O-Net's own threshold; `settings.nms` runs last."""

    model: Mtcnn
    config: MtcnnConfig
    name = "MTCNN (PyTorch)"

    @staticmethod
    def read(path: str | os.PathLike, file: Path, payload: dict | None) -> tuple[Mtcnn, MtcnnConfig]:
        from facekit.modeldir import load_model

        return load_mtcnn(file, load_model(path, "detector", payload))

    @torch.inference_mode()
    def detect(self, image: np.ndarray, settings: DetectSettings = DetectSettings()) -> list[Face]:
        """Faces in a BGR uint8 [H, W, 3] image, strongest first."""
        resized, scale = resize_for_detection(image, settings.max_size)
        boxes, scores, points = self._output(resized, self._refine(resized, self._propose(resized)))
        return postprocess(boxes.numpy(), scores.numpy(), points.numpy(), settings, scale)

    def _propose(self, image: np.ndarray) -> torch.Tensor:
        """P-Net over the pyramid: candidate squares [N, 4]."""
        config, (h, w) = self.config, image.shape[:2]
        found = []
        for s in pyramid_scales(h, w, config.min_face_size, config.factor):
            level = cv2.resize(image, (math.ceil(w * s), math.ceil(h * s)), interpolation=cv2.INTER_AREA)
            x = torch.from_numpy(config.norm(level))[None].to(self.device)
            offsets, probs = self._checked(self.model.pnet(x), "P-Net")
            boxes, at = window_boxes(probs[0].cpu(), config.thresholds[0], s)
            scores, offsets = probs[0].cpu()[at[:, 0], at[:, 1]], offsets[0].cpu()[:, at[:, 0], at[:, 1]].T
            keep = nms(boxes, scores, config.nms[0])
            found.append((boxes[keep], scores[keep], offsets[keep]))
        if not found:
            return torch.zeros(0, 4)
        boxes, scores, offsets = (torch.cat(parts) for parts in zip(*found, strict=True))
        keep = nms(boxes, scores, config.nms[1])
        return square(calibrate(boxes[keep], offsets[keep]))

    def _refine(self, image: np.ndarray, boxes: torch.Tensor) -> torch.Tensor:
        """R-Net on the 24x24 crops of the candidates: the squares [M, 4] it keeps."""
        if len(boxes) == 0:
            return boxes
        offsets, scores = self._run(self.model.rnet, "R-Net", crop_squares(image, boxes, 24, self.config.norm))
        keep = scores >= self.config.thresholds[1]
        boxes, scores, offsets = boxes[keep], scores[keep], offsets[keep]
        keep = nms(boxes, scores, self.config.nms[2])
        return square(calibrate(boxes[keep], offsets[keep]))

    def _output(self, image: np.ndarray, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """O-Net on the 48x48 crops: final boxes [K, 4], scores [K] and landmarks [K, 5, 2]."""
        if len(boxes) == 0:
            return boxes, torch.zeros(0), torch.zeros(0, 5, 2)
        offsets, marks, scores = self._run(self.model.onet, "O-Net", crop_squares(image, boxes, 48, self.config.norm))
        keep = scores >= self.config.thresholds[2]
        boxes, scores, offsets, marks = boxes[keep], scores[keep], offsets[keep], marks[keep]
        size = boxes[:, 2:] - boxes[:, :2]
        points = boxes[:, None, :2] + torch.stack([marks[:, :5], marks[:, 5:]], -1) * size[:, None]
        boxes = calibrate(boxes, offsets)
        keep = nms(boxes, scores, self.config.nms[3], smaller=True)
        return boxes[keep], scores[keep], points[keep]

    def _run(self, net: torch.nn.Module, name: str, crops: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """`net` over the crops [N, 3, S, S] in batches of BATCH: its outputs, on the CPU."""
        outputs = [net(crops[i : i + BATCH].to(self.device)) for i in range(0, len(crops), BATCH)]
        return self._checked(tuple(torch.cat(parts).cpu() for parts in zip(*outputs, strict=True)), name)

    def _checked(self, outputs: tuple[torch.Tensor, ...], net: str) -> tuple[torch.Tensor, ...]:
        """A net's outputs, unless they hold NaN or infinite values (broken weights: no photo is to blame)."""
        if not all(bool(torch.isfinite(t).all()) for t in outputs):
            raise ModelError(
                f"{self.path or self.name}: MTCNN's {net} gave NaN or infinite values; the model is broken (damaged "
                "weights or a numeric overflow)"
            )
        return outputs
