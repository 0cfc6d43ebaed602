"""The one 5-point alignment template and the similarity warp (FORMATS.md section 3).

Points are (left eye, right eye, nose tip, left mouth corner, right mouth corner) as seen in the image.
"""

from __future__ import annotations

import numpy as np

# ArcFace 112x112 template, the reference for every aligned crop facekit makes or reads.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
ARCFACE_SIZE = 112


def template(size: int = ARCFACE_SIZE) -> np.ndarray:
    """The template scaled to a `size` x `size` crop (insightface scales by size / 112), float32 [5, 2]."""
    return ARCFACE_TEMPLATE * (size / ARCFACE_SIZE)


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


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = ARCFACE_SIZE) -> np.ndarray:
    """Warp the face with 5 `landmarks` [5, 2] in `image` [H, W, 3] onto the template: [size, size, 3]."""
    import cv2

    matrix = similarity_transform(landmarks, template(size))
    return cv2.warpAffine(image, matrix, (size, size), borderValue=0.0)
