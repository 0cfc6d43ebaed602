"""Inference: facekit's own models and insightface-format ONNX models behind one interface."""
