"""Augmentation, MultiBox loss and the learning-rate schedule on hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facekit.detection.augment import MIRROR_ORDER, Target, TrainTransform, mirror, pad_to_square, random_crop
from facekit.detection.box_utils import encode, encode_landmarks, match, prior_boxes
from facekit.detection.loss import MultiBoxLoss
from facekit.detection.train import DetectTrainSettings, lr_factor
from facekit.norms import RETINAFACE


def face(x1, y1, x2, y2):
    box = np.array([[x1, y1, x2, y2]], np.float32)
    w, h = x2 - x1, y2 - y1
    points = np.array(
        [
            [
                [x1 + 0.3 * w, y1 + 0.4 * h],
                [x1 + 0.7 * w, y1 + 0.4 * h],
                [x1 + 0.5 * w, y1 + 0.6 * h],
                [x1 + 0.35 * w, y1 + 0.8 * h],
                [x1 + 0.65 * w, y1 + 0.8 * h],
            ]
        ],
        np.float32,
    )
    return box, points


def test_mirror_swaps_left_and_right():
    image = np.zeros((10, 100, 3), np.uint8)
    box, points = face(10, 0, 30, 10)
    flipped, b, p = mirror(image, box, points)
    assert b.tolist() == [[70, 0, 90, 10]]
    # the left eye of the mirrored face is the mirrored right eye
    np.testing.assert_allclose(p[0, 0], [100 - points[0, 1, 0], points[0, 1, 1]])
    np.testing.assert_allclose(p[0, 3], [100 - points[0, 4, 0], points[0, 4, 1]])
    assert p[0, 0, 0] < p[0, 1, 0]  # still left of the right eye
    assert MIRROR_ORDER == [1, 0, 2, 4, 3]


def test_random_crop_keeps_a_whole_face():
    rng = np.random.default_rng(0)
    image = np.zeros((200, 300, 3), np.uint8)
    box, points = face(100, 50, 140, 90)
    for _ in range(20):
        out, b, p, m, cropped = random_crop(image, box, points, np.array([True]), rng)
        assert cropped and out.shape[0] == out.shape[1]
        side = out.shape[0]
        assert len(b) == 1 and (b >= 0).all() and (b <= side).all()
        np.testing.assert_allclose(b[0, 2:] - b[0, :2], [40, 40])  # whole, not clipped
        np.testing.assert_allclose(p - p[:, :1], points - points[:, :1], atol=1e-4)


def test_crop_without_faces_leaves_image():
    image = np.zeros((20, 30, 3), np.uint8)
    out, b, _, _, cropped = random_crop(
        image,
        np.zeros((0, 4), np.float32),
        np.zeros((0, 5, 2), np.float32),
        np.zeros(0, bool),
        np.random.default_rng(0),
    )
    assert out is image and not cropped and len(b) == 0


def test_pad_to_square_uses_the_mean():
    out = pad_to_square(np.full((2, 4, 3), 9, np.uint8), (104.0, 117.0, 123.0))
    assert out.shape == (4, 4, 3) and out[3, 0].tolist() == [104, 117, 123] and out[0, 0].tolist() == [9, 9, 9]


def test_train_transform_outputs(shared_data):
    from facekit.data.datasets import DetectionDataset

    sample = DetectionDataset(shared_data / "layouts/detection_train_data/train")[0]
    x, target = TrainTransform(320, RETINAFACE)(sample, np.random.default_rng(3))
    assert x.shape == (3, 320, 320) and x.dtype == torch.float32
    assert len(target.boxes) >= 1 and target.landmark_mask.all()
    assert (target.boxes >= 0).all() and (target.boxes <= 1).all()
    same, _ = TrainTransform(320, RETINAFACE)(sample, np.random.default_rng(3))
    assert torch.equal(x, same)  # the generator decides everything


def perfect_predictions(target: Target, priors: torch.Tensor, neg_logit: float = 10.0):
    loc, labels, landm, _ = match(target.boxes, target.landmarks, target.landmark_mask, priors)
    logits = torch.zeros(len(priors), 2)
    logits[:, 0] = torch.where(labels > 0, -neg_logit, neg_logit)
    logits[:, 1] = -logits[:, 0]
    return loc[None], logits[None], landm[None]


def test_loss_is_zero_for_perfect_predictions_and_masks_landmarks():
    priors = prior_boxes((64, 64), [[16, 32]], [8])
    box, points = face(0.2, 0.2, 0.5, 0.5)
    target = Target(torch.from_numpy(box), torch.from_numpy(points), torch.tensor([True]))
    criterion = MultiBoxLoss()
    loc, logits, landm = perfect_predictions(target, priors)
    parts = criterion((loc, logits, landm), priors, [target])
    assert parts["box"] < 1e-6 and parts["landmark"] < 1e-6 and parts["class"] < 1e-3
    # wrong landmarks cost nothing for a face without landmarks
    no_marks = Target(target.boxes, target.landmarks, torch.tensor([False]))
    parts = criterion((loc, logits, landm + 5), priors, [no_marks])
    assert parts["landmark"] == 0
    parts = criterion((loc, logits, landm + 5), priors, [target])
    assert parts["landmark"] > 1


def test_hard_negatives_are_limited_to_seven_per_positive():
    priors = prior_boxes((64, 64), [[16, 32]], [8])
    box, points = face(0.2, 0.2, 0.5, 0.5)
    target = Target(torch.from_numpy(box), torch.from_numpy(points), torch.tensor([True]))
    loc, logits, landm = perfect_predictions(target, priors)
    num_pos = int(match(target.boxes, target.landmarks, target.landmark_mask, priors)[1].sum())
    bad = logits.clone()
    background = (bad[0, :, 0] > 0).nonzero().squeeze(1)
    bad[0, background] = torch.tensor([0.0, 1.0])  # every background anchor now costs log(1 + e)
    parts = MultiBoxLoss(neg_pos=7)((loc, bad, landm), priors, [target])
    per_negative = float(torch.nn.functional.cross_entropy(torch.tensor([[0.0, 1.0]]), torch.tensor([0])))
    expected = min(7 * num_pos, len(background)) * per_negative / num_pos
    assert parts["class"] == pytest.approx(expected, rel=1e-3)


def test_loss_gradients_flow():
    priors = prior_boxes((64, 64), [[16, 32]], [8])
    box, points = face(0.1, 0.1, 0.6, 0.7)
    target = Target(torch.from_numpy(box), torch.from_numpy(points), torch.tensor([True]))
    preds = [torch.zeros(1, len(priors), n, requires_grad=True) for n in (4, 2, 10)]
    MultiBoxLoss()(tuple(preds), priors, [target])["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in preds)


def test_lr_schedule():
    s = DetectTrainSettings(epochs=10, warmup_epochs=1, decay_at=(0.5, 0.8), gamma=0.1)
    assert lr_factor(0, 4, s) == pytest.approx(0.25)
    assert lr_factor(3, 4, s) == pytest.approx(1.0)
    assert lr_factor(19, 4, s) == pytest.approx(1.0)
    assert lr_factor(20, 4, s) == pytest.approx(0.1)
    assert lr_factor(32, 4, s) == pytest.approx(0.01)


def test_encoding_used_by_loss_matches_box_utils():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    box = torch.tensor([[0.4, 0.4, 0.6, 0.6]])
    assert encode(box, priors, (0.1, 0.2)).abs().max() < 1e-6
    assert encode_landmarks(torch.full((1, 5, 2), 0.5), priors, (0.1, 0.2)).abs().max() < 1e-6
