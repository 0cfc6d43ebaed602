"""Input normalisations: the fast OpenCV path equals the formula."""

from __future__ import annotations

import numpy as np
import pytest

from facekit.norms import NORMALIZATIONS, Normalization


@pytest.mark.parametrize(
    "norm", [*NORMALIZATIONS.values(), Normalization("odd", (1.0, 2.0, 3.0), (1.0, 2.0, 4.0), True)]
)
def test_matches_formula(norm):
    image = np.random.default_rng(0).integers(0, 256, (7, 9, 3)).astype(np.uint8)
    ordered = image[:, :, ::-1] if norm.rgb else image
    expected = ((ordered.astype(np.float32) - np.float32(norm.mean)) / np.float32(norm.std)).transpose(2, 0, 1)
    out = norm(image)
    assert out.shape == (3, 7, 9) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_known_values():
    pixel = np.array([[[0, 127, 255]]], np.uint8)  # B, G, R
    np.testing.assert_allclose(NORMALIZATIONS["arcface"](pixel)[:, 0, 0], [1.0, -0.5 / 127.5, -1.0], atol=1e-6)
    np.testing.assert_allclose(NORMALIZATIONS["retinaface"](pixel)[:, 0, 0], [-104.0, 10.0, 132.0])
    dlib = [(255 - 122.782) / 256, (127 - 117.001) / 256, -104.298 / 256]  # dlib's input_rgb_image: R, G, B
    np.testing.assert_allclose(NORMALIZATIONS["dlib"](pixel)[:, 0, 0], dlib, atol=1e-6)
