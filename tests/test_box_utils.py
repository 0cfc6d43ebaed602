"""Prior boxes, IoU, box/landmark coding and matching against hand-worked numbers (NMS: tests/test_overlap.py)."""

from __future__ import annotations

import math

import pytest
import torch

from facekit.detection.box_utils import (
    box_iou,
    center_size,
    decode,
    decode_landmarks,
    encode,
    encode_landmarks,
    match,
    point_form,
    prior_boxes,
)

V = (0.1, 0.2)


def test_priors_order_and_values():
    priors = prior_boxes((16, 16), [[16, 32]], [8])
    assert priors.shape == (2 * 2 * 2, 4)
    # rows y, then columns x, then anchors; centre (x + 0.5) * step / W
    assert priors[0].tolist() == [0.25, 0.25, 1.0, 1.0]
    assert priors[1].tolist() == [0.25, 0.25, 2.0, 2.0]
    assert priors[2].tolist() == [0.75, 0.25, 1.0, 1.0]
    assert priors[4].tolist() == [0.25, 0.75, 1.0, 1.0]


def test_priors_non_square_and_ceil():
    priors = prior_boxes((8, 16), [[8]], [8])
    assert priors.tolist() == [[0.25, 0.5, 0.5, 1.0], [0.75, 0.5, 0.5, 1.0]]
    # 640x480 with the RetinaFace settings: 80x60 + 40x30 + 20x15 locations, 2 anchors each
    assert len(prior_boxes((480, 640), [[16, 32], [64, 128], [256, 512]], [8, 16, 32])) == 2 * (4800 + 1200 + 300)
    assert len(prior_boxes((100, 100), [[16]], [32])) == 16  # ceil(100 / 32) = 4


def test_point_form_center_size():
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    corners = point_form(boxes)
    torch.testing.assert_close(corners, torch.tensor([[0.4, 0.3, 0.6, 0.7]]))
    torch.testing.assert_close(center_size(corners), boxes)


def test_iou():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1 / 7, 1.0, 0.0]]))


def test_encode_decode_by_hand():
    prior = torch.tensor([[0.25, 0.25, 0.2, 0.2]])
    box = torch.tensor([[0.1, 0.1, 0.3, 0.5]])  # centre (0.2, 0.3), size (0.2, 0.4)
    loc = encode(box, prior, V)
    # (0.2 - 0.25) / (0.1 * 0.2) = -2.5; (0.3 - 0.25) / 0.02 = 2.5; log(1) / 0.2 = 0; log(2) / 0.2
    torch.testing.assert_close(loc, torch.tensor([[-2.5, 2.5, 0.0, math.log(2) / 0.2]]))
    torch.testing.assert_close(decode(loc, prior, V), box)


def test_landmarks_by_hand():
    prior = torch.tensor([[0.5, 0.5, 0.1, 0.2]])
    points = torch.tensor([[[0.51, 0.52], [0.5, 0.5], [0.49, 0.48], [0.6, 0.5], [0.5, 0.7]]])
    coded = encode_landmarks(points, prior, V)
    # (0.51 - 0.5) / (0.1 * 0.1) = 1; (0.52 - 0.5) / (0.1 * 0.2) = 1
    torch.testing.assert_close(coded[0, :2], torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(coded[0, 8:], torch.tensor([0.0, 10.0]))
    torch.testing.assert_close(decode_landmarks(coded, prior, V), points)


def test_match_by_hand():
    priors = torch.tensor([[0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5], [0.3, 0.3, 0.1, 0.1]])
    truths = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.7, 0.7, 0.8, 0.8]])  # face 2 overlaps no prior by 0.35
    points = torch.full((2, 5, 2), 0.25)
    loc, labels, landm, landm_weight = match(truths, points, torch.tensor([True, False]), priors)
    # prior 0 fits face 0 exactly; prior 1 overlaps face 1 by 0.01/0.25 = 0.04 < 0.2: not claimed
    assert labels.tolist() == [1, 0, 0]
    torch.testing.assert_close(loc[0], torch.zeros(4))
    assert landm_weight.tolist() == [True, False, False]
    # with a lower floor, face 1 claims its best prior (prior 1) whatever the overlap
    _, labels, _, landm_weight = match(truths, points, torch.tensor([True, False]), priors, min_best_overlap=0.01)
    assert labels.tolist() == [1, 1, 0] and landm_weight.tolist() == [True, False, False]


def test_match_without_faces():
    loc, labels, landm, weight = match(
        torch.zeros(0, 4), torch.zeros(0, 5, 2), torch.zeros(0, dtype=torch.bool), prior_boxes((16, 16), [[8]], [8])
    )
    assert labels.sum() == 0 and loc.shape == (4, 4) and landm.shape == (4, 10) and not weight.any()


@pytest.mark.parametrize("size", [(37, 53), (480, 640)])
def test_decode_inverts_encode_on_random_boxes(size):
    priors = prior_boxes(size, [[16, 32], [64, 128], [256, 512]], [8, 16, 32])
    g = torch.Generator().manual_seed(0)
    centre = torch.rand(len(priors), 2, generator=g)
    wh = torch.rand(len(priors), 2, generator=g) * 0.5 + 0.01
    boxes = torch.cat([centre - wh / 2, centre + wh / 2], 1)
    torch.testing.assert_close(decode(encode(boxes, priors, V), priors, V), boxes, atol=1e-5, rtol=1e-5)
