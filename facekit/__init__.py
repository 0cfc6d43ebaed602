"""facekit: train a face detector and recognizer, build a gallery, recognize faces."""

import os

__version__ = "0.1.0"

# Photos over this many pixels are refused before they are decoded (`--max-pixels`). facekit reads the size from
# the header of the formats people use (data/headers.py); for the others OpenCV's own limit, which OpenCV reads once
# when cv2 is first imported, is the backstop: set here, before any facekit module imports cv2 (a value the user
# set wins).
DEFAULT_MAX_PIXELS = 100_000_000
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(DEFAULT_MAX_PIXELS))

# The side of ArcFace's aligned crops, the frame of facekit.align's template and the default crop size everywhere:
# here, where the CLI reads it without importing numpy.
ARCFACE_SIZE = 112
DEFAULT_JPEG_QUALITY = 95  # of the JPEGs facekit writes: aligned crops, packed and example images
