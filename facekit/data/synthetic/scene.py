"""Photos: procedural backgrounds, aligned crops of one head, and scenes with several heads pasted in."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from facekit.align import ARCFACE_SIZE, align_face
from facekit.data.images import encode_jpeg
from facekit.data.synthetic.head import Layout, face_layout, render_head
from facekit.data.synthetic.identity import Identity, Variation, sample_variation
from facekit.data.synthetic.raster import ellipse, fill_poly, polyline

CROP_SIZE = ARCFACE_SIZE  # the synthetic recognition set's crops: ArcFace's
CROP_SCALE = 0.5  # heads for crops are drawn at 0.5 x canonical, then aligned down to CROP_SIZE (0.5 x canonical)

# WIDER-style event folders and the palette their backgrounds are drawn from.
THEMES = {
    "0--Street": ((90, 90, 95), (150, 150, 150), (60, 70, 90), (170, 160, 140)),
    "1--Office": ((170, 190, 205), (120, 140, 160), (200, 200, 195), (90, 100, 110)),
    "2--Park": ((60, 130, 70), (40, 100, 60), (200, 170, 120), (90, 150, 160)),
    "3--Studio": ((110, 105, 100), (160, 150, 140), (70, 65, 60), (200, 195, 190)),
}
CROP_PALETTE = THEMES["1--Office"] + THEMES["3--Studio"]


@dataclass(frozen=True)
class Face:
    """One face pasted in a scene: box [4] corners (x1, y1, x2, y2), landmarks [5, 2], quality score (sharpness)."""

    box: np.ndarray
    landmarks: np.ndarray
    score: float


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
        fill_poly(image, np.array([[x, y], [x + w, y], [x + w, y + size], [x, y + size]]), colour)
    elif kind == 1:
        polyline(
            image,
            np.array([[x, y], [x + rng.normal(0, size * 2), y + rng.normal(0, size * 2)]]),
            colour,
            rng.uniform(2, 10),
        )
    elif kind == 2:
        fill_poly(image, np.array([x, y]) + rng.normal(0, size / 2, (rng.integers(3, 6), 2)), colour)
    elif kind == 3:
        ellipse(image, (x, y), (size / 2, size / 2), colour)
    else:
        step, slant = rng.uniform(5, 14), rng.uniform(-0.5, 0.5)
        for k in range(rng.integers(3, 8)):
            polyline(
                image, np.array([[x + k * step, y], [x + k * step + size * slant, y + size * 1.5]]), colour, step / 3
            )


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


def aligned_crop(ident: Identity, var: Variation, rng: np.random.Generator) -> np.ndarray:
    """An aligned CROP_SIZE x CROP_SIZE photo of `ident`, uint8 BGR: the head is aligned with align_face at its true
    landmarks (premultiplied BGR + alpha together), then laid over a background drawn at crop size."""
    lay = face_layout(ident, var)
    aligned = align_face(render_head(ident, var, lay, CROP_SCALE, rng), lay.landmarks * CROP_SCALE, CROP_SIZE)
    crop = _background(rng, CROP_SIZE, CROP_SIZE, np.array(CROP_PALETTE, np.float32)) * (1 - aligned[..., 3:])
    return _degrade(crop + aligned[..., :3], var.blur, var.noise, var.jpeg, rng)


def canonical_crop(ident: Identity) -> np.ndarray:
    """The identity's neutral, evenly lit, clean aligned crop on grey: uint8 [CROP_SIZE, CROP_SIZE, 3]."""
    var = Variation()
    lay = face_layout(ident, var)
    aligned = align_face(
        render_head(ident, var, lay, CROP_SCALE, np.random.default_rng(0)), lay.landmarks * CROP_SCALE, CROP_SIZE
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
    lay: Layout,
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


def _paste(image: np.ndarray, rgba: np.ndarray, scale: float, lay: Layout, matrix: np.ndarray, blur: float) -> None:
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


def scene_photo(
    people: list[Identity], spans: tuple[float, float], inside: float, palette: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, list[Face]]:
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
        lay = face_layout(ident, var)
        matrix = _place(lay, width, height, taken, (min(spans[0], top), top), inside, rng)
        if matrix is None:
            continue
        scale = math.hypot(*matrix[:, 0])
        render_scale = min(1.0, 1.5 * scale)  # draw at most 1.5x the final size, warp down from there
        blur = var.blur * scale * 2
        _paste(image, render_head(ident, var, lay, render_scale, rng), render_scale, lay, matrix, blur)
        box = np.clip(_bounds(_apply(matrix, lay.contour)), 0, [width, height, width, height])
        faces.append(Face(box, _apply(matrix, lay.landmarks), round(1 / (1 + blur), 3)))
    scene_blur = float(rng.uniform(0.3, 0.9)) if rng.random() < 0.3 else 0.0
    return _degrade(image, scene_blur, float(rng.uniform(0, 3)), None, rng), faces
