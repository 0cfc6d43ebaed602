"""facekit: train a face detector and recognizer, build a gallery, recognize faces."""

__version__ = "0.1.0"
