"""facekit.detection.overlap (numpy) against hand-computed overlaps and the torch box_iou training matches with."""

import numpy as np
import torch

from facekit.detection import box_utils
from facekit.detection.overlap import box_iou, nms


def test_iou_by_hand():
    a = np.array([[0, 0, 2, 2]])
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6], [0, 0, 1, 1]])
    # overlap 1 over union 4 + 4 - 1; identical; disjoint; inside (1 / 4, or 1 over the smaller box)
    np.testing.assert_allclose(box_iou(a, b), [[1 / 7, 1.0, 0.0, 0.25]])
    np.testing.assert_allclose(box_iou(a, b, smaller=True), [[0.25, 1.0, 0.0, 1.0]])
    assert box_iou(a, b).dtype == np.float64 and box_iou(a, b[:0]).shape == (1, 0)


def test_iou_agrees_with_the_torch_one_on_random_boxes():
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 100, (2, 40, 2, 2))
    boxes = np.concatenate([corners.min(2), corners.max(2)], -1)  # [2, 40, 4] valid corner boxes
    for smaller in (False, True):
        theirs = box_utils.box_iou(torch.from_numpy(boxes[0]), torch.from_numpy(boxes[1]), smaller=smaller).numpy()
        np.testing.assert_allclose(box_iou(boxes[0], boxes[1], smaller=smaller), theirs, rtol=1e-12, atol=1e-12)


def test_nms_keeps_the_strongest_of_each_cluster():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.8, 0.9, 0.7, 0.8], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]  # 0 and 3 overlap 1 by 0.68
    assert nms(boxes, scores, 0.7).tolist() == [1, 0, 2]  # 0 (tie with 3: the lower index) suppresses 3
    inner = np.array([[0, 0, 10, 10], [2, 2, 5, 5]], np.float32)
    assert nms(inner, np.array([0.9, 0.8]), 0.7).tolist() == [0, 1]
    assert nms(inner, np.array([0.9, 0.8]), 0.7, smaller=True).tolist() == [0]
    assert nms(boxes[:0], scores[:0], 0.5).tolist() == []
