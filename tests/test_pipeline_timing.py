"""FacePipeline's timing hook: on_stage hears each stage's calls (what bench/bench_pipeline.py reports), and the
pipeline works the same without it."""

from __future__ import annotations

import numpy as np

from facekit.align import ARCFACE_TEMPLATE
from facekit.detection.faces import Face
from facekit.runtime.pipeline import FacePipeline


class OneFace:
    def detect(self, image, settings):
        return [Face(np.array([10.0, 10.0, 90.0, 90.0]), 0.9, np.asarray(ARCFACE_TEMPLATE, np.float64) * 0.8)]


class Constant:
    input_size, embedding_size, template = 112, 4, None

    def embed(self, crops, flip=False):
        return np.tile(np.eye(4, dtype=np.float32)[:1], (len(crops), 1))


def test_stages_are_reported_and_optional():
    heard: list[tuple[str, float]] = []
    images = [np.zeros((100, 100, 3), np.uint8)] * 3
    pipeline = FacePipeline(OneFace(), Constant(), on_stage=lambda stage, seconds: heard.append((stage, seconds)))
    read = list(pipeline.timed_each("read", images))
    faces = [pipeline.detect(image)[0] for image in read]
    embeddings = pipeline.embed(read, faces)
    with pipeline.timed("search"):
        pass
    assert [stage for stage, _ in heard] == ["read"] * 4 + ["detect"] * 3 + ["align", "embed", "search"]
    assert all(seconds >= 0 for _, seconds in heard)
    quiet = FacePipeline(OneFace(), Constant())
    assert np.array_equal(quiet.embed(images, [quiet.detect(image)[0] for image in images]), embeddings)
    assert all(a is b for a, b in zip(quiet.timed_each("read", images), images, strict=True))
