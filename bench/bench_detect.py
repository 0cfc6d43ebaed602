"""Detection speed on this machine: facekit's PyTorch and ONNX Runtime paths beside insightface's own SCRFD runner on
the same ONNX files, and facekit's MTCNN cascade, at 640x480; and RetinaFace training images/s per step.

    python bench/bench_detect.py [--iters 30] [--train-steps 5] [--batch 8] [--smoke]

Weights: ../shared/data/weights (Pytorch_Retinaface MobileNet-0.25, SCRFD-500M) and MTCNN's from the facenet-pytorch
wheel (fetched once by tests/pypi_files.py). Prints one table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from paths import ROOT, SHARED


def photos() -> list[np.ndarray]:
    """640x480 photos with 1 to 6 faces."""
    names = [
        "faces/insightface_samples/t1.jpg",
        "faces/face_recognition_examples/examples/obama-480p.jpg",
        "faces/dlib_train/2007_007763.jpg",
        "faces/face_recognition_examples/examples/two_people.jpg",
    ]
    return [cv2.resize(cv2.imread(str(SHARED / n)), (640, 480), interpolation=cv2.INTER_AREA) for n in names]


def rate(fn, images: list[np.ndarray], iters: int) -> tuple[float, int]:
    """(images/s, faces found in the first pass) of fn(image) over `iters` passes of the photos, after a warm-up."""
    faces = sum(fn(im) for im in images)
    start = time.perf_counter()
    for _ in range(iters):
        for im in images:
            fn(im)
    return iters * len(images) / (time.perf_counter() - start), faces


def train_rate(steps: int, batch: int, size: int) -> float:
    from facekit.detection.augment import Target
    from facekit.detection.box_utils import prior_boxes
    from facekit.detection.config import DetectorConfig
    from facekit.detection.loss import MultiBoxLoss
    from facekit.detection.weights import build_detector

    config = DetectorConfig.for_body("mobilenet0.25")
    model = build_detector(config).train()
    priors = prior_boxes((size, size), config.min_sizes, config.steps)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    criterion = MultiBoxLoss()
    box = torch.tensor([[0.3, 0.3, 0.5, 0.55], [0.6, 0.2, 0.7, 0.33]])
    points = (box[:, None, :2] + box[:, None, 2:]) / 2 + torch.zeros(2, 5, 2)
    targets = [Target(box, points, torch.ones(2, dtype=torch.bool))] * batch
    images = torch.randn(batch, 3, size, size)

    def step() -> None:
        loss = criterion(model(images), priors, targets)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--smoke", action="store_true", help="2 photos, 1 pass, 1 training step of 1: measures nothing")
    args = parser.parse_args()
    if args.smoke:
        args.iters, args.train_steps, args.batch = 1, 1, 1
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    from insightface.model_zoo import get_model
    from pypi_files import FACENET_PYTORCH, pypi_file

    from facekit.detection.export import export_scrfd_onnx
    from facekit.detection.mtcnn import import_facenet_pytorch
    from facekit.detection.weights import import_pytorch_retinaface, load_detector
    from facekit.runtime.detector import DetectSettings, TorchDetector
    from facekit.runtime.mtcnn import MtcnnDetector
    from facekit.runtime.onnx_detector import OnnxDetector

    images = photos()[:2] if args.smoke else photos()
    settings = DetectSettings(threshold=0.5, max_size=640)
    with tempfile.TemporaryDirectory() as tmp:
        import_pytorch_retinaface(SHARED / "weights/pytorch_retinaface_mnet025/mobilenet0.25_Final.pth", tmp)
        model, config = load_detector(tmp)
        ours_onnx = export_scrfd_onnx(model, config, Path(tmp) / "detector.onnx")
        scrfd = SHARED / "weights/scrfd_500m_kps/scrfd_500m_bnkps.onnx"
        rows = []
        torch_detector = TorchDetector(model, config)
        rows.append(
            (
                "RetinaFace mnet0.25",
                "facekit PyTorch",
                *rate(lambda im: len(torch_detector.detect(im, settings)), images, args.iters),
            )
        )
        mtcnn = MtcnnDetector.load(import_facenet_pytorch(pypi_file(*FACENET_PYTORCH), Path(tmp) / "mtcnn"))
        rows.append(("MTCNN", "facekit PyTorch", *rate(lambda im: len(mtcnn.detect(im, settings)), images, args.iters)))
        for label, path in (("RetinaFace mnet0.25", ours_onnx), ("SCRFD-500M", scrfd)):
            ours = OnnxDetector(path)
            rows.append(
                (
                    label,
                    "facekit ONNX Runtime",
                    *rate(lambda im, ours=ours: len(ours.detect(im, settings)), images, args.iters),
                )
            )
            theirs = get_model(str(path), providers=["CPUExecutionProvider"])
            theirs.prepare(ctx_id=-1, input_size=(640, 480), det_thresh=0.5)
            rows.append(
                (
                    label,
                    "insightface SCRFD",
                    *rate(lambda im, theirs=theirs: len(theirs.detect(im)[0]), images, args.iters),
                )
            )
    print(f"detection, 640x480 photos with 1-6 faces, CPU threads: {torch.get_num_threads()}")
    print(f"{'model':<22}{'runner':<24}{'images/s':>10}{'ms/image':>10}{'faces':>7}")
    for model_name, runner, speed, faces in rows:
        print(f"{model_name:<22}{runner:<24}{speed:>10.1f}{1000 / speed:>10.1f}{faces:>7}")
    speed = train_rate(args.train_steps, args.batch, 640)
    print(
        f"\ntraining RetinaFace mnet0.25, 640x640, batch {args.batch}: {speed:.1f} images/s per step "
        "(forward, MultiBox loss with matching, backward, SGD)"
    )


if __name__ == "__main__":
    main()
