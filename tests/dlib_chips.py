"""dlib's own face pipeline, run in the dlib environment (tests/dlib_env.py), and the fit of its chip geometry as a
5-point template for facekit's detector landmarks. Used by tests/test_dlib_template.py and bench/compare_dlib.py.

dlib's pipeline, as face_recognition and dlib's examples run it: HOG detector (one upsampling), shape_predictor_5
(eye corners and the base of the nose), `get_face_chip_details(shape, 150, 0.25)`: the similarity that maps those
5 points onto dlib's mean face, 150x150 with 25% padding, and `compute_face_descriptor` on that chip.

The fit (`fit_template`): for each face both dlib and facekit's detector find, dlib's chip transform A (image ->
chip, read back from the chip details exactly as dlib's get_mapping_to_chip builds it) carries the detector's 5
landmarks L (eye centres, nose tip, mouth corners) into chip pixels. The template T is the mean of A(L) over the
faces: it minimises sum |A(L) - T|^2, so the similarity facekit fits from L onto T is, on average, dlib's own A.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from dlib_env import dlib_models, run_dlib

CHIP_SIZE, PADDING = 150, 0.25  # dlib's compute_face_descriptor defaults

# In the dlib environment: argv = models folder, JSON list of photos, "descriptors" or "geometry", output JSON file,
# chip size, padding.
DLIB_PIPELINE = """
import json, math, sys
import dlib
import numpy as np

models, photos, what, out = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3], sys.argv[4]
size, padding = int(sys.argv[5]), float(sys.argv[6])
detector = dlib.get_frontal_face_detector()
predictor = dlib.shape_predictor(models + "/shape_predictor_5_face_landmarks.dat")
net = dlib.face_recognition_model_v1(models + "/dlib_face_recognition_resnet_model_v1.dat")

def chip_affine(details):
    # dlib's get_mapping_to_chip: the rect's corners, turned by angle about its centre, go to the chip's corners.
    r, a = details.rect, details.angle
    cx, cy = (r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2
    turn = lambda x, y: (math.cos(a) * (x - cx) - math.sin(a) * (y - cy) + cx,
                         math.sin(a) * (x - cx) + math.cos(a) * (y - cy) + cy)
    src = [turn(r.left(), r.top()), turn(r.right(), r.top()), turn(r.right(), r.bottom())]
    dst = [(0, 0), (details.cols - 1, 0), (details.cols - 1, details.rows - 1)]
    m = np.linalg.solve(np.array([[x, y, 1] for x, y in src]), np.array(dst, float)).T
    return m.tolist()

results, chips = [], []
for path in photos:
    image = dlib.load_rgb_image(path)
    h, w = image.shape[:2]
    boxes = list(detector(image, 1))
    if not boxes:
        results.append(None)
        continue
    box = min(boxes, key=lambda b: (b.left() + b.right() - w) ** 2 + (b.top() + b.bottom() - h) ** 2)  # centre
    shape = predictor(image, box)
    face = {"box": [box.left(), box.top(), box.right(), box.bottom()]}
    if what == "descriptors":
        face["descriptor"] = list(net.compute_face_descriptor(image, shape, 0, padding))
    else:
        details = dlib.get_face_chip_details(shape, size, padding)
        face["affine"] = chip_affine(details)
        chips.append(np.asarray(dlib.get_face_chip(image, shape, size, padding)))
    results.append(face)
json.dump(results, open(out, "w"))
if chips:
    np.save(out + ".npy", np.stack(chips))
"""


def dlib_faces(photos: Sequence[Path], what: str, work: Path) -> list[dict | None]:
    """dlib's face nearest each photo's centre (None: HOG found none): {"box": [l, t, r, b]} plus "descriptor"
    (128 floats, unnormalised) or "affine" (2x3 image -> chip; dlib's own chips, RGB, in work/dlib_geometry.json.npy
    in photo order)."""
    listing, out = work / f"dlib_{what}_photos.json", work / f"dlib_{what}.json"
    listing.write_text(json.dumps([os.fspath(p) for p in photos]))
    run_dlib(DLIB_PIPELINE, dlib_models(), listing, what, out, str(CHIP_SIZE), str(PADDING), timeout=3600)
    return json.loads(out.read_text())


@dataclass
class TemplateFit:
    """template: float32 [5, 2] chip pixels; chip_error: mean distance (chip px) between where facekit's similarity
    and dlib's transform put the chip's corners and centre; faces: how many faces the fit used."""

    template: np.ndarray
    chip_error: float
    faces: int


def _matching(detector: object, image: np.ndarray, box: Sequence[float]) -> np.ndarray | None:
    """The 5 landmarks [5, 2] of the detected face whose box centre lies inside dlib's `box` (None: no such face)."""
    from facekit.runtime.detector import DetectSettings

    left, top, right, bottom = box
    for face in detector.detect(image, DetectSettings()):
        cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
        if face.landmarks is not None and left <= cx <= right and top <= cy <= bottom:
            return np.asarray(face.landmarks, np.float64)
    return None


def fit_template(photos: Sequence[Path], faces: Sequence[dict | None], detector: object) -> TemplateFit:
    """dlib's chip geometry as a template for `detector`'s landmarks, fitted on the faces of `photos` (`faces`: dlib's
    for each photo, dlib_faces(photos, "geometry", ...))."""
    from facekit.align import similarity_transform

    mapped, affines, landmarks = [], [], []
    for path, face in zip(photos, faces, strict=True):
        if face is None:
            continue
        points = _matching(detector, cv2.imread(os.fspath(path), cv2.IMREAD_COLOR), face["box"])
        if points is None:
            continue
        affine = np.asarray(face["affine"])
        affines.append(affine)
        landmarks.append(points)
        mapped.append(points @ affine[:, :2].T + affine[:, 2])
    if not mapped:
        raise ValueError("no face found by both dlib and the detector")
    template = np.mean(mapped, axis=0).astype(np.float32)
    probe = np.array([[0, 0], [CHIP_SIZE - 1, 0], [0, CHIP_SIZE - 1], [CHIP_SIZE - 1] * 2, [CHIP_SIZE / 2] * 2])
    errors = []
    for affine, points in zip(affines, landmarks, strict=True):
        ours = similarity_transform(points, template).astype(np.float64)
        # chip pixel -> image under dlib's transform, then -> chip under facekit's: the identity when they agree
        back = np.linalg.inv(np.vstack([affine, [0, 0, 1]]))
        image_points = probe @ back[:2, :2].T + back[:2, 2]
        errors.append(np.linalg.norm(image_points @ ours[:, :2].T + ours[:, 2] - probe, axis=1).mean())
    return TemplateFit(template, float(np.mean(errors)), len(mapped))
