"""Drawing one head: the canonical frame, where each photo's face parts go, and the painted, shaded, faded head.

Heads are laid out in canonical coordinates: a CANVAS x CANVAS frame whose 5 landmarks sit near `template(224)` shifted
by MARGIN. A head is drawn at some scale of that frame, on black, with a soft alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from facekit.align import template
from facekit.data.synthetic.identity import Identity, Variation
from facekit.data.synthetic.raster import Colour, curve, ellipse, fill_poly, paint, polyline, scaled

CANVAS = 320
MARGIN = 48


@dataclass(frozen=True)
class Layout:
    """Where one photo's face parts go, in canonical pixels. landmarks float32 [5, 2], contour float32 [N, 2]."""

    landmarks: np.ndarray
    centre: tuple[float, float]  # of the face outline
    half_width: float
    forehead: float
    lower: float  # outline centre to chin
    contour: np.ndarray

    @property
    def extent(self) -> np.ndarray:
        """Corners (x1, y1, x2, y2) bounding everything visible of the head: the fade ellipse of `_alpha`, clipped."""
        cx, cy = self.centre
        rx, ry = 1.5 * self.half_width, 0.72 * (self.forehead + self.lower)
        return np.clip([cx - rx, cy - 5 - ry, cx + rx, cy - 5 + ry], 0, CANVAS).astype(np.float32)


class _Canvas:
    """A head's drawing surface at `scale` x canonical size: image uint8 [S, S, 3], coverage masks `head` (silhouette)
    and `hair` uint8 [S, S]. Its methods take canonical coordinates and lengths."""

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.size = round(CANVAS * scale)
        self.image = np.zeros((self.size, self.size, 3), np.uint8)
        self.head = np.zeros((self.size, self.size), np.uint8)
        self.hair = np.zeros_like(self.head)

    def poly(self, target: np.ndarray, points: np.ndarray, colour: Colour | float) -> None:
        fill_poly(target, np.asarray(points) * self.scale, colour)

    def line(self, target: np.ndarray, points: np.ndarray, colour: Colour, thickness: float) -> None:
        polyline(target, np.asarray(points) * self.scale, colour, thickness * self.scale)

    def ellipse(
        self,
        target: np.ndarray,
        centre: tuple[float, float],
        axes: tuple[float, float],
        colour: Colour | float,
        thickness: float = -1,
        arc: tuple[float, float] = (0, 360),
        angle: float = 0.0,
    ) -> None:
        k = self.scale
        width = -1 if thickness < 0 else max(1, round(thickness * k))
        ellipse(target, (centre[0] * k, centre[1] * k), (axes[0] * k, axes[1] * k), colour, width, arc, angle)


def _outline(
    centre: tuple[float, float], half_width: float, forehead: float, lower: float, jaw: float, taper: float, n: int = 72
) -> np.ndarray:
    """Face outline [n, 2]: a superellipse, rounder on top, `jaw`-square and tapered towards the chin."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    below = s > 0
    exponent = np.where(below, 2 / jaw, 2 / 2.2)
    x = np.sign(c) * np.abs(c) ** exponent * half_width * np.where(below, 1 - taper * s**2, 1)
    y = np.sign(s) * np.abs(s) ** exponent * np.where(below, lower, forehead)
    return np.stack([centre[0] + x, centre[1] + y], 1).astype(np.float32)


def face_layout(ident: Identity, var: Variation) -> Layout:
    """Landmarks and outline of one photo: the template moved by the identity's geometry, the yaw and the jitter."""
    canon = template(224) + MARGIN
    mid = CANVAS / 2
    eye_half = (canon[1, 0] - canon[0, 0]) / 2 * ident.eye_spacing * (1 - 0.3 * abs(var.yaw))
    mouth_half = (canon[4, 0] - canon[3, 0]) / 2 * ident.mouth_width * (1 + 0.12 * var.smile)
    eye_y, mouth_y = canon[:2, 1] + ident.eye_height, canon[3:, 1] + ident.mouth_height - 2 * var.smile
    eye_x, nose_x, mouth_x = mid + 14 * var.yaw, mid + 40 * var.yaw, mid + 26 * var.yaw
    landmarks = np.array(
        [
            [eye_x - eye_half, eye_y[0]],
            [eye_x + eye_half, eye_y[1]],
            [nose_x, canon[2, 1] + ident.nose_length],
            [mouth_x - mouth_half, mouth_y[0]],
            [mouth_x + mouth_half, mouth_y[1]],
        ],
        np.float32,
    ) + np.asarray(var.jitter, np.float32)
    centre = (mid - 12 * var.yaw, float(eye_y.mean()) + 16)
    lower = float(mouth_y.mean()) + ident.chin_gap + 6 * var.mouth_open - centre[1]
    contour = _outline(centre, ident.face_width, ident.forehead, lower, ident.jaw, ident.chin_taper)
    return Layout(landmarks, centre, ident.face_width, ident.forehead, lower, contour)


