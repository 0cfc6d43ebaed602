"""The 5-point alignment templates and the similarity warp (data_layouts/alignment.md).

Points are (left eye, right eye, nose tip, left mouth corner, right mouth corner) as seen in the image. Each
recognizer takes faces warped onto its own template (RecognizerConfig.template, an export's metadata) at its own
input size; ArcFace's, scaled to the size, is the default.
"""

from __future__ import annotations

import numpy as np

from facekit import ARCFACE_SIZE

# ArcFace 112x112 template, the reference for every aligned crop facekit makes or reads.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)

# dlib's face chips (get_face_chip_details(shape, 150, 0.25), which dlib_face_recognition_resnet_model_v1 was trained
# on) as a template for SCRFD-style landmarks at 150x150. dlib places its chip by its own 5 points (eye corners, base
# of the nose); this is where the detector's 5 points land in dlib's chip, on average: for each of 477 faces of the
# CelebA training people 7201-7449 (two photos each) found by both dlib's HOG + shape_predictor_5 and SCRFD-500M,
# dlib's image -> chip transform carried SCRFD's landmarks into the chip, and the template is their mean, the
# least-squares choice. Warped onto it, faces embed with cosine 0.993 (mean) to dlib's own chips through dlib's
# network, against 0.901 with ArcFace's template scaled to 150. tests/dlib_chips.py fits it; test_dlib_template.py
# refits it on other photos.
DLIB_TEMPLATE = np.array(
    [[47.4042, 45.2759], [101.3768, 45.2928], [73.8471, 78.0161], [51.1091, 101.4638], [97.6937, 101.408]],
    dtype=np.float32,
)
DLIB_SIZE = 150


def template(size: int = ARCFACE_SIZE) -> np.ndarray:
    """The template scaled to a `size` x `size` crop (insightface scales by size / 112), float32 [5, 2]."""
    return ARCFACE_TEMPLATE * (size / ARCFACE_SIZE)


def check_template(points: object, size: int) -> np.ndarray:
    """`points` as float32 [5, 2] when they are 5 finite (x, y) points inside a `size` x `size` crop with the eyes
    apart; else ValueError("<points>, expected ...") for the caller to name its file."""
    try:
        array = np.asarray(points, np.float64)
    except (TypeError, ValueError):
        array = None
    ok = array is not None and array.shape == (5, 2) and bool(np.isfinite(array).all())
    ok = ok and bool(((array >= 0) & (array <= size)).all()) and np.linalg.norm(array[1] - array[0]) >= 1
    if not ok:
        shown = " ".join(str(points.tolist() if isinstance(points, np.ndarray) else points).split())
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise ValueError(f"{shown}, expected 5 (x, y) points inside the {size}x{size} crop, the eyes apart")
    return array.astype(np.float32)


def describe_alignment(size: int, points: np.ndarray) -> str:
    """'112x112 crops with the ArcFace template' or '96x96 crops with the template (30, 40) (66, 40) ...'."""
    if np.allclose(points, template(size), atol=1e-3):
        return f"{size}x{size} crops with the ArcFace template"
    if size == DLIB_SIZE and np.allclose(points, DLIB_TEMPLATE, atol=1e-3):
        return f"{size}x{size} crops with dlib's chip template"
    shown = " ".join(f"({x:.4g}, {y:.4g})" for x, y in np.asarray(points, np.float64))
    return f"{size}x{size} crops with the template {shown}"


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no shear) mapping src to dst.

    src, dst: [N, 2] points. Returns the 2x3 float32 matrix M with dst ~= M @ [x, y, 1] (Umeyama's method).
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1] = -1
    rotation = u @ np.diag(sign) @ vt
    var = (s**2).sum() / len(src)
    scale = (sigma * sign).sum() / var if var > 0 else 1.0
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mu_d - matrix[:, :2] @ mu_s
    return matrix.astype(np.float32)


def align_face(
    image: np.ndarray, landmarks: np.ndarray, size: int = ARCFACE_SIZE, points: np.ndarray | None = None
) -> np.ndarray:
    """Warp the face with 5 `landmarks` [5, 2] in `image` [H, W, 3] onto the template `points` [5, 2] (crop pixels;
    None: ArcFace's scaled to `size`): [size, size, 3]."""
    import cv2

    matrix = similarity_transform(landmarks, template(size) if points is None else points)
    return cv2.warpAffine(image, matrix, (size, size), borderValue=0.0)
