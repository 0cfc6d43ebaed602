"""A procedural generator of a small synthetic instance of every data layout, so demos and tests need no download.

Each identity is a parameter vector (skin, face shape, hair, eyes, brows, nose, mouth, glasses, beard, moles); each
photo adds variation (expression, yaw-like asymmetry, landmark jitter, lighting, blur, noise, JPEG). Heads are laid
out in canonical coordinates: a CANVAS x CANVAS frame whose 5 landmarks sit near `template(224)` shifted by MARGIN.
A head is drawn at some scale of that frame; recognition crops are cut from it with `align_face` at its true
landmarks, scene photos paste it with a similarity warp and a soft elliptical mask onto procedural backgrounds.
Landmarks are (left eye, right eye, nose tip, left mouth corner, right mouth corner) as seen in the image, in pixel
coordinates whose integers are pixel centres (as cv2 uses them).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import numpy as np

from facekit import strict_json
from facekit.align import align_face, template
from facekit.data.images import encode_jpeg
from facekit.data.labels import ImageLabels, write_labels
from facekit.data.recset import Sample, write_recognition_set
from facekit.data.verification import VerificationSet, write_bin
from facekit.fileio import atomic_write

CANVAS = 320
MARGIN = 48
CROP_SIZE = 112
CROP_SCALE = 0.5  # heads for crops are drawn at 0.5 x canonical, then aligned down to CROP_SIZE (0.5 x canonical)
JPEG_QUALITY = 90

DETECTION_IMAGES = {"train": 80, "val": 20, "test": 10}
RECOGNITION_IDENTITIES, RECOGNITION_PER_IDENTITY = 40, 15
VERIFICATION_IDENTITIES, VERIFICATION_PER_IDENTITY, VERIFICATION_PAIRS = 10, 10, 300
GALLERY_PEOPLE, GALLERY_PHOTOS, PROBE_PHOTOS = 10, 3, 3  # 3 enrolment photos each, as the open-set protocol
STRANGERS, STRANGER_PHOTOS = 8, 2
CALIBRATION_PHOTOS = 6  # scene photos of each verification (held-out) person, to calibrate the open-set threshold

Colour = tuple[float, float, float]  # BGR, 0..255

# WIDER-style event folders and the palette their backgrounds are drawn from.
THEMES = {
    "0--Street": ((90, 90, 95), (150, 150, 150), (60, 70, 90), (170, 160, 140)),
    "1--Office": ((170, 190, 205), (120, 140, 160), (200, 200, 195), (90, 100, 110)),
    "2--Park": ((60, 130, 70), (40, 100, 60), (200, 170, 120), (90, 150, 160)),
    "3--Studio": ((110, 105, 100), (160, 150, 140), (70, 65, 60), (200, 195, 190)),
}
CROP_PALETTE = THEMES["1--Office"] + THEMES["3--Studio"]
SKIN_TONES = np.array([[196, 222, 250], [160, 190, 235], [110, 150, 205], [70, 112, 170], [45, 80, 135]], np.float32)
HAIR_COLOURS = np.array(
    [[20, 20, 25], [30, 42, 62], [40, 70, 105], [35, 60, 135], [110, 170, 210], [150, 150, 155], [45, 95, 185]],
    np.float32,
)
HAIR_WEIGHTS = (0.3, 0.22, 0.18, 0.08, 0.1, 0.06, 0.06)
IRIS_COLOURS = np.array(
    [[20, 50, 90], [18, 30, 48], [150, 110, 60], [70, 120, 80], [120, 120, 110], [40, 90, 120]], np.float32
)
FRAME_COLOURS = np.array([[25, 25, 25], [30, 50, 80], [60, 150, 190], [170, 170, 170]], np.float32)

_STREAMS = ("identities", "detection", "recognition", "verification", "gallery", "probe", "calibration")
_SHIFT = 4  # cv2 draws at sub-pixel positions given as fixed-point numbers with 4 fraction bits
_LINE_AA = 16  # cv2.LINE_AA, without importing cv2 at module import


@dataclass(frozen=True)
class Identity:
    """What stays the same across one person's photos. Lengths are canonical pixels."""

    skin: Colour
    hair: Colour
    iris: Colour
    lip: Colour
    face_width: float  # half width of the face outline
    forehead: float  # outline centre to the top of the forehead
    chin_gap: float  # mouth to chin
    jaw: float  # superellipse exponent of the lower outline: 2 round .. 3.2 square
    chin_taper: float  # how much narrower the lower outline gets towards the chin, 0 .. 0.35
    hair_style: int  # 0 bald, 1 short, 2 long, 3 fringe
    hairline: float  # hairline depth as a fraction of the forehead
    hair_volume: float
    hair_length: float  # long hair: how far it falls below the outline centre, in lower-face heights
    eye_spacing: float  # factor on the template's eye distance
    eye_height: float  # vertical shift of the eyes
    eye_width: float
    eye_open: float  # eye opening / width
    brow_thickness: float
    brow_tilt: float  # outer end higher (> 0) or lower
    brow_gap: float  # eye centre to brow
    nose_length: float  # vertical shift of the nose tip
    nose_width: float
    mouth_width: float  # factor on the template's mouth width
    mouth_height: float  # vertical shift of the mouth
    lip_thickness: float
    glasses: int  # 0 none, 1 round, 2 rectangular
    frame: Colour
    beard: int  # 0 none, 1 moustache, 2 goatee, 3 full
    moles: tuple[tuple[float, float], ...]  # positions in outline units (x / half width, y / lower height)