def _draw_back_hair(cv: _Canvas, ident: Identity, lay: Layout) -> None:
    """Long hair falling behind the head and neck."""
    cx, cy = lay.centre
    width = lay.half_width * 1.12 + ident.hair_volume
    top = _outline((cx, cy - 4), width, lay.forehead + 8 + ident.hair_volume, 1, 2.2, 0)
    end = cy + lay.lower * ident.hair_length
    bottom = curve(np.linspace(cx + width + 6, cx - width - 6, 12), end + 10 * np.linspace(-1, 1, 12) ** 2)
    shape = np.concatenate([top[top[:, 1] <= cy - 4], bottom])
    for target, colour in ((cv.image, scaled(ident.hair, 0.8)), (cv.head, 255), (cv.hair, 255)):
        cv.poly(target, shape, colour)


def _draw_neck_and_ears(cv: _Canvas, ident: Identity, lay: Layout) -> None:
    cx, cy = lay.centre
    w = lay.half_width
    neck = np.array([[cx - 0.55 * w, cy], [cx + 0.55 * w, cy], [cx + 0.6 * w, CANVAS], [cx - 0.6 * w, CANVAS]])
    for target, neck_colour, ear_colour in (
        (cv.image, scaled(ident.skin, 0.78), scaled(ident.skin, 0.9)),
        (cv.head, 255, 255),
    ):
        cv.poly(target, neck, neck_colour)
        for side in (-1, 1):
            cv.ellipse(target, (cx + side * (w - 3), cy - 2), (11, 23), ear_colour)


def _draw_face(cv: _Canvas, ident: Identity, lay: Layout) -> None:
    """Skin inside the outline; the outline hides any hair drawn behind it."""
    cv.poly(cv.image, lay.contour, ident.skin)
    cv.poly(cv.head, lay.contour, 255)
    cv.poly(cv.hair, lay.contour, 0)


def _draw_top_hair(cv: _Canvas, ident: Identity, lay: Layout) -> None:
    """The hair cap: an ellipse a little larger than the outline, cut off below the hairline."""
    cx, cy = lay.centre
    fringe = ident.hair_style == 3
    depth = lay.forehead * (0.45 if fringe else ident.hairline * 0.6)
    droop = lay.forehead * (0.08 if fringe else 0.3)
    xs = np.linspace(cx - 1.5 * lay.half_width, cx + 1.5 * lay.half_width, 41)
    hairline = cy - lay.forehead + depth + droop * ((xs - cx) / lay.half_width) ** 2
    if fringe:
        hairline -= 8 * (np.arange(xs.size) % 2)
    below = np.concatenate([curve(xs, hairline), [[xs[-1], CANVAS], [xs[0], CANVAS]]])
    cap = np.zeros_like(cv.head)
    cv.ellipse(cap, (cx, cy - 4), (lay.half_width + 5 + ident.hair_volume, lay.forehead + 4 + ident.hair_volume), 255)
    cv.poly(cap, below, 0)
    paint(cv.image, cap, ident.hair)
    np.maximum(cv.head, cap, out=cv.head)
    np.maximum(cv.hair, cap, out=cv.hair)


