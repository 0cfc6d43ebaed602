"""PyTorch datasets over the real layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from facekit.data.datasets import DetectionDataset, RecognitionDataset
from facekit.data.folders import scan_identity_folders
from facekit.data.recset import open_recognition_set
from facekit.errors import ImageDecodeError


@pytest.fixture
def recognition(shared_data):
    rset = open_recognition_set(shared_data / "layouts/recognition_train_data")
    yield rset
    rset.close()


def test_recognition_item_normalised_rgb(recognition, shared_data):
    import cv2

    tensor, label = RecognitionDataset(recognition)[10]
    assert tensor.shape == (3, 112, 112) and tensor.dtype == torch.float32 and label == 1
    bgr = cv2.imread(str(shared_data / "faces/orl_aligned_112/s2/1.jpg")).astype(np.float32)
    expected = (bgr[:, :, ::-1].transpose(2, 0, 1) - 127.5) / 127.5
    # the .rec holds the same aligned photo packed by MXNet (re-encoded JPEG): close, not identical
    assert np.abs(tensor.numpy() - expected).mean() < 0.03
    assert -1.0 <= tensor.min() and tensor.max() <= 1.0


def test_recognition_flip(recognition):
    plain = RecognitionDataset(recognition)[0][0]
    torch.manual_seed(0)
    flipped = [RecognitionDataset(recognition, flip=True)[0][0] for _ in range(16)]
    assert any(torch.equal(f, plain) for f in flipped)
    assert any(torch.equal(f, plain.flip(-1)) for f in flipped)


def test_recognition_dataloader_with_workers(recognition):
    loader = DataLoader(RecognitionDataset(recognition, flip=True), batch_size=64, shuffle=True, num_workers=2)
    labels = torch.cat([y for _, y in loader])
    assert sorted(labels.tolist()) == sorted(i // 10 for i in range(300))


def test_identity_folder_dataset(shared_data):
    folders = scan_identity_folders(shared_data / "faces/orl_aligned_112")
    tensor, label = RecognitionDataset(folders)[399]
    assert tensor.shape == (3, 112, 112) and label == 39


def test_bad_image_names_the_item(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "bad.jpg").write_bytes(b"garbage")
    with pytest.raises(ImageDecodeError, match="item 0: cannot decode image"):
        RecognitionDataset(scan_identity_folders(tmp_path))[0]


def test_detection_dataset(shared_data):
    dataset = DetectionDataset(shared_data / "layouts/detection_train_data/train")
    assert len(dataset) == 12
    sample = dataset[0]
    assert sample.image.shape == (375, 500, 3) and sample.image.dtype == np.uint8
    assert sample.boxes.shape == (7, 4) and sample.landmarks.shape == (7, 5, 2) and sample.landmark_mask.all()
    h, w = sample.image.shape[:2]
    assert (sample.boxes[:, 2] <= w).all() and (sample.boxes[:, 3] <= h).all()


def test_detection_transform(shared_data):
    dataset = DetectionDataset(shared_data / "layouts/detection_train_data/val", transform=lambda s: len(s.boxes))
    assert [dataset[i] for i in range(len(dataset))] == [3, 2, 1]
