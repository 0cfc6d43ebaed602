"""Detect, align, embed: the path every photo takes in build-db, recognize and evaluate-gallery."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from facekit import DEFAULT_MAX_PIXELS
from facekit.align import align_face
from facekit.data.images import photo_errors, photo_failure
from facekit.detection.faces import DetectSettings, Face

T = TypeVar("T")
_END = object()  # timed_each: the end of its items


def _area(face: Face, shape: tuple[int, int]) -> float:
    return float((face.box[2] - face.box[0]) * (face.box[3] - face.box[1]))


def _centred(face: Face, shape: tuple[int, int]) -> float:
    cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
    return -float((cx - shape[1] / 2) ** 2 + (cy - shape[0] / 2) ** 2)


# Which single face stands for a photo of one person: name -> key(face, photo (height, width)), the highest wins.
PICKS: dict[str, Callable[[Face, tuple[int, int]], float]] = {
    "largest": _area,  # the largest box
    "center": _centred,  # the box whose centre is nearest the photo's: loose crops around one person
    "score": lambda face, shape: face.score,  # the highest detection score
}


@dataclass
class FacePipeline:
    """A detector (any object with .detect(image, settings) -> [Face]) and a Recognizer; `flip` averages each crop's
    embedding with its mirror image's; photos over `max_pixels` are refused before they are decoded.

    `on_stage(stage, seconds)`, when given, hears how long each call of a stage took: "detect", "align" and "embed"
    here, and "read" and "search" in the batch loops that time them with `timed` / `timed_each` (recognize_images).
    """

    detector: object
    recognizer: object
    settings: DetectSettings = DetectSettings()
    flip: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    on_stage: Callable[[str, float], None] | None = None

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Tell on_stage how long the block took (nothing without on_stage)."""
        if self.on_stage is None:
            yield
            return
        start = time.perf_counter()
        try:
            yield
        finally:
            self.on_stage(stage, time.perf_counter() - start)

    def timed_each(self, stage: str, items: Iterable[T]) -> Iterator[T]:
        """The items of `items`, on_stage told how long producing each took."""
        iterator = iter(items)
        while True:
            with self.timed(stage):
                item = next(iterator, _END)
            if item is _END:
                return
            yield item

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces with landmarks in BGR uint8 [H, W, 3], strongest first (faces without landmarks cannot be aligned)."""
        with self.timed("detect"):
            return [face for face in self.detector.detect(image, self.settings) if face.landmarks is not None]

    def crops(self, images: Sequence[np.ndarray], faces: Sequence[Face]) -> np.ndarray:
        """Aligned crops of faces[i] in images[i], warped onto the recognizer's own template: uint8 [M, S, S, 3]
        (S = the recognizer's input size)."""
        size, points = self.recognizer.input_size, self.recognizer.template
        if not faces:
            return np.zeros((0, size, size, 3), np.uint8)
        with self.timed("align"):
            pairs = zip(images, faces, strict=True)
            return np.stack([align_face(image, face.landmarks, size, points) for image, face in pairs])

    def embed(self, images: Sequence[np.ndarray], faces: Sequence[Face]) -> np.ndarray:
        """L2-normalised embeddings of faces[i] in images[i], in one batched run: float32 [M, D]."""
        return self.embed_crops(self.crops(images, faces))

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """L2-normalised embeddings of aligned crops uint8 [M, S, S, 3] (from crops()), in one batched run:
        float32 [M, D]. Batch jobs keep the crops, not the photos, until a batch is full."""
        if not len(crops):
            return np.zeros((0, self.recognizer.embedding_size), np.float32)
        with self.timed("embed"):
            return self.recognizer.embed(crops, flip=self.flip)


def pick_index(faces: Sequence[Face], pick: str, shape: tuple[int, int]) -> int:
    """Index of the one face (of `faces`, not empty) a photo of (height, width) `shape` stands for (PICKS)."""
    if pick not in PICKS:
        raise ValueError(f"unknown pick {pick!r}; known: {', '.join(PICKS)}")
    key = PICKS[pick]
    return max(range(len(faces)), key=lambda i: key(faces[i], shape))


def pick_face(faces: Sequence[Face], pick: str = "largest", shape: tuple[int, int] | None = None) -> Face:
    """The face pick_index chooses; "center" needs the photo's (height, width) `shape`."""
    if shape is None and pick == "center":
        raise ValueError("pick 'center' needs the photo's shape")
    return faces[pick_index(faces, pick, shape or (0, 0))]


@dataclass
class Photo:
    """One photo after detect-pick-align: its faces with landmarks (strongest first), the picked one's index and its
    aligned crop uint8 [S, S, 3] (None without a face), or the one-line `error` that stopped the work on it. The
    decoded photo itself is not kept."""

    index: int
    path: Path
    shape: tuple[int, int]  # (height, width)
    faces: list[Face] = field(default_factory=list)
    picked: int | None = None
    crop: np.ndarray | None = None
    error: str | None = None

    @property
    def face(self) -> Face | None:
        return None if self.picked is None else self.faces[self.picked]


def align_each(
    images: Iterable[tuple[int, Path, np.ndarray]],
    detect: Callable[[np.ndarray], list[Face]],
    *,
    size: int,
    points: np.ndarray | None = None,
    pick: str = "largest",
    workers: int = 1,
) -> Iterator[Photo]:
    """Detect, pick and align one face in each (position, path, BGR image) of `images` (as data.images.read_each
    yields them) onto the template `points` (crop pixels; None: ArcFace's scaled to `size`), in input order;
    `detect` gives a photo's faces with landmarks (FacePipeline.detect). A photo
    whose work fails (data.images.photo_errors: OpenCV, out of memory) comes out with its `error` set, and the rest
    go on. `workers` > 1 runs that many photos at once in threads (ONNX Runtime, PyTorch and
    OpenCV release the GIL); at most 2 x workers decoded photos are held at once."""
    if pick not in PICKS:
        raise ValueError(f"unknown pick {pick!r}; known: {', '.join(PICKS)}")

    errors = photo_errors()

    def one(index: int, path: Path, image: np.ndarray) -> Photo:
        photo = Photo(index, path, image.shape[:2])
        try:
            faces = detect(image)
            picked = pick_index(faces, pick, photo.shape) if faces else None
            crop = None if picked is None else align_face(image, faces[picked].landmarks, size, points)
        except errors as exc:
            photo.error = photo_failure(path, exc)
            return photo
        photo.faces, photo.picked, photo.crop = faces, picked, crop
        return photo

    if workers <= 1:
        for item in images:
            yield one(*item)
        return
    from concurrent.futures import ThreadPoolExecutor

    pending: deque = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="align") as pool:
        try:
            for item in images:
                pending.append(pool.submit(one, *item))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def load_pipeline(
    detector_path: str | os.PathLike,
    recognizer_path: str | os.PathLike,
    *,
    device: str = "cpu",
    backend: str = "auto",
    settings: DetectSettings = DetectSettings(),
    flip: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    session_options=None,
) -> FacePipeline:
    """Both models from their paths (facekit model directories, model.pt files or insightface-convention .onnx);
    `session_options` (an onnxruntime.SessionOptions) for the ONNX ones."""
    from facekit.runtime.detector import load_face_detector
    from facekit.runtime.recognizer import load_face_recognizer

    detector = load_face_detector(detector_path, device, backend, session_options)
    recognizer = load_face_recognizer(recognizer_path, device, backend, session_options)
    return FacePipeline(detector, recognizer, settings, flip, max_pixels)
