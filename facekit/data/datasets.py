"""PyTorch datasets over the readers: recognition crops and detection images with their faces."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from facekit.data.images import decode_image, read_image
from facekit.data.labels import LABEL_FILE, face_problems, read_labels, resolve_images
from facekit.errors import DataFormatError
from facekit.norms import ARCFACE, Normalization


class FaceSource(Protocol):
    """RecognitionSet and IdentityFolders: indexable (class, encoded image) pairs (and `where(index)`, the file or
    record an item comes from, for error messages)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[int, bytes]: ...


def open_training_source(data_path: Path) -> tuple[FaceSource, int]:
    """recognition_train_data/ (cele.rec ...) or identity folders, and its class count."""
    from facekit.data.folders import scan_identity_folders
    from facekit.data.recset import open_recognition_set

    if any(data_path.glob("*.rec")):
        source = open_recognition_set(data_path)
        classes = source.num_classes
        if classes is None:
            classes = 1 + max(source.read(k)[0] for k in source.image_keys)
        return source, classes
    folders = scan_identity_folders(data_path)
    return folders, len(folders.identities)


class RecognitionDataset(Dataset):
    """Aligned face crops -> (float32 [3, H, W] normalised RGB, class). Random horizontal flip when `flip`."""

    def __init__(
        self, source: FaceSource, *, flip: bool = False, norm: Normalization = ARCFACE, name: str = ""
    ) -> None:
        self.source = source
        self.flip = flip
        self.norm = norm
        self.name = name or type(source).__name__

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        label, data = self.source[index]
        where = self.source.where(index) if hasattr(self.source, "where") else self.name
        image = decode_image(data, f"{where}: item {index}")
        if self.flip and torch.rand(()) < 0.5:
            image = image[:, ::-1]
        return torch.from_numpy(self.norm(image)), label


@dataclass
class DetectionSample:
    """One image and its faces.

    image: uint8 BGR [H, W, 3]; boxes: float32 [F, 4] corners; landmarks: float32 [F, 5, 2]; landmark_mask: bool [F].
    """

    image: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    landmark_mask: np.ndarray
    path: Path


class DetectionDataset(Dataset):
    """A detection_train_data split (`<split>/label.txt` + `<split>/images/`); `transform` maps a DetectionSample. A
    face outside its image (labels.face_problems) raises DataFormatError naming its line."""

    def __init__(
        self, split_dir: str | os.PathLike, transform: Callable[[DetectionSample], object] | None = None
    ) -> None:
        self.label_path = Path(split_dir) / LABEL_FILE
        self.style, self.labels = read_labels(self.label_path)
        self.paths = resolve_images(self.label_path, self.labels)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> DetectionSample | object:
        lab = self.labels[index]
        image = read_image(self.paths[index])
        problems = face_problems(self.label_path, lab, (image.shape[1], image.shape[0]))  # as eval-detect, inspect
        if problems:
            raise DataFormatError(problems[0])
        sample = DetectionSample(image, lab.boxes, lab.landmarks, lab.landmark_mask, self.paths[index])
        return self.transform(sample) if self.transform else sample
