"""Every registered detector body builds, runs forward and backward, and lines up with its priors."""

from __future__ import annotations

import pytest
import torch

from facekit.detection.box_utils import prior_boxes
from facekit.detection.config import DetectorConfig
from facekit.detection.model import BODIES
from facekit.detection.weights import build_detector


@pytest.mark.parametrize("body", sorted(BODIES))
def test_body_forward_backward(body):
    config = DetectorConfig.for_body(body)
    model = build_detector(config).train()
    x = torch.randn(2, 3, 96, 160)
    loc, logits, landmarks = model(x)
    n = len(prior_boxes((96, 160), config.min_sizes, config.steps))
    assert loc.shape == (2, n, 4) and logits.shape == (2, n, 2) and landmarks.shape == (2, n, 10)
    (loc.sum() + logits.sum() + landmarks.sum()).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_reference_sizes():
    assert DetectorConfig.for_body("mobilenet0.25").image_size == 640
    assert DetectorConfig.for_body("resnet50").image_size == 840


def test_unknown_body_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown detector body 'vgg'; known: mobilenet0.25, resnet50"):
        DetectorConfig.for_body("vgg")


def test_config_round_trip():
    config = DetectorConfig.for_body("resnet50")
    assert DetectorConfig.from_dict(config.as_dict()) == config