@dataclass(frozen=True)
class Variation:
    """What changes from photo to photo; the defaults are the neutral, evenly lit, clean photo."""

    smile: float = 0.0  # -0.3 (frown) .. 1
    mouth_open: float = 0.0  # 0 .. 1
    eye_open: float = 1.0  # factor on the identity's eye opening
    brow_raise: float = 0.0
    yaw: float = 0.0  # -0.22 .. 0.22: features shift sideways, the far eye narrows
    jitter: tuple[tuple[float, float], ...] = ((0.0, 0.0),) * 5  # canonical pixels added to each landmark
    light_angle: float = 0.0
    light_gain: float = 0.0  # strength of the lighting gradient across the face
    brightness: float = 1.0
    contrast: float = 1.0
    tint: Colour = (1.0, 1.0, 1.0)
    blur: float = 0.0  # Gaussian sigma in crop pixels
    noise: float = 0.0  # Gaussian noise sigma in grey levels
    jpeg: int | None = None  # quality of an extra JPEG round trip


@dataclass(frozen=True)
class _Layout:
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


@dataclass(frozen=True)
class _Face:
    """One face pasted in a scene: box [4] corners (x1, y1, x2, y2), landmarks [5, 2], quality score (sharpness)."""

    box: np.ndarray
    landmarks: np.ndarray
    score: float


@dataclass(frozen=True)
class ExampleSummary:
    """What make_example_data wrote. detection_faces["test"] counts faces drawn (test label.txt lists paths only)."""

    detection_images: dict[str, int]
    detection_faces: dict[str, int]
    recognition_identities: int
    recognition_images: int
    verification_identities: int
    verification_pairs: int
    verification_same_pairs: int
    gallery_people: int
    gallery_photos: int
    probe_known_photos: int
    probe_unknown_people: int
    probe_unknown_photos: int
    calibration_people: int
    calibration_photos: int

    def as_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------------------
# Sampling people and photos


def _streams(seed: int) -> dict[str, np.random.Generator]:
    """One independent generator per part of the data, each depending only on the seed."""
    return {
        name: np.random.default_rng(s) for name, s in zip(_STREAMS, np.random.SeedSequence(seed).spawn(len(_STREAMS)))
    }


def _colour(rng: np.random.Generator, value: np.ndarray, spread: float) -> Colour:
    return tuple(float(v) for v in np.clip(value + rng.normal(0, spread, 3), 0, 255))


def sample_identity(rng: np.random.Generator) -> Identity:
    """A random person."""
    t = rng.uniform(0, len(SKIN_TONES) - 1)
    i = min(int(t), len(SKIN_TONES) - 2)
    skin = _colour(rng, SKIN_TONES[i] * (i + 1 - t) + SKIN_TONES[i + 1] * (t - i), 6)
    hair = _colour(rng, HAIR_COLOURS[rng.choice(len(HAIR_COLOURS), p=HAIR_WEIGHTS)], 8)
    lip = _colour(rng, np.array(skin) * 0.62 + np.array([45, 40, 120]) * rng.uniform(0.25, 0.6), 5)
    moles = tuple(
        (float(rng.uniform(-0.6, 0.6)), float(rng.uniform(-0.1, 0.55))) for _ in range(rng.choice(3, p=[0.6, 0.3, 0.1]))
    )
    return Identity(
        skin=skin,
        hair=hair,
        iris=_colour(rng, IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))], 6),
        lip=lip,
        face_width=float(rng.uniform(70, 88)),
        forehead=float(rng.uniform(100, 118)),
        chin_gap=float(rng.uniform(30, 46)),
        jaw=float(rng.uniform(2.0, 3.2)),
        chin_taper=float(rng.uniform(0.0, 0.35)),
        hair_style=int(rng.choice(4, p=[0.12, 0.38, 0.3, 0.2])),
        hairline=float(rng.uniform(0.12, 0.4)),
        hair_volume=float(rng.uniform(2, 16)),
        hair_length=float(rng.uniform(0.4, 1.0)),
        eye_spacing=float(rng.uniform(0.9, 1.1)),
        eye_height=float(rng.uniform(-5, 5)),
        eye_width=float(rng.uniform(26, 36)),
        eye_open=float(rng.uniform(0.36, 0.55)),
        brow_thickness=float(rng.uniform(3, 9)),
        brow_tilt=float(rng.uniform(-6, 8)),
        brow_gap=float(rng.uniform(15, 24)),
        nose_length=float(rng.uniform(-7, 7)),
        nose_width=float(rng.uniform(24, 38)),
        mouth_width=float(rng.uniform(0.85, 1.15)),
        mouth_height=float(rng.uniform(-6, 6)),
        lip_thickness=float(rng.uniform(4, 10)),
        glasses=int(rng.choice(3, p=[0.7, 0.15, 0.15])),
        frame=_colour(rng, FRAME_COLOURS[rng.integers(len(FRAME_COLOURS))], 5),
        beard=int(rng.choice(4, p=[0.6, 0.14, 0.12, 0.14])),
        moles=moles,
    )


