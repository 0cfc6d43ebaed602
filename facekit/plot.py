"""Line plots (precision-recall, ROC) drawn with OpenCV into BGR uint8 images, and their PNG output."""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facekit.fileio import atomic_write

LEGEND_CORNERS = ("top left", "top right", "bottom left", "bottom right")
UNIT_TICKS = tuple((k / 10, f"{k / 10:.1f}") for k in range(11))  # 0.0, 0.1, ..., 1.0

_COLOURS = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140)]  # BGR
_FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX
_INK = (40, 40, 40)


@dataclass(frozen=True)
class Axis:
    """A plot axis from lo to hi, linear or log10; ticks are (value, text) pairs, each with a grid line. A log10 axis
    draws its tick grid lines darker, and lighter ones at 2..9 times each power of ten."""

    label: str
    lo: float = 0.0
    hi: float = 1.0
    ticks: Sequence[tuple[float, str]] = UNIT_TICKS
    log10: bool = False

    def to_pixels(self, values: np.ndarray | float, start: float, end: float) -> np.ndarray:
        """Pixel coordinates of values, lo at start and hi at end (values beyond lo..hi at the nearer end)."""
        scale = np.log10 if self.log10 else np.asarray
        lo, hi = scale(self.lo), scale(self.hi)
        return start + (scale(np.clip(values, self.lo, self.hi)) - lo) / (hi - lo) * (end - start)

    def minor_grid(self) -> list[float]:
        """The values of the lighter grid lines: 2..9 times each power of ten within lo..hi on a log10 axis."""
        if not self.log10:
            return []
        decades = range(int(np.floor(np.log10(self.lo))), int(np.ceil(np.log10(self.hi))))
        return [v for e in decades for m in range(2, 10) if self.lo <= (v := m * 10.0**e) <= self.hi]


def render_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    x_axis: Axis,
    y_axis: Axis,
    title: str,
    legend_corner: str,
    size: tuple[int, int] = (720, 600),
) -> np.ndarray:
    """A BGR uint8 [H, W, 3] plot with one line per curve (legend label -> (x [K], y [K]); points that are not finite
    are left out) and, unless there is none, a legend in legend_corner (one of LEGEND_CORNERS). size: (width, height).
    """
    import cv2

    if legend_corner not in LEGEND_CORNERS:
        raise ValueError(f"legend_corner {legend_corner!r} is not one of {', '.join(LEGEND_CORNERS)}")
    width, height = size
    frame = (78, 52, width - 28, height - 66)  # x1, y1, x2, y2 of the axes box
    x0, y0, x1, y1 = frame[0] + 8, frame[1] + 8, frame[2] - 8, frame[3] - 8  # where lo..hi is drawn
    image = np.full((height, width, 3), 255, np.uint8)
    for value in x_axis.minor_grid():
        x = round(float(x_axis.to_pixels(value, x0, x1)))
        cv2.line(image, (x, frame[1]), (x, frame[3]), (244, 244, 244), 1)
    for value in y_axis.minor_grid():
        y = round(float(y_axis.to_pixels(value, y1, y0)))
        cv2.line(image, (frame[0], y), (frame[2], y), (244, 244, 244), 1)
    for value, text in x_axis.ticks:
        x = round(float(x_axis.to_pixels(value, x0, x1)))
        cv2.line(image, (x, frame[1]), (x, frame[3]), _grid_colour(x_axis), 1)
        cv2.line(image, (x, frame[3]), (x, frame[3] + 5), _INK, 1)
        _text(image, text, x, frame[3] + 22, align="centre", scale=0.42)
    for value, text in y_axis.ticks:
        y = round(float(y_axis.to_pixels(value, y1, y0)))
        cv2.line(image, (frame[0], y), (frame[2], y), _grid_colour(y_axis), 1)
        cv2.line(image, (frame[0] - 5, y), (frame[0], y), _INK, 1)
        _text(image, text, frame[0] - 9, y + 5, align="right", scale=0.42)
    cv2.rectangle(image, frame[:2], frame[2:], _INK, 1)
    _text(image, x_axis.label, (x0 + x1) / 2, height - 16, align="centre", scale=0.55)
    _vertical_text(image, y_axis.label, 20, (y0 + y1) / 2, scale=0.55)
    _text(image, title, (x0 + x1) / 2, 32, align="centre", scale=0.62)
    colours = dict(zip(curves, itertools.cycle(_COLOURS)))
    for label, (x, y) in curves.items():
        finite = np.isfinite(x) & np.isfinite(y)
        points = np.stack([x_axis.to_pixels(x[finite], x0, x1), y_axis.to_pixels(y[finite], y1, y0)], 1)
        if len(points):
            cv2.polylines(image, [np.round(points * 16).astype(np.int32)], False, colours[label], 2, cv2.LINE_AA, 4)
    if curves:
        box_width = 52 + max(cv2.getTextSize(label, _FONT, 0.48, 1)[0][0] for label in curves)
        box_height = 8 + 24 * len(curves)
        vertical, horizontal = legend_corner.split()
        left = frame[0] + 12 if horizontal == "left" else frame[2] - 12 - box_width
        top = frame[1] + 12 if vertical == "top" else frame[3] - 12 - box_height
        cv2.rectangle(image, (left, top), (left + box_width, top + box_height), (255, 255, 255), -1)
        cv2.rectangle(image, (left, top), (left + box_width, top + box_height), (190, 190, 190), 1)
        for i, label in enumerate(curves):
            y = top + 22 + 24 * i
            cv2.line(image, (left + 10, y - 5), (left + 38, y - 5), colours[label], 2, cv2.LINE_AA)
            _text(image, label, left + 46, y, scale=0.48)
    return image


def write_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a BGR uint8 image as a PNG, atomically; returns the path."""
    import cv2

    ok, png = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"{path}: OpenCV could not encode the PNG")
    with atomic_write(path, "wb") as f:
        f.write(png.tobytes())
    return Path(path)


def _grid_colour(axis: Axis) -> tuple[int, int, int]:
    return (224, 224, 224) if axis.log10 else (232, 232, 232)


def _text(image: np.ndarray, text: str, x: float, y: float, *, align: str = "left", scale: float = 0.45) -> None:
    """Draw dark text with its baseline at y, starting at (align left), centred on (centre) or ending at (right) x."""
    import cv2

    width = cv2.getTextSize(text, _FONT, scale, 1)[0][0]
    shift = {"left": 0, "centre": width / 2, "right": width}[align]
    cv2.putText(image, text, (round(x - shift), round(y)), _FONT, scale, _INK, 1, cv2.LINE_AA)


def _vertical_text(image: np.ndarray, text: str, x: float, y: float, scale: float = 0.5) -> None:
    """Draw text rotated 90 degrees counter-clockwise, centred on (x, y)."""
    import cv2

    (width, height), baseline = cv2.getTextSize(text, _FONT, scale, 1)
    patch = np.full((height + baseline + 4, width + 4, 3), 255, np.uint8)
    cv2.putText(patch, text, (2, height + 2), _FONT, scale, _INK, 1, cv2.LINE_AA)
    patch = cv2.rotate(patch, cv2.ROTATE_90_COUNTERCLOCKWISE)
    top, left = round(y - patch.shape[0] / 2), round(x - patch.shape[1] / 2)
    region = image[top : top + patch.shape[0], left : left + patch.shape[1]]
    np.minimum(region, patch, out=region)
