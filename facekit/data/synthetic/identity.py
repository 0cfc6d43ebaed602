"""Who is in a photo and how the photo varies: an `Identity` and a `Variation`, and random samples of both."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from facekit.data.synthetic.raster import Colour

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