def _draw_beard(cv: _Canvas, ident: Identity, lay: Layout) -> None:
    """Moustache, plus a chin patch (goatee) or the whole lower face up to the sideburns (full beard)."""
    (lx, ly), (rx, ry) = lay.landmarks[3], lay.landmarks[4]
    mid, half, mouth_y = (lx + rx) / 2, (rx - lx) / 2, (ly + ry) / 2
    lip_top = mouth_y - ident.lip_thickness * 0.8
    u = np.linspace(-1, 1, 16)
    moustache = np.concatenate(
        [
            curve(mid + u * half * 1.1, lip_top + 8 * u**2),
            curve(mid - u * half * 0.9, (lip_top + lay.landmarks[2, 1]) / 2 + 4),
        ]
    )
    beard = np.zeros_like(cv.head)
    cv.poly(beard, moustache, 255)
    cx, cy = lay.centre
    if ident.beard == 2:
        cv.ellipse(beard, (mid, cy + lay.lower - 16), (half * 0.75, 20), 255)
    elif ident.beard == 3:
        xs = np.linspace(cx - lay.half_width * 1.05, cx + lay.half_width * 1.05, 33)
        edge = np.abs(xs - cx) / lay.half_width
        upper = np.where(edge > 0.7, cy + 10 + (1.05 - edge) * 60, mouth_y + 8)
        cv.poly(beard, np.concatenate([curve(xs, upper), [[xs[-1], CANVAS], [xs[0], CANVAS]]]), 255)
        face = np.zeros_like(beard)
        cv.poly(face, lay.contour, 255)
        np.minimum(beard, np.maximum(face, cv.hair), out=beard)
    paint(cv.image, beard, scaled(ident.hair, 0.9))
    np.maximum(cv.hair, beard, out=cv.hair)


def _draw_moles(cv: _Canvas, ident: Identity, lay: Layout) -> None:
    cx, cy = lay.centre
    for u, v in ident.moles:
        cv.ellipse(cv.image, (cx + u * lay.half_width, cy + v * lay.lower), (2.2, 2.2), scaled(ident.skin, 0.45))


def _draw_eye(cv: _Canvas, centre: np.ndarray, ident: Identity, width: float, openness: float) -> None:
    """Almond eye with iris and pupil centred on the landmark; the lids are redrawn in skin over the iris overflow."""
    x, y = float(centre[0]), float(centre[1])
    half, iris = width / 2, width * 0.21
    rise = half * ident.eye_open * openness
    u = np.linspace(-1, 1, 17)
    upper = curve(x + u * half, y + 1 - rise * (1 - u**2) ** 0.7)
    lower = curve(x - u * half, y + 1 + 0.75 * rise * (1 - u**2) ** 0.9)
    image, skin, reach = cv.image, ident.skin, iris + 3
    cv.poly(image, np.concatenate([upper, lower]), (228, 230, 234))
    cv.ellipse(image, (x, y), (iris, iris), ident.iris)
    cv.ellipse(image, (x, y), (iris * 0.45, iris * 0.45), (18, 16, 16))
    cv.poly(image, np.concatenate([upper, [[x + half + 2, y - reach], [x - half - 2, y - reach]]]), skin)
    cv.poly(image, np.concatenate([lower, [[x - half - 2, y + reach], [x + half + 2, y + reach]]]), skin)
    cv.line(image, upper, scaled(skin, 0.3), max(1.5, width * 0.07))
    cv.line(image, lower[2:-2], scaled(skin, 0.7), 1)
    cv.line(image, curve(x + u[2:-2] * half * 0.9, y - rise - 3 - 2 * (1 - u[2:-2] ** 2)), scaled(skin, 0.78), 1)


def _draw_brow(cv: _Canvas, eye: np.ndarray, side: int, ident: Identity, var: Variation, width: float) -> None:
    """Eyebrow over the eye on image side `side` (-1 left, +1 right): thick at the inner end, tapering outwards."""
    x, y = float(eye[0]), float(eye[1]) - ident.brow_gap - var.brow_raise
    u = np.linspace(0, 1, 12)  # 0 at the inner end, 1 at the outer end
    xs = x - side * width * 0.6 + side * u * width * 1.25
    centre = y - 5 * np.sin(np.pi * np.clip(u * 1.2, 0, 1)) - ident.brow_tilt * u
    half = ident.brow_thickness * (1 - 0.55 * u) / 2
    band = np.concatenate([curve(xs, centre - half), curve(xs[::-1], (centre + half)[::-1])])
    cv.poly(cv.image, band, scaled(ident.hair, 0.75 if ident.hair[0] < 100 else 0.55))


