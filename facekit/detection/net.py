"""A RetinaFace network run as a detector, in PyTorch: training validates with it, and
facekit.runtime.detector.TorchDetector serves a model directory with it. The pre- and post-processing it shares with
every detector is in facekit.detection.faces (numpy)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from facekit.detection.box_utils import decode, decode_landmarks, prior_boxes
from facekit.detection.config import DetectorConfig
from facekit.detection.faces import DetectSettings, Face, postprocess, resize_for_detection


@torch.inference_mode()
def detect_retinaface(
    model: torch.nn.Module, config: DetectorConfig, image: np.ndarray, settings: DetectSettings, device: str = "cpu"
) -> list[Face]:
    """Faces in a BGR uint8 [H, W, 3] image, strongest first, by a RetinaFace `model` (in eval mode, on `device`)."""
    resized, scale = resize_for_detection(image, settings.max_size)
    h, w = resized.shape[:2]
    x = torch.from_numpy(config.norm(resized))[None].to(device)
    loc, logits, landm = model(x)
    scores = logits[0].softmax(-1)[:, 1]
    keep = scores > settings.threshold  # decode only the candidates
    priors = prior_boxes((h, w), config.min_sizes, config.steps).to(device)[keep]
    size = torch.tensor([w, h], dtype=torch.float32, device=device)
    boxes = decode(loc[0, keep], priors, config.variances) * size.repeat(2)
    points = decode_landmarks(landm[0, keep], priors, config.variances) * size
    return postprocess(boxes.cpu().numpy(), scores[keep].cpu().numpy(), points.cpu().numpy(), settings, scale)


@dataclass
class RetinaFaceNet:
    """A RetinaFace network in memory as a detector (`.detect(image, settings)`), as training validates it; the
    caller puts the model in eval mode. facekit.runtime.detector.TorchDetector loads one from a model directory."""

    model: torch.nn.Module
    config: DetectorConfig
    device: str = "cpu"

    def detect(self, image: np.ndarray, settings: DetectSettings = DetectSettings()) -> list[Face]:
        """Faces in a BGR uint8 [H, W, 3] image, strongest first."""
        return detect_retinaface(self.model, self.config, image, settings, self.device)
