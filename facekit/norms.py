"""Input normalisations: the one place their constants live. Every model config names one of these."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Normalization:
    """`(pixel - mean) / std` per channel, in RGB order when `rgb` else BGR (the order mean/std are given in)."""

    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    rgb: bool

    def __call__(self, image_bgr: np.ndarray) -> np.ndarray:
        """uint8 BGR [H, W, 3] -> float32 [3, H, W]."""
        if len(set(self.std)) == 1:  # OpenCV's blob maker does it in one pass, several times faster than numpy
            import cv2

            return cv2.dnn.blobFromImage(image_bgr, 1.0 / self.std[0], None, self.mean, swapRB=self.rgb)[0]
        image = image_bgr[:, :, ::-1] if self.rgb else image_bgr
        out = (image.astype(np.float32) - np.float32(self.mean)) / np.float32(self.std)
        return np.ascontiguousarray(out.transpose(2, 0, 1))


ARCFACE = Normalization("arcface", (127.5,) * 3, (127.5,) * 3, rgb=True)  # insightface recognizers
SCRFD = Normalization("scrfd", (127.5,) * 3, (128.0,) * 3, rgb=True)  # insightface detectors
RETINAFACE = Normalization("retinaface", (104.0, 117.0, 123.0), (1.0,) * 3, rgb=False)  # Pytorch_Retinaface
DLIB = Normalization("dlib", (122.782, 117.001, 104.298), (256.0,) * 3, rgb=True)  # dlib's input_rgb_image(_sized)

NORMALIZATIONS = {n.name: n for n in (ARCFACE, SCRFD, RETINAFACE, DLIB)}