def _draw_nose(cv: _Canvas, ident: Identity, var: Variation, lay: Layout) -> None:
    """Bridge shadow (away from the light), nose wings, nostrils and a highlight on the tip landmark."""
    x, y = (float(v) for v in lay.landmarks[2])
    w, skin, image = ident.nose_width, ident.skin, cv.image
    eye_y = float(lay.landmarks[:2, 1].mean())
    side = -1 if math.cos(var.light_angle) > 0 else 1
    cv.line(
        image,
        np.array([[x + side * w * 0.22 - 20 * var.yaw, eye_y + 8], [x + side * w * 0.3, y - 6]]),
        scaled(skin, 0.85),
        3,
    )
    for s in (-1, 1):
        cv.ellipse(
            image,
            (x + s * w * 0.37, y + 1),
            (w * 0.17, w * 0.2),
            scaled(skin, 0.68),
            2,
            (-70, 110) if s > 0 else (70, 250),
        )
        cv.ellipse(image, (x + s * w * 0.24, y + w * 0.16), (w * 0.12, w * 0.065), scaled(skin, 0.35), angle=s * 20)
    cv.ellipse(image, (x, y - 2), (w * 0.16, w * 0.12), scaled(skin, 1.08))


def _draw_mouth(cv: _Canvas, ident: Identity, var: Variation, lay: Layout) -> None:
    """Lips between the two corner landmarks; a smile lowers the middle, an open mouth shows teeth."""
    left, right = lay.landmarks[3], lay.landmarks[4]
    u = np.linspace(-1, 1, 21)
    xs = left[0] + (u + 1) / 2 * (right[0] - left[0])
    bulge = (1 - u**2) ** 0.6
    line = left[1] + (u + 1) / 2 * (right[1] - left[1]) + var.smile * (right[0] - left[0]) * 0.1 * (1 - u**2)
    gap = var.mouth_open * (right[0] - left[0]) * 0.25 * bulge
    bow = 1 - 0.3 * np.exp(-((u / 0.18) ** 2))
    top, bottom = line - gap / 2, line + gap / 2
    if var.mouth_open > 0:
        cv.poly(cv.image, np.concatenate([curve(xs, top), curve(xs, bottom)[::-1]]), (45, 35, 95))
        inner = slice(4, -4)
        teeth = np.concatenate([curve(xs[inner], top[inner]), curve(xs[inner], top[inner] + gap[inner] * 0.45)[::-1]])
        cv.poly(cv.image, teeth, (215, 225, 230))
    upper_lip = curve(xs, top - ident.lip_thickness * 0.8 * bulge * bow)
    lower_lip = curve(xs, bottom + ident.lip_thickness * bulge)
    cv.poly(cv.image, np.concatenate([upper_lip, curve(xs, top)[::-1]]), scaled(ident.lip, 0.88))
    cv.poly(cv.image, np.concatenate([curve(xs, bottom), lower_lip[::-1]]), ident.lip)
    cv.line(cv.image, curve(xs, top), scaled(ident.lip, 0.5), 1.5)
    for corner in (left, right):
        cv.ellipse(cv.image, (float(corner[0]), float(corner[1])), (1.6, 1.6), scaled(ident.lip, 0.45))


def _draw_glasses(cv: _Canvas, ident: Identity, lay: Layout) -> None:
    """Round or rectangular frames around the eyes, a bridge and the arms running to the face's edge."""
    (lx, ly), (rx, ry) = lay.landmarks[0], lay.landmarks[1]
    r = ident.eye_width * 0.72
    for x, y in ((lx, ly), (rx, ry)):
        if ident.glasses == 1:
            cv.ellipse(cv.image, (x, y), (r, r * 0.85), ident.frame, 3)
        else:
            h = r * 0.7
            cv.line(
                cv.image,
                np.array([[x - r, y - h], [x + r, y - h], [x + r, y + h], [x - r, y + h], [x - r, y - h]]),
                ident.frame,
                3,
            )
    cx = lay.centre[0]
    cv.line(
        cv.image, np.array([[lx + r, ly - 3], [(lx + rx) / 2, (ly + ry) / 2 - 6], [rx - r, ry - 3]]), ident.frame, 3
    )
    for x, y, edge in ((lx - r, ly - 3, cx - lay.half_width + 2), (rx + r, ry - 3, cx + lay.half_width - 2)):
        cv.line(cv.image, np.array([[x, y], [edge, y - 2]]), ident.frame, 3)