def sample_variation(rng: np.random.Generator) -> Variation:
    """Random expression, pose, lighting and degradation of one photo."""
    return Variation(
        smile=float(rng.uniform(-0.3, 1.0)),
        mouth_open=float(rng.uniform(0.2, 1.0)) if rng.random() < 0.3 else 0.0,
        eye_open=float(rng.uniform(0.2, 0.4)) if rng.random() < 0.05 else float(rng.uniform(0.75, 1.15)),
        brow_raise=float(rng.normal(0, 2.5)),
        yaw=float(rng.uniform(-0.22, 0.22)),
        jitter=tuple(tuple(float(v) for v in p) for p in rng.normal(0, 1.2, (5, 2))),
        light_angle=float(rng.uniform(0, 2 * math.pi)),
        light_gain=float(rng.uniform(0, 0.4)),
        brightness=float(rng.uniform(0.75, 1.2)),
        contrast=float(rng.uniform(0.8, 1.15)),
        tint=tuple(float(v) for v in 1 + rng.normal(0, 0.04, 3)),
        blur=float(rng.uniform(0.3, 1.3)) if rng.random() < 0.4 else 0.0,
        noise=float(rng.uniform(0, 6)),
        jpeg=int(rng.integers(35, 85)) if rng.random() < 0.25 else None,
    )


def example_identities(seed: int) -> dict[str, Identity]:
    """The named people of make_example_data(seed): recognition `id0000`.., verification `heldout_00`..,
    gallery `person_00`.. and probe-only `stranger_00`.."""
    rng = _streams(seed)["identities"]
    groups = (("id{:04d}", RECOGNITION_IDENTITIES), ("heldout_{:02d}", VERIFICATION_IDENTITIES))
    groups += (("person_{:02d}", GALLERY_PEOPLE), ("stranger_{:02d}", STRANGERS))
    return {pattern.format(i): sample_identity(rng) for pattern, count in groups for i in range(count)}


# ---------------------------------------------------------------------------------------------------------------------
# Drawing primitives


def _fixed(points: np.ndarray) -> np.ndarray:
    """Float [N, 2] points as int32 fixed-point for cv2 drawing with shift=_SHIFT."""
    return np.round(np.asarray(points, np.float64) * (1 << _SHIFT)).astype(np.int32)


def _poly(image: np.ndarray, points: np.ndarray, colour: Colour | float) -> None:
    import cv2

    cv2.fillPoly(image, [_fixed(points)], colour, _LINE_AA, _SHIFT)


def _line(image: np.ndarray, points: np.ndarray, colour: Colour, thickness: float) -> None:
    import cv2

    cv2.polylines(image, [_fixed(points)], False, colour, max(1, round(thickness)), _LINE_AA, _SHIFT)


