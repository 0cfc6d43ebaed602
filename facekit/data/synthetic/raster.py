"""Anti-aliased drawing on uint8 images at sub-pixel positions, and colour helpers. Points are float [N, 2] (x, y)."""

from __future__ import annotations

import numpy as np

Colour = tuple[float, float, float]  # BGR, 0..255

_SHIFT = 4  # cv2 draws at sub-pixel positions given as fixed-point numbers with 4 fraction bits
_LINE_AA = 16  # cv2.LINE_AA, without importing cv2 at module import


def _fixed(points: np.ndarray) -> np.ndarray:
    """Float [N, 2] points as int32 fixed-point for cv2 drawing with shift=_SHIFT."""
    return np.round(np.asarray(points, np.float64) * (1 << _SHIFT)).astype(np.int32)


def fill_poly(image: np.ndarray, points: np.ndarray, colour: Colour | float) -> None:
    import cv2

    cv2.fillPoly(image, [_fixed(points)], colour, _LINE_AA, _SHIFT)


def polyline(image: np.ndarray, points: np.ndarray, colour: Colour, thickness: float) -> None:
    import cv2

    cv2.polylines(image, [_fixed(points)], False, colour, max(1, round(thickness)), _LINE_AA, _SHIFT)


def ellipse(
    image: np.ndarray,
    centre: tuple[float, float],
    axes: tuple[float, float],
    colour: Colour | float,
    thickness: int = -1,
    arc: tuple[float, float] = (0, 360),
    angle: float = 0.0,
) -> None:
    import cv2

    c = tuple(int(round(v * (1 << _SHIFT))) for v in centre)
    ax = tuple(max(1, int(round(v * (1 << _SHIFT)))) for v in axes)
    cv2.ellipse(image, c, ax, angle, arc[0], arc[1], colour, thickness, _LINE_AA, _SHIFT)


def paint(image: np.ndarray, mask: np.ndarray, colour: Colour) -> None:
    """Blend `colour` into uint8 `image` [H, W, 3] through uint8 coverage `mask` [H, W], in place."""
    rows = np.flatnonzero(mask.any(1))
    if rows.size:
        band = slice(rows[0], rows[-1] + 1)
        alpha = mask[band, :, None].astype(np.float32) / 255
        image[band] = (image[band] * (1 - alpha) + np.asarray(colour, np.float32) * alpha + 0.5).astype(np.uint8)


def scaled(colour: Colour, factor: float) -> Colour:
    return tuple(float(min(255.0, v * factor)) for v in colour)


def curve(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    return np.stack([xs, np.broadcast_to(ys, np.shape(xs))], 1)
