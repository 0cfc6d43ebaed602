"""Detect, align, embed: the path every photo takes in build-db, recognize and evaluate-gallery."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from facekit.align import align_face
from facekit.runtime.detector import DetectSettings, Face

PICKS = ("largest", "score")  # which single face of a photo build-db keeps


@dataclass
class FacePipeline:
    """A detector (any object with .detect(image, settings) -> [Face]) and a Recognizer; `flip` averages each crop's
    embedding with its mirror image's."""

    detector: object
    recognizer: object
    settings: DetectSettings = DetectSettings()
    flip: bool = False

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces with landmarks in BGR uint8 [H, W, 3], strongest first (faces without landmarks cannot be aligned)."""
        return [face for face in self.detector.detect(image, self.settings) if face.landmarks is not None]

    def crops(self, images: Sequence[np.ndarray], faces: Sequence[Face]) -> np.ndarray:
        """Aligned crops of faces[i] in images[i]: uint8 [M, S, S, 3] (S = the recognizer's input size)."""
        size = self.recognizer.input_size
        if not faces:
            return np.zeros((0, size, size, 3), np.uint8)
        return np.stack([align_face(image, face.landmarks, size) for image, face in zip(images, faces, strict=True)])

    def embed(self, images: Sequence[np.ndarray], faces: Sequence[Face]) -> np.ndarray:
        """L2-normalised embeddings of faces[i] in images[i], in one batched run: float32 [M, D]."""
        return self.embed_crops(self.crops(images, faces))

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """L2-normalised embeddings of aligned crops uint8 [M, S, S, 3] (from crops()), in one batched run:
        float32 [M, D]. Batch jobs keep the crops, not the photos, until a batch is full."""
        if not len(crops):
            return np.zeros((0, self.recognizer.embedding_size), np.float32)
        return self.recognizer.embed(crops, flip=self.flip)


def pick_face(faces: Sequence[Face], pick: str = "largest") -> Face:
    """The one face a photo of one person stands for: the largest box, or the highest detection score."""
    if pick not in PICKS:
        raise ValueError(f"unknown pick {pick!r}; known: {', '.join(PICKS)}")
    if pick == "score":
        return max(faces, key=lambda f: f.score)
    return max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))


def load_pipeline(
    detector_path: str | os.PathLike,
    recognizer_path: str | os.PathLike,
    *,
    device: str = "cpu",
    backend: str = "auto",
    settings: DetectSettings = DetectSettings(),
    flip: bool = False,
) -> FacePipeline:
    """Both models from their paths (facekit model directories, model.pt files or insightface-convention .onnx)."""
    from facekit.runtime.detector import load_face_detector
    from facekit.runtime.recognizer import load_face_recognizer

    detector = load_face_detector(detector_path, device, backend)
    return FacePipeline(detector, load_face_recognizer(recognizer_path, device, backend), settings, flip)