def _ellipse(
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


def _paint(image: np.ndarray, mask: np.ndarray, colour: Colour) -> None:
    """Blend `colour` into uint8 `image` [H, W, 3] through uint8 coverage `mask` [H, W], in place."""
    rows = np.flatnonzero(mask.any(1))
    if rows.size:
        band = slice(rows[0], rows[-1] + 1)
        alpha = mask[band, :, None].astype(np.float32) / 255
        image[band] = (image[band] * (1 - alpha) + np.asarray(colour, np.float32) * alpha + 0.5).astype(np.uint8)


def _scaled(colour: Colour, factor: float) -> Colour:
    return tuple(float(min(255.0, v * factor)) for v in colour)


def _curve(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    return np.stack([xs, np.broadcast_to(ys, np.shape(xs))], 1)


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
        _poly(target, np.asarray(points) * self.scale, colour)

    def line(self, target: np.ndarray, points: np.ndarray, colour: Colour, thickness: float) -> None:
        _line(target, np.asarray(points) * self.scale, colour, thickness * self.scale)

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
        _ellipse(target, (centre[0] * k, centre[1] * k), (axes[0] * k, axes[1] * k), colour, width, arc, angle)


# ---------------------------------------------------------------------------------------------------------------------
# Drawing a head


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


def _layout(ident: Identity, var: Variation) -> _Layout:
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
    return _Layout(landmarks, centre, ident.face_width, ident.forehead, lower, contour)


def _draw_back_hair(cv: _Canvas, ident: Identity, lay: _Layout) -> None:
    """Long hair falling behind the head and neck."""
    cx, cy = lay.centre
    width = lay.half_width * 1.12 + ident.hair_volume
    top = _outline((cx, cy - 4), width, lay.forehead + 8 + ident.hair_volume, 1, 2.2, 0)
    end = cy + lay.lower * ident.hair_length
    bottom = _curve(np.linspace(cx + width + 6, cx - width - 6, 12), end + 10 * np.linspace(-1, 1, 12) ** 2)
    shape = np.concatenate([top[top[:, 1] <= cy - 4], bottom])
    for target, colour in ((cv.image, _scaled(ident.hair, 0.8)), (cv.head, 255), (cv.hair, 255)):
        cv.poly(target, shape, colour)


def _draw_neck_and_ears(cv: _Canvas, ident: Identity, lay: _Layout) -> None:
    cx, cy = lay.centre
    w = lay.half_width
    neck = np.array([[cx - 0.55 * w, cy], [cx + 0.55 * w, cy], [cx + 0.6 * w, CANVAS], [cx - 0.6 * w, CANVAS]])
    for target, neck_colour, ear_colour in (
        (cv.image, _scaled(ident.skin, 0.78), _scaled(ident.skin, 0.9)),
        (cv.head, 255, 255),
    ):
        cv.poly(target, neck, neck_colour)
        for side in (-1, 1):
            cv.ellipse(target, (cx + side * (w - 3), cy - 2), (11, 23), ear_colour)


def _draw_face(cv: _Canvas, ident: Identity, lay: _Layout) -> None:
    """Skin inside the outline; the outline hides any hair drawn behind it."""
    cv.poly(cv.image, lay.contour, ident.skin)
    cv.poly(cv.head, lay.contour, 255)
    cv.poly(cv.hair, lay.contour, 0)


def _draw_top_hair(cv: _Canvas, ident: Identity, lay: _Layout) -> None:
    """The hair cap: an ellipse a little larger than the outline, cut off below the hairline."""
    cx, cy = lay.centre
    fringe = ident.hair_style == 3
    depth = lay.forehead * (0.45 if fringe else ident.hairline * 0.6)
    droop = lay.forehead * (0.08 if fringe else 0.3)
    xs = np.linspace(cx - 1.5 * lay.half_width, cx + 1.5 * lay.half_width, 41)
    hairline = cy - lay.forehead + depth + droop * ((xs - cx) / lay.half_width) ** 2
    if fringe:
        hairline -= 8 * (np.arange(xs.size) % 2)
    below = np.concatenate([_curve(xs, hairline), [[xs[-1], CANVAS], [xs[0], CANVAS]]])
    cap = np.zeros_like(cv.head)
    cv.ellipse(cap, (cx, cy - 4), (lay.half_width + 5 + ident.hair_volume, lay.forehead + 4 + ident.hair_volume), 255)
    cv.poly(cap, below, 0)
    _paint(cv.image, cap, ident.hair)
    np.maximum(cv.head, cap, out=cv.head)
    np.maximum(cv.hair, cap, out=cv.hair)


def _draw_beard(cv: _Canvas, ident: Identity, lay: _Layout) -> None:
    """Moustache, plus a chin patch (goatee) or the whole lower face up to the sideburns (full beard)."""
    (lx, ly), (rx, ry) = lay.landmarks[3], lay.landmarks[4]
    mid, half, mouth_y = (lx + rx) / 2, (rx - lx) / 2, (ly + ry) / 2
    lip_top = mouth_y - ident.lip_thickness * 0.8
    u = np.linspace(-1, 1, 16)
    moustache = np.concatenate(
        [
            _curve(mid + u * half * 1.1, lip_top + 8 * u**2),
            _curve(mid - u * half * 0.9, (lip_top + lay.landmarks[2, 1]) / 2 + 4),
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
        cv.poly(beard, np.concatenate([_curve(xs, upper), [[xs[-1], CANVAS], [xs[0], CANVAS]]]), 255)
        face = np.zeros_like(beard)
        cv.poly(face, lay.contour, 255)
        np.minimum(beard, np.maximum(face, cv.hair), out=beard)
    _paint(cv.image, beard, _scaled(ident.hair, 0.9))
    np.maximum(cv.hair, beard, out=cv.hair)


def _draw_moles(cv: _Canvas, ident: Identity, lay: _Layout) -> None:
    cx, cy = lay.centre
    for u, v in ident.moles:
        cv.ellipse(cv.image, (cx + u * lay.half_width, cy + v * lay.lower), (2.2, 2.2), _scaled(ident.skin, 0.45))


def _draw_eye(cv: _Canvas, centre: np.ndarray, ident: Identity, width: float, openness: float) -> None:
    """Almond eye with iris and pupil centred on the landmark; the lids are redrawn in skin over the iris overflow."""
    x, y = float(centre[0]), float(centre[1])
    half, iris = width / 2, width * 0.21
    rise = half * ident.eye_open * openness
    u = np.linspace(-1, 1, 17)
    upper = _curve(x + u * half, y + 1 - rise * (1 - u**2) ** 0.7)
    lower = _curve(x - u * half, y + 1 + 0.75 * rise * (1 - u**2) ** 0.9)
    image, skin, reach = cv.image, ident.skin, iris + 3
    cv.poly(image, np.concatenate([upper, lower]), (228, 230, 234))
    cv.ellipse(image, (x, y), (iris, iris), ident.iris)
    cv.ellipse(image, (x, y), (iris * 0.45, iris * 0.45), (18, 16, 16))
    cv.poly(image, np.concatenate([upper, [[x + half + 2, y - reach], [x - half - 2, y - reach]]]), skin)
    cv.poly(image, np.concatenate([lower, [[x - half - 2, y + reach], [x + half + 2, y + reach]]]), skin)
    cv.line(image, upper, _scaled(skin, 0.3), max(1.5, width * 0.07))
    cv.line(image, lower[2:-2], _scaled(skin, 0.7), 1)
    cv.line(image, _curve(x + u[2:-2] * half * 0.9, y - rise - 3 - 2 * (1 - u[2:-2] ** 2)), _scaled(skin, 0.78), 1)


def _draw_brow(cv: _Canvas, eye: np.ndarray, side: int, ident: Identity, var: Variation, width: float) -> None:
    """Eyebrow over the eye on image side `side` (-1 left, +1 right): thick at the inner end, tapering outwards."""
    x, y = float(eye[0]), float(eye[1]) - ident.brow_gap - var.brow_raise
    u = np.linspace(0, 1, 12)  # 0 at the inner end, 1 at the outer end
    xs = x - side * width * 0.6 + side * u * width * 1.25
    centre = y - 5 * np.sin(np.pi * np.clip(u * 1.2, 0, 1)) - ident.brow_tilt * u
    half = ident.brow_thickness * (1 - 0.55 * u) / 2
    band = np.concatenate([_curve(xs, centre - half), _curve(xs[::-1], (centre + half)[::-1])])
    cv.poly(cv.image, band, _scaled(ident.hair, 0.75 if ident.hair[0] < 100 else 0.55))


def _draw_nose(cv: _Canvas, ident: Identity, var: Variation, lay: _Layout) -> None:
    """Bridge shadow (away from the light), nose wings, nostrils and a highlight on the tip landmark."""
    x, y = (float(v) for v in lay.landmarks[2])
    w, skin, image = ident.nose_width, ident.skin, cv.image
    eye_y = float(lay.landmarks[:2, 1].mean())
    side = -1 if math.cos(var.light_angle) > 0 else 1
    cv.line(
        image,
        np.array([[x + side * w * 0.22 - 20 * var.yaw, eye_y + 8], [x + side * w * 0.3, y - 6]]),
        _scaled(skin, 0.85),
        3,
    )
    for s in (-1, 1):
        cv.ellipse(
            image,
            (x + s * w * 0.37, y + 1),
            (w * 0.17, w * 0.2),
            _scaled(skin, 0.68),
            2,
            (-70, 110) if s > 0 else (70, 250),
        )
        cv.ellipse(image, (x + s * w * 0.24, y + w * 0.16), (w * 0.12, w * 0.065), _scaled(skin, 0.35), angle=s * 20)
    cv.ellipse(image, (x, y - 2), (w * 0.16, w * 0.12), _scaled(skin, 1.08))


def _draw_mouth(cv: _Canvas, ident: Identity, var: Variation, lay: _Layout) -> None:
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
        cv.poly(cv.image, np.concatenate([_curve(xs, top), _curve(xs, bottom)[::-1]]), (45, 35, 95))
        inner = slice(4, -4)
        teeth = np.concatenate([_curve(xs[inner], top[inner]), _curve(xs[inner], top[inner] + gap[inner] * 0.45)[::-1]])
        cv.poly(cv.image, teeth, (215, 225, 230))
    upper_lip = _curve(xs, top - ident.lip_thickness * 0.8 * bulge * bow)
    lower_lip = _curve(xs, bottom + ident.lip_thickness * bulge)
    cv.poly(cv.image, np.concatenate([upper_lip, _curve(xs, top)[::-1]]), _scaled(ident.lip, 0.88))
    cv.poly(cv.image, np.concatenate([_curve(xs, bottom), lower_lip[::-1]]), ident.lip)
    cv.line(cv.image, _curve(xs, top), _scaled(ident.lip, 0.5), 1.5)
    for corner in (left, right):
        cv.ellipse(cv.image, (float(corner[0]), float(corner[1])), (1.6, 1.6), _scaled(ident.lip, 0.45))


def _draw_glasses(cv: _Canvas, ident: Identity, lay: _Layout) -> None:
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


def _shade(cv: _Canvas, var: Variation, lay: _Layout, window: tuple[slice, slice], shift: int) -> np.ndarray:
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


def _alpha(cv: _Canvas, lay: _Layout) -> np.ndarray:
    """The silhouette faded out by an ellipse around the face (soft edges, no paste seams): float32 [S, S]."""
    import cv2

    cx, cy = lay.centre
    grid = np.arange(cv.size, dtype=np.float32) / cv.scale
    dx = (grid - cx) / (lay.half_width * 1.5)
    dy = (grid[:, None] - cy + 5) / ((lay.forehead + lay.lower) * 0.72)
    fade = np.clip((1 - np.sqrt(dx**2 + dy**2)) * 6, 0, 1)
    return cv2.GaussianBlur(cv.head, (5, 5), 1.0).astype(np.float32) * (fade / 255)


def _render_head(ident: Identity, var: Variation, lay: _Layout, scale: float, rng: np.random.Generator) -> np.ndarray:
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


# ---------------------------------------------------------------------------------------------------------------------
# Backgrounds, crops and scenes


def _background(rng: np.random.Generator, width: int, height: int, palette: np.ndarray) -> np.ndarray:
    """Gradient, low-frequency texture and clutter (rectangles, bars, polygons, discs, stripes): float32 [H, W, 3]."""
    import cv2

    a, b = (np.clip(palette[i] + rng.normal(0, 20, 3), 0, 255) for i in rng.choice(len(palette), 2, replace=False))
    angle = rng.uniform(0, 2 * math.pi)
    small = (max(2, height // 16), max(2, width // 16))
    t = np.linspace(0, math.cos(angle), small[1]) + np.linspace(0, math.sin(angle), small[0])[:, None]
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    grid = (max(2, height // 48), max(2, width // 48))
    coarse = rng.normal(0, 14, grid + (1,)) + rng.normal(0, 5, grid + (3,))  # mostly brightness, a little colour
    texture = cv2.resize(coarse.astype(np.float32), small[::-1], interpolation=cv2.INTER_CUBIC)
    low = np.clip(a + (b - a) * t[..., None] + texture, 0, 255).astype(np.uint8)
    image = cv2.resize(low, (width, height), interpolation=cv2.INTER_LINEAR)
    for _ in range(rng.integers(4, 16)):
        _clutter(image, rng, palette)
    return image.astype(np.float32)


def _clutter(image: np.ndarray, rng: np.random.Generator, palette: np.ndarray) -> None:
    """Draw one shape without anything face-like on uint8 `image`: a rectangle, bar, polygon, disc or stripes."""
    height, width = image.shape[:2]
    colour = tuple(float(v) for v in np.clip(palette[rng.integers(len(palette))] + rng.normal(0, 40, 3), 0, 255))
    x, y = rng.uniform(-0.1 * width, width), rng.uniform(-0.1 * height, height)
    size = rng.uniform(0.05, 0.45) * min(width, height)
    kind = rng.integers(5)
    if kind == 0:
        w = size * rng.uniform(0.3, 3)
        _poly(image, np.array([[x, y], [x + w, y], [x + w, y + size], [x, y + size]]), colour)
    elif kind == 1:
        _line(
            image,
            np.array([[x, y], [x + rng.normal(0, size * 2), y + rng.normal(0, size * 2)]]),
            colour,
            rng.uniform(2, 10),
        )
    elif kind == 2:
        _poly(image, np.array([x, y]) + rng.normal(0, size / 2, (rng.integers(3, 6), 2)), colour)
    elif kind == 3:
        _ellipse(image, (x, y), (size / 2, size / 2), colour)
    else:
        step, slant = rng.uniform(5, 14), rng.uniform(-0.5, 0.5)
        for k in range(rng.integers(3, 8)):
            _line(image, np.array([[x + k * step, y], [x + k * step + size * slant, y + size * 1.5]]), colour, step / 3)


@cache
def _noise_tile() -> np.ndarray:
    """Fixed unit Gaussian noise, float32 [512, 704, 3]; images take windows of it at random offsets."""
    return np.random.default_rng(0).standard_normal((512, 704, 3), dtype=np.float32)


def _degrade(image: np.ndarray, blur: float, noise: float, jpeg: int | None, rng: np.random.Generator) -> np.ndarray:
    """Blur, Gaussian noise and an optional JPEG round trip of float [H, W, 3] (H <= 512, W <= 704): uint8 [H, W, 3]."""
    import cv2

    if blur > 0:
        image = cv2.GaussianBlur(image, (0, 0), blur)
    h, w = image.shape[:2]
    y, x = rng.integers(0, 512 - h + 1), rng.integers(0, 704 - w + 1)
    out = np.clip(image + noise * _noise_tile()[y : y + h, x : x + w], 0, 255).round().astype(np.uint8)
    if jpeg is not None:
        out = cv2.imdecode(np.frombuffer(encode_jpeg(out, jpeg), np.uint8), cv2.IMREAD_COLOR)
    return out


def _crop(ident: Identity, var: Variation, rng: np.random.Generator) -> np.ndarray:
    """An aligned CROP_SIZE x CROP_SIZE photo of `ident`, uint8 BGR: the head is aligned with align_face at its true
    landmarks (premultiplied BGR + alpha together), then laid over a background drawn at crop size."""
    lay = _layout(ident, var)
    aligned = align_face(_render_head(ident, var, lay, CROP_SCALE, rng), lay.landmarks * CROP_SCALE, CROP_SIZE)
    crop = _background(rng, CROP_SIZE, CROP_SIZE, np.array(CROP_PALETTE, np.float32)) * (1 - aligned[..., 3:])
    return _degrade(crop + aligned[..., :3], var.blur, var.noise, var.jpeg, rng)


def canonical_crop(ident: Identity) -> np.ndarray:
    """The identity's neutral, evenly lit, clean aligned crop on grey: uint8 [CROP_SIZE, CROP_SIZE, 3]."""
    var = Variation()
    lay = _layout(ident, var)
    aligned = align_face(
        _render_head(ident, var, lay, CROP_SCALE, np.random.default_rng(0)), lay.landmarks * CROP_SCALE, CROP_SIZE
    )
    return np.clip(128 * (1 - aligned[..., 3:]) + aligned[..., :3], 0, 255).round().astype(np.uint8)


def _similarity(scale: float, angle: float, source: tuple[float, float], target: tuple[float, float]) -> np.ndarray:
    """2x3 float64 matrix: rotate by `angle` (radians) and scale about `source`, which lands on `target`."""
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    linear = np.array([[c, -s], [s, c]])
    return np.hstack([linear, (np.asarray(target) - linear @ np.asarray(source))[:, None]])


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points [N, 2] through a 2x3 matrix: float32 [N, 2]."""
    return (np.asarray(points, np.float64) @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def _bounds(points: np.ndarray) -> np.ndarray:
    """Corner box (x1, y1, x2, y2) of points [N, 2]."""
    return np.concatenate([points.min(0), points.max(0)])


def _corners(box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = box
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32)


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection area of two corner boxes over the smaller box's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return max(w, 0) * max(h, 0) / smaller


def _place(
    lay: _Layout,
    width: int,
    height: int,
    taken: list[np.ndarray],
    spans: tuple[float, float],
    inside: float,
    rng: np.random.Generator,
) -> np.ndarray | None:
    """A similarity [2, 3] from canonical to image pixels: the face `spans` px wide, turned within +-15 degrees,
    landmarks inside the image, at least the fraction `inside` of the face box inside, the head overlapping no `taken`
    head by more than 5%. Appends the head's extent to `taken`; None when 60 tries fail."""
    face_width, corners = float(np.ptp(lay.contour[:, 0])), _corners(lay.extent)
    for _ in range(60):
        span = math.exp(rng.uniform(math.log(spans[0]), math.log(spans[1])))
        target = (rng.uniform(0, width), rng.uniform(0, height))
        matrix = _similarity(span / face_width, math.radians(rng.uniform(-15, 15)), lay.centre, target)
        marks, box = _apply(matrix, lay.landmarks), _bounds(_apply(matrix, lay.contour))
        extent = _bounds(_apply(matrix, corners))
        clipped = np.clip(box, 0, [width, height, width, height])
        box_in = (clipped[2] - clipped[0]) * (clipped[3] - clipped[1]) >= inside * (box[2] - box[0]) * (box[3] - box[1])
        marks_in = (marks >= 2).all() and (marks[:, 0] <= width - 3).all() and (marks[:, 1] <= height - 3).all()
        if box_in and marks_in and all(_overlap(extent, other) <= 0.05 for other in taken):
            taken.append(extent)
            return matrix
    return None


def _paste(image: np.ndarray, rgba: np.ndarray, scale: float, lay: _Layout, matrix: np.ndarray, blur: float) -> None:
    """Warp a head drawn at `scale` (premultiplied [S, S, 4]) into float `image` [H, W, 3] in place, with the
    canonical-to-image `matrix`, blurring the warped patch by `blur` image pixels."""
    import cv2

    height, width = image.shape[:2]
    extent = _bounds(_apply(matrix, _corners(lay.extent)))
    lo = np.clip(np.floor(extent[:2]).astype(int) - 2, 0, [width, height])
    hi = np.clip(np.ceil(extent[2:]).astype(int) + 3, 0, [width, height])
    pixels = np.hstack([matrix[:, :2] / scale, (matrix[:, 2] - lo)[:, None]])
    size = (int(hi[0] - lo[0]), int(hi[1] - lo[1]))
    patch = cv2.warpAffine(rgba, pixels, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if blur > 0:
        patch = cv2.GaussianBlur(patch, (0, 0), blur)
    region = image[lo[1] : hi[1], lo[0] : hi[0]]
    region *= 1 - patch[..., 3:]
    region += patch[..., :3]


def _scene(
    people: list[Identity], spans: tuple[float, float], inside: float, palette: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, list[_Face]]:
    """A 320x240 .. 640x480 photo with as many of `people` as fit without heavy overlap (see _place for `spans` and
    `inside`): uint8 [H, W, 3] and the faces."""
    width = int(rng.integers(320, 641))
    height = int(np.clip(width * rng.uniform(0.62, 0.9), 240, 480))
    image = _background(rng, width, height, palette)
    top = min(spans[1], 0.55 * min(width, height))
    taken: list[np.ndarray] = []
    faces = []
    for ident in people:
        var = sample_variation(rng)
        lay = _layout(ident, var)
        matrix = _place(lay, width, height, taken, (min(spans[0], top), top), inside, rng)
        if matrix is None:
            continue
        scale = math.hypot(*matrix[:, 0])
        render_scale = min(1.0, 1.5 * scale)  # draw at most 1.5x the final size, warp down from there
        blur = var.blur * scale * 2
        _paste(image, _render_head(ident, var, lay, render_scale, rng), render_scale, lay, matrix, blur)
        box = np.clip(_bounds(_apply(matrix, lay.contour)), 0, [width, height, width, height])
        faces.append(_Face(box, _apply(matrix, lay.landmarks), round(1 / (1 + blur), 3)))
    scene_blur = float(rng.uniform(0.3, 0.9)) if rng.random() < 0.3 else 0.0
    return _degrade(image, scene_blur, float(rng.uniform(0, 3)), None, rng), faces


# ---------------------------------------------------------------------------------------------------------------------
# Writing the layouts


def _write_jpeg(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_jpeg(image, JPEG_QUALITY))


def _image_labels(path: str, faces: list[_Face]) -> ImageLabels:
    return ImageLabels(
        path=path,
        boxes=np.array([f.box for f in faces], np.float32).reshape(-1, 4),
        landmarks=np.array([f.landmarks for f in faces], np.float32).reshape(-1, 5, 2),
        landmark_mask=np.ones(len(faces), bool),
        scores=np.array([f.score for f in faces], np.float32),
    )


def _write_detection(root: Path, rng: np.random.Generator) -> tuple[dict[str, int], dict[str, int]]:
    """detection_train_data/{train,val,test}; returns (images, faces) per split. test's label.txt lists paths only."""
    images, faces = {}, {}
    for split, count in DETECTION_IMAGES.items():
        labels = []
        faces[split] = 0
        for index in range(count):
            theme = list(THEMES)[rng.integers(len(THEMES))]
            people = [sample_identity(rng) for _ in range(rng.integers(1, 5))]
            image, placed = _scene(people, (24, 160), 0.85, np.array(THEMES[theme], np.float32), rng)
            name = f"{theme}/{theme.split('--')[1]}_{split}_{index:04d}.jpg"
            _write_jpeg(root / split / "images" / name, image)
            labels.append(ImageLabels(path=name) if split == "test" else _image_labels(name, placed))
            faces[split] += len(placed)
        write_labels(root / split / "label.txt", labels)
        images[split] = count
    return images, faces


def _write_recognition(root: Path, people: dict[str, Identity], rng: np.random.Generator) -> int:
    """recognition_train_data/cele.*: RECOGNITION_PER_IDENTITY aligned crops per identity; returns the image count."""
    samples = [
        Sample(
            label=label,
            image=encode_jpeg(_crop(ident, sample_variation(rng), rng), JPEG_QUALITY),
            path=f"{name}/{k}.jpg",
        )
        for label, (name, ident) in enumerate(people.items())
        for k in range(RECOGNITION_PER_IDENTITY)
    ]
    write_recognition_set(root, samples, image_size=(CROP_SIZE, CROP_SIZE))
    return len(samples)


def _write_verification(
    path: Path, people: dict[str, Identity], rng: np.random.Generator, seed: int
) -> list[tuple[str, str]]:
    """A .bin of VERIFICATION_PAIRS pairs (the first half same, the rest different, then shuffled) of crops of
    `people`, with the sidecar that names them; returns the names in each pair."""
    crops = {
        name: [
            encode_jpeg(_crop(ident, sample_variation(rng), rng), JPEG_QUALITY)
            for _ in range(VERIFICATION_PER_IDENTITY)
        ]
        for name, ident in people.items()
    }
    names = list(people)
    pairs = []
    for k in range(VERIFICATION_PAIRS):
        a = names[k % len(names)]
        b = a if k < VERIFICATION_PAIRS // 2 else names[(k + rng.integers(1, len(names))) % len(names)]
        i, j = rng.choice(VERIFICATION_PER_IDENTITY, 2, replace=False)
        pairs.append((a, int(i), b, int(j)))
    pairs = [pairs[k] for k in rng.permutation(len(pairs))]
    images = [image for a, i, b, j in pairs for image in (crops[a][i], crops[b][j])]
    issame = [a == b for a, _, b, _ in pairs]
    sidecar = {"people": sorted(people), "pairs": len(pairs), "same": sum(issame), "folds": None,
               "person_disjoint_folds": False, "seed": seed, "source": "facekit make-example-data",
               "aligned_by": None, "size": CROP_SIZE}  # fmt: skip
    write_bin(path, VerificationSet(images, issame), sidecar)
    return [(a, b) for a, _, b, _ in pairs]


def _write_photos(
    out: Path, folder: str, people: dict[str, Identity], photos: int, in_gallery: bool, rng: np.random.Generator
) -> dict[str, dict]:
    """`folder`/<name>/<k>.jpg scene photos with one face each; returns their truth entries by path under `out`."""
    truth = {}
    for name, ident in people.items():
        for k in range(photos):
            palette = np.array(list(THEMES.values())[rng.integers(len(THEMES))], np.float32)
            image, (face,) = _scene([ident], (64, 160), 1.0, palette, rng)
            path = f"{folder}/{name}/{k}.jpg"
            _write_jpeg(out / path, image)
            truth[path] = {
                "identity": name,
                "in_gallery": in_gallery,
                "boxes": [[round(float(v), 2) for v in face.box]],
                "landmarks": [[[round(float(v), 2) for v in p] for p in face.landmarks]],
            }
    return truth


def make_example_data(out_dir: str | os.PathLike, *, seed: int = 0) -> ExampleSummary:
    """Write a small synthetic instance of every layout under `out_dir`, deterministic for `seed`:

    detection_train_data/{train,val,test}, recognition_train_data/{cele.rec,cele.idx,cele.lst,property,
    example_val.bin + example_val.json} (verification pairs of identities not in cele.rec, and their names),
    gallery/<person>/*.jpg, probe/<person or stranger>/*.jpg, calibration/<held-out person>/*.jpg (photos of the
    verification people, to calibrate the threshold on people outside the gallery) and truth.json: {"seed",
    "images": {path under out_dir: {"identity", "in_gallery", "boxes": [[x1, y1, x2, y2]], "landmarks":
    [[[x, y] x 5]]}}, "verification_pairs": [[name, name]]}.
    """
    out = Path(out_dir)
    rngs = _streams(seed)
    people = example_identities(seed)
    group = {p: {n: i for n, i in people.items() if n.startswith(p)} for p in ("id", "heldout", "person", "stranger")}
    det_images, det_faces = _write_detection(out / "detection_train_data", rngs["detection"])
    rec_images = _write_recognition(out / "recognition_train_data", group["id"], rngs["recognition"])
    pairs = _write_verification(
        out / "recognition_train_data" / "example_val.bin", group["heldout"], rngs["verification"], seed
    )
    truth = _write_photos(out, "gallery", group["person"], GALLERY_PHOTOS, True, rngs["gallery"])
    truth |= _write_photos(out, "probe", group["person"], PROBE_PHOTOS, True, rngs["probe"])
    truth |= _write_photos(out, "probe", group["stranger"], STRANGER_PHOTOS, False, rngs["probe"])
    truth |= _write_photos(out, "calibration", group["heldout"], CALIBRATION_PHOTOS, False, rngs["calibration"])
    with atomic_write(out / "truth.json") as f:
        strict_json.dump({"seed": seed, "images": truth, "verification_pairs": pairs}, f, indent=1)
    return ExampleSummary(
        detection_images=det_images,
        detection_faces=det_faces,
        recognition_identities=len(group["id"]),
        recognition_images=rec_images,
        verification_identities=len(group["heldout"]),
        verification_pairs=len(pairs),
        verification_same_pairs=sum(a == b for a, b in pairs),
        gallery_people=len(group["person"]),
        gallery_photos=len(group["person"]) * GALLERY_PHOTOS,
        probe_known_photos=len(group["person"]) * PROBE_PHOTOS,
        probe_unknown_people=len(group["stranger"]),
        probe_unknown_photos=len(group["stranger"]) * STRANGER_PHOTOS,
        calibration_people=len(group["heldout"]),
        calibration_photos=len(group["heldout"]) * CALIBRATION_PHOTOS,
    )