@cache
def _streaks() -> np.ndarray:
    """A fixed hair-strand texture (vertical streaks), float32 [CANVAS, 2 * CANVAS]; photos take shifted windows."""
    import cv2

    noise = np.random.default_rng(0).standard_normal((8, 96)).astype(np.float32)
    return cv2.resize(noise, (2 * CANVAS, CANVAS), interpolation=cv2.INTER_CUBIC)


def _shade(cv: _Canvas, var: Variation, lay: Layout, window: tuple[slice, slice], shift: int) -> np.ndarray:
    """Roundness, hair texture and the photo's lighting over `window` (rows, cols) of the canvas: float32 [h, w, 3]."""
    rows, cols = window
    cx, cy = lay.centre
    dx = (np.arange(cols.start, cols.stop, dtype=np.float32) / cv.scale - cx) / lay.half_width
    dy = (np.arange(rows.start, rows.stop, dtype=np.float32)[:, None] / cv.scale - cy) / (lay.forehead + lay.lower) * 2
    roundness = 1 - 0.3 * np.clip(dx**2 + dy**2 - 0.45, 0, 1)
    light = var.brightness * (1 + var.light_gain * (dx * math.cos(var.light_angle) + dy * math.sin(var.light_angle)))
    texture = 1 + (0.12 / 255) * _streaks()[rows, cols.start + shift : cols.stop + shift] * cv.hair[window]
    gain = (roundness * light * texture * var.contrast)[..., None] * np.asarray(var.tint, np.float32)
    return np.clip(cv.image[window] * gain + 128 * (1 - var.contrast), 0, 255)


def _alpha(cv: _Canvas, lay: Layout) -> np.ndarray:
    """The silhouette faded out by an ellipse around the face (soft edges, no paste seams): float32 [S, S]."""
    import cv2

    cx, cy = lay.centre
    grid = np.arange(cv.size, dtype=np.float32) / cv.scale
    dx = (grid - cx) / (lay.half_width * 1.5)
    dy = (grid[:, None] - cy + 5) / ((lay.forehead + lay.lower) * 0.72)
    fade = np.clip((1 - np.sqrt(dx**2 + dy**2)) * 6, 0, 1)
    return cv2.GaussianBlur(cv.head, (5, 5), 1.0).astype(np.float32) * (fade / 255)


def render_head(ident: Identity, var: Variation, lay: Layout, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Draw one photo of `ident` at `scale` x canonical size without background: premultiplied BGR + alpha,
    float32 [S, S, 4] (S = round(CANVAS * scale)); canonical point p is pixel p * scale."""
    cv = _Canvas(scale)
    if ident.hair_style == 2:
        _draw_back_hair(cv, ident, lay)
    _draw_neck_and_ears(cv, ident, lay)
    _draw_face(cv, ident, lay)
    if ident.hair_style:
        _draw_top_hair(cv, ident, lay)
    if ident.beard:
        _draw_beard(cv, ident, lay)
    _draw_moles(cv, ident, lay)
    eye_widths = np.array([1 + 0.9 * min(var.yaw, 0), 1 - 0.9 * max(var.yaw, 0)]) * ident.eye_width
    for side, eye, width in zip((-1, 1), lay.landmarks[:2], eye_widths):
        _draw_eye(cv, eye, ident, float(width), var.eye_open)
        _draw_brow(cv, eye, side, ident, var, float(width))
    _draw_nose(cv, ident, var, lay)
    _draw_mouth(cv, ident, var, lay)
    if ident.glasses:
        _draw_glasses(cv, ident, lay)
    alpha = _alpha(cv, lay)
    x1, y1, x2, y2 = np.clip(np.round(lay.extent * scale).astype(int), 0, cv.size)
    window = np.s_[y1:y2, x1:x2]
    rgba = np.zeros((cv.size, cv.size, 4), np.float32)
    rgba[window + (3,)] = alpha[window]
    rgba[window + (slice(0, 3),)] = _shade(cv, var, lay, window, int(rng.integers(CANVAS))) * alpha[window][..., None]
    return rgba
