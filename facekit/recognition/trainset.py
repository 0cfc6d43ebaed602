"""What train-recognize reads: the training source (RecordIO set or identity folders), its labels and people, and
the crops as a dataset indexed by (epoch, sample), so that every random change is keyed by (seed, epoch, sample)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from facekit.data.datasets import FaceSource
from facekit.data.images import decode_image
from facekit.errors import DataFormatError
from facekit.norms import ARCFACE, Normalization
from facekit.recognition.augment import Augment, augment

if TYPE_CHECKING:
    from facekit.recognition.config import RecognizerConfig


SIZE_ADVICE = "make them with `facekit align --recognizer MODEL` or `pack-rec --size`"


def check_crop_size(source, data_path: Path, config: RecognizerConfig) -> None:
    """DataFormatError when a RecordIO set's `property` gives crops of another size than config's backbone takes
    (folders of crops are checked photo by photo as they are read)."""
    prop = getattr(source, "prop", None)
    size = config.input_size
    if prop is not None and (prop.height, prop.width) != (size, size):
        raise DataFormatError(f"{data_path}: property says {prop.width}x{prop.height} crops; {config.backbone} takes "
                              f"{size}x{size} crops ({SIZE_ADVICE})")  # fmt: skip


def source_labels(source) -> list[int]:
    """The class of every item (reads each record's header for RecordIO sets)."""
    if hasattr(source, "items"):
        return [label for _, label in source.items]
    if source.identity_ranges:
        labels = [0] * len(source.image_keys)
        for ident, (a, b) in source.identity_ranges.items():
            for key in range(a, b):
                labels[key - 1] = ident
        return labels
    return [source.read(k)[0] for k in source.image_keys]


def training_people(source) -> list[str] | None:
    """The names of the people in the training data: identity folder names, or for a RecordIO set the first path
    component of its .lst entries (`person/file.jpg`, as pack-rec writes them); None when unknown."""
    if hasattr(source, "identities"):
        return list(source.identities)
    if getattr(source, "lst_path", None) is None:
        return None
    from facekit.data.lst import read_lst

    _, entries = read_lst(source.lst_path)
    paths = [e.path.replace("\\", "/") for e in entries]
    if not paths or not all("/" in p for p in paths):
        return None
    return sorted({p.split("/", 1)[0] for p in paths})


class KeyedFaces(Dataset):
    """Training crops indexed by (epoch, i) -> (float32 [3, H, W] normalised RGB, class). The random changes of
    sample i in epoch e come from a generator seeded with (seed, e, i): the same in any worker, after any restart."""

    def __init__(
        self,
        source: FaceSource,
        *,
        seed: int,
        aug: Augment,
        norm: Normalization = ARCFACE,
        size: int | None = None,
        name: str = "",
        what: str = "the model takes",
    ) -> None:
        self.source, self.seed, self.aug, self.norm, self.size = source, seed, aug, norm, size
        self.name, self.what = name or type(source).__name__, what

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        epoch, index = key
        label, data = self.source[index]
        where = self.source.where(index) if hasattr(self.source, "where") else self.name
        image = decode_image(data, f"{where}: item {index}")
        if self.size is not None and image.shape[:2] != (self.size, self.size):
            raise DataFormatError(f"{where}: item {index} is {image.shape[1]}x{image.shape[0]}; {self.what} "
                                  f"{self.size}x{self.size} crops ({SIZE_ADVICE})")  # fmt: skip
        image = augment(image, np.random.default_rng([self.seed, epoch, index]), self.aug)
        return torch.from_numpy(self.norm(image)), label


class KeyedSampler(Sampler):
    """Pairs each index (or batch of indices) of `sampler` with the epoch it was drawn for."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        epoch = self.sampler.epoch
        for item in self.sampler:
            yield [(epoch, i) for i in item] if isinstance(item, list) else (epoch, item)
