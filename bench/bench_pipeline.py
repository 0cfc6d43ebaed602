"""Recognition throughput on this machine: what `facekit recognize DATA DB DETECT RECOGNIZE` does per photo (read,
detect, align, embed, search the gallery; the library path the CLI calls, photos read from disk, batch 16) beside
insightface's FaceAnalysis on the same two ONNX files (cv2.imread, app.get, the same gallery search in numpy), over
640x480 photos with 1-6 faces, on the CPU with the same onnxruntime settings for both.

    python bench/bench_pipeline.py [--photos 40] [--repeats 3] [--threads N] [--no-spinning] [--det-size W H]
                                   [--detector PATH] [--recognizer PATH] [--gallery 1000] [--compare-threads]

Detector: SCRFD-500M from ../shared/data/weights unless --detector (e.g. insightface's det_10g.onnx). Recognizer:
--recognizer (e.g. buffalo_l's w600k_r50.onnx, or a facekit recognizer directory), else an untrained iresnet50
(w600k_r50's architecture, 512-d) with BatchNorm statistics set on random input: the real cost, meaningless
identities. A recognizer directory (the default one included) is exported by facekit twice, fp32 and int8 (`export
--int8` calibrated on the aligned crops of ORL s1-s30, people in none of the photos), and facekit runs with each in
the same, interleaved passes. Gallery: --gallery random unit vectors plus the faces of ../shared/data's
knn_examples/train. Prints markdown tables: speed, time per stage, and how far the pipelines agree (faces per photo,
boxes, crops, embeddings, identities; int8 embeddings against fp32). The insightface peer and the agreement
measures live in bench/pipeline_peer.py.

--compare-threads: facekit alone (fp32), its sessions made as `facekit recognize --threads 1`, `--threads 2` and
without --threads (ONNX Runtime's default, a thread per core) by the CLI's own session_options, in interleaved passes;
one table of speed per setting.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from pipeline_peer import (
    SPINNING,
    Pass,
    Stopwatch,
    agreement,
    check_sessions,
    embedding_agreement,
    load_insightface,
    run_insightface,
    table,
)

if TYPE_CHECKING:
    from onnxruntime import SessionOptions

    from facekit.gallery.recognize import Matcher
    from facekit.gallery.store import Gallery
    from facekit.runtime.pipeline import FacePipeline

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SCRFD_500M = DATA / "weights/scrfd_500m_kps/scrfd_500m_bnkps.onnx"
FACES = DATA / "faces"
# (photo, faces SCRFD-500M finds in it at 640x480): 27 faces in 10 photos
PHOTOS = [
    ("insightface_samples/t1.jpg", 6),
    ("dlib_train/2008_002079.jpg", 6),
    ("dlib_train/2008_001322.jpg", 3),
    ("face_recognition_examples/examples/knn_examples/test/obama_and_biden.jpg", 3),
    ("dlib_train/2008_001009.jpg", 2),
    ("face_recognition_examples/examples/two_people.jpg", 2),
    ("face_recognition_examples/examples/knn_examples/test/kit_with_rose.jpg", 2),
    ("face_recognition_examples/examples/knn_examples/test/alex_lacamoire1.jpg", 1),
    ("face_recognition_examples/examples/knn_examples/test/obama1.jpg", 1),
    ("face_recognition_examples/examples/knn_examples/test/johnsnow_test1.jpg", 1),
]
GALLERY_PEOPLE = FACES / "face_recognition_examples/examples/knn_examples/train"  # one folder per person
# int8 calibration: aligned crops of people in none of the photos above nor in the gallery (ORL s1-s30)
CALIBRATION = [FACES / "orl_aligned_112" / f"s{i}" for i in range(1, 31)]
SIZE = (640, 480)


def letterbox(image: np.ndarray, size: tuple[int, int] = SIZE) -> np.ndarray:
    """The whole photo scaled to fit (width, height) and centred on black: BGR uint8 [height, width, 3]."""
    width, height = size
    scale = min(width / image.shape[1], height / image.shape[0])
    w, h = round(image.shape[1] * scale), round(image.shape[0] * scale)
    resized = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.zeros((height, width, 3), np.uint8)
    top, left = (height - h) // 2, (width - w) // 2
    canvas[top : top + h, left : left + w] = resized
    return canvas


def write_photos(folder: Path, count: int) -> list[Path]:
    """`count` JPEG files in `folder`: the 640x480 versions of PHOTOS, repeated."""
    folder.mkdir()
    encoded = []
    for name, _ in PHOTOS:
        image = cv2.imread(str(FACES / name))
        if image is None:
            raise SystemExit(f"{FACES / name}: cannot read it (the real test data lives in ../shared/data)")
        encoded.append(cv2.imencode(".jpg", letterbox(image), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
    paths = []
    for i in range(count):
        path = folder / f"{i:04d}_{Path(PHOTOS[i % len(PHOTOS)][0]).stem}.jpg"
        path.write_bytes(encoded[i % len(encoded)])
        paths.append(path)
    return paths


def untrained_iresnet50(folder: Path) -> Path:
    """A facekit recognizer directory holding an iresnet50, 512-d (w600k_r50's architecture), untrained.
    arcface_torch's initialisation overflows in eval mode with the default running statistics (NaN embeddings), so
    every BatchNorm first gets the mean and variance of its input over a few batches of random crops (train mode,
    no gradients)."""
    import torch

    from facekit.recognition.backbones import create_backbone
    from facekit.recognition.config import RecognizerConfig
    from facekit.recognition.modelfile import save_recognizer

    torch.manual_seed(0)
    config = RecognizerConfig(backbone="iresnet50", embedding_size=512)
    model = create_backbone(config.backbone, embedding_size=config.embedding_size)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the calibration batches
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.rand(16, 3, config.input_size, config.input_size) * 2 - 1)
    model.eval()
    save_recognizer(folder, model, config)
    return folder


def export_recognizer(model_dir: Path, folder: Path) -> tuple[Path, Path]:
    """`facekit export MODEL_DIR` and `facekit export MODEL_DIR --int8 CALIBRATION` (the library calls behind them):
    the float32 and int8 recognizer.onnx files, in `folder`."""
    from facekit.data.images import list_images
    from facekit.runtime.export import export_model

    fp32, _ = export_model(model_dir, folder / "recognizer.onnx")
    int8, _ = export_model(model_dir, folder / "recognizer.int8.onnx", precision="int8",
                           calibration=list_images(CALIBRATION))  # fmt: skip
    return fp32, int8


def session_options(threads: int | None, spinning: bool = True) -> SessionOptions | None:
    """onnxruntime options: `threads` intra-op threads (None: onnxruntime's default), spin-waiting or not; None
    when both are the defaults."""
    import onnxruntime as ort

    if threads is None and spinning:
        return None
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry(SPINNING, "0")
    return options


def load_facekit(detector: Path, recognizer: Path, options: SessionOptions | None) -> FacePipeline:
    """The pipeline `facekit recognize` builds (ONNX files, CPU, photos seen at most 640 px wide), its sessions made
    with `options`."""
    from facekit.runtime.detector import DetectSettings
    from facekit.runtime.pipeline import load_pipeline

    return load_pipeline(detector, recognizer, settings=DetectSettings(max_size=640), session_options=options)


def build_gallery(pipeline: FacePipeline, distractors: int, seed: int = 0) -> Gallery:
    """`distractors` random unit vectors (one identity each) plus the largest face of every photo of the
    knn_examples/train people (5 people, 9 photos)."""
    from facekit.gallery.store import Gallery, ModelStamp
    from facekit.runtime.pipeline import pick_face

    dim = pipeline.recognizer.embedding_size
    gallery = Gallery.empty(
        dim,
        ModelStamp.of(pipeline.recognizer),
        ModelStamp.of(pipeline.detector),
        crop_size=pipeline.recognizer.input_size,
        flip=False,
    )
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((distractors, dim)).astype(np.float32)
    names = [f"random_{i:05d}" for i in range(distractors)]
    gallery = gallery.add(
        vectors, names, names, np.zeros((distractors, 4)), np.zeros((distractors, 5, 2)), np.zeros(distractors)
    )
    for photo in sorted(p for p in GALLERY_PEOPLE.rglob("*") if p.suffix in (".jpg", ".jpeg")):
        image = cv2.imread(str(photo))
        faces = pipeline.detect(image)
        if not faces:
            raise SystemExit(f"{photo}: no face found for the gallery")
        face = pick_face(faces)
        embedding = pipeline.embed([image], [face])
        gallery = gallery.add(
            embedding, [photo.parent.name], [str(photo)], face.box[None], face.landmarks[None], np.array([face.score])
        )
    if not np.isfinite(gallery.embeddings).all():
        raise SystemExit("the recognizer gives non-finite embeddings")
    return gallery


def run_facekit(paths: list[Path], pipeline: FacePipeline, matcher: Matcher, threshold: float, out: Path) -> Pass:
    """recognize_images over the files, writing JSON Lines to `out` as the CLI does, its stages timed by the
    pipeline's on_stage hook (read, detect, align, embed, search)."""
    from facekit.gallery.recognize import recognize_images

    watch = Stopwatch()
    pipeline.on_stage = watch.add
    try:
        start = time.perf_counter()
        report = recognize_images(
            paths, pipeline, matcher, threshold=threshold, out=out, batch_images=16, progress=False
        )
        seconds = time.perf_counter() - start
    finally:
        pipeline.on_stage = None
    return Pass(seconds, report.faces, dict(watch.seconds))


def compare_threads(args: argparse.Namespace) -> None:
    """--compare-threads: the recognize pipeline with --threads 1, 2 and unset, interleaved passes; one table."""
    import onnxruntime as ort

    from facekit.cli.options import session_options as cli_session_options
    from facekit.gallery.recognize import Matcher, default_threshold
    from facekit.runtime.export import export_model

    settings = {"1": 1, "2": 2, "unset (default)": None}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        recognizer = args.recognizer
        if recognizer is None:
            print("making an untrained iresnet50 (BatchNorm statistics from random input) ...", file=sys.stderr)
            recognizer = untrained_iresnet50(tmp / "iresnet50")
        if recognizer.is_dir():
            recognizer, _ = export_model(recognizer, tmp / "recognizer.onnx")
        paths = write_photos(tmp / "photos", args.photos)
        pipelines = {
            name: load_facekit(args.detector, recognizer, cli_session_options(n)) for name, n in settings.items()
        }
        gallery = build_gallery(pipelines["1"], args.gallery)
        matcher, (threshold, _) = Matcher(gallery, match="image"), default_threshold(pipelines["1"].recognizer)
        out = tmp / "recognize.jsonl"
        print(f"warm-up, then {args.repeats} interleaved passes of {len(paths)} photos each ...", file=sys.stderr)
        runs: dict[str, list[Pass]] = {name: [] for name in settings}
        for repeat in range(args.repeats + 1):
            for name, pipeline in pipelines.items():
                done = run_facekit(paths, pipeline, matcher, threshold, out)
                if repeat:
                    runs[name].append(done)
    load_after = os.getloadavg()[0]
    print(
        f"\nrecognize --threads: {len(paths)} photos of 640x480 ({len(PHOTOS)} distinct, 1-6 faces each), gallery of "
        f"{len(gallery)} faces, detector {args.detector.name}, recognizer {recognizer.name}; CPU: "
        f"{len(os.sched_getaffinity(0))} cores, load average {load_before:.1f} before, {load_after:.1f} after; "
        f"onnxruntime {ort.__version__}; median and best of {args.repeats} passes after a warm-up\n"
    )
    default = len(paths) / sorted(p.seconds for p in runs["unset (default)"])[(args.repeats - 1) // 2]
    rows = []
    for name, pipeline in pipelines.items():
        seconds = sorted(p.seconds for p in runs[name])
        speed = len(paths) / seconds[(len(seconds) - 1) // 2]
        intra = pipeline.detector.session.get_session_options().intra_op_num_threads
        rows.append([name, str(intra or "0 (one per core)"), f"{speed:.2f}", f"{1000 / speed:.1f}",
                     f"{len(paths) / seconds[0]:.2f}", f"{speed / default:.2f}x"])  # fmt: skip
    print(table(["--threads", "session intra-op threads", "images/s", "ms/photo", "best images/s", "vs unset"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=40, help="photos per pass (the 10 distinct ones, repeated)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per pipeline, after one warm-up pass")
    parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads for both (default: onnxruntime's)")
    parser.add_argument(
        "--no-spinning",
        action="store_true",
        help="onnxruntime's intra-op threads sleep between runs instead of spin-waiting, for both "
        "(session.intra_op.allow_spinning=0)",
    )
    parser.add_argument("--detector", type=Path, default=SCRFD_500M, help="SCRFD-layout .onnx with 5 key points")
    parser.add_argument(
        "--recognizer",
        type=Path,
        help="ArcFaceONNX .onnx, or a facekit recognizer directory (exported to fp32 and int8; default: an untrained "
        "iresnet50)",
    )
    parser.add_argument("--gallery", type=int, default=1000, help="random unit vectors in the gallery")
    parser.add_argument(
        "--det-size",
        type=int,
        nargs=2,
        default=(640, 640),
        metavar=("W", "H"),
        help="insightface's det_size: it letterboxes every photo into W x H (facekit: 640x480)",
    )
    parser.add_argument("--compare-threads", action="store_true", help="facekit with --threads 1, 2 and unset, only")
    args = parser.parse_args()
    if min(args.photos, args.repeats, *args.det_size, args.threads or 1) < 1 or args.gallery < 0:
        parser.error("--photos, --repeats, --threads and --det-size must be positive, --gallery at least 0")
    if not args.detector.is_file():
        parser.error(f"{args.detector}: no such file")
    if args.recognizer is not None and not (args.recognizer.is_dir() or args.recognizer.suffix == ".onnx"):
        parser.error(f"{args.recognizer}: expected an .onnx file or a facekit recognizer directory")
    sys.path.insert(0, str(ROOT))
    if args.compare_threads:
        return compare_threads(args)
    import insightface
    import onnxruntime as ort

    from facekit.gallery.recognize import Matcher, default_threshold

    load_before = os.getloadavg()[0]
    options = session_options(args.threads, not args.no_spinning)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        recognizer, int8 = args.recognizer, None
        described = "an untrained iresnet50" if recognizer is None else recognizer.name
        if recognizer is None:
            print("making an untrained iresnet50 (BatchNorm statistics from random input) ...", file=sys.stderr)
            recognizer = untrained_iresnet50(tmp / "iresnet50")
        if recognizer.is_dir():
            print("exporting it to fp32 and int8 ONNX ...", file=sys.stderr)
            recognizer, int8 = export_recognizer(recognizer, tmp)
        paths = write_photos(tmp / "photos", args.photos)
        pipelines = {"facekit": load_facekit(args.detector, recognizer, options)}
        if int8 is not None:
            pipelines["facekit int8"] = load_facekit(args.detector, int8, options)
        pipeline = pipelines["facekit"]
        app = load_insightface(args.detector, recognizer, tmp / "insightface", options, tuple(args.det_size))
        galleries = {name: build_gallery(p, args.gallery) for name, p in pipelines.items()}  # each its own, as build-db
        gallery = galleries["facekit"]
        threshold, _ = default_threshold(pipeline.recognizer)
        matchers = {name: Matcher(g, match="image") for name, g in galleries.items()}
        outs = {name: tmp / f"recognize_{i}.jsonl" for i, name in enumerate(pipelines)}
        passes = {
            name: lambda name=name, p=p: run_facekit(paths, p, matchers[name], threshold, outs[name])
            for name, p in pipelines.items()
        }
        passes["insightface"] = lambda: run_insightface(paths, app, gallery, threshold)
        print(f"warm-up, then {args.repeats} timed passes of {len(paths)} photos each ...", file=sys.stderr)
        for run in passes.values():  # first-run allocations; insightface makes its 640x640 detector session
            run()
        threads = check_sessions(app, pipelines)
        runs = {name: [] for name in passes}
        for _ in range(args.repeats):  # interleaved, so that a busy spell of the machine hits all
            for name, run in passes.items():
                runs[name].append(run())
        distinct = paths[: len(PHOTOS)]
        agree = agreement(distinct, pipeline, app, outs["facekit"], gallery, threshold)
        agree_int8 = embedding_agreement(distinct, pipeline, pipelines["facekit int8"]) if int8 else None
    load_after = os.getloadavg()[0]

    median = {name: sorted(r, key=lambda p: p.seconds)[(len(r) - 1) // 2] for name, r in runs.items()}
    speed = {name: len(paths) / p.seconds for name, p in median.items()}
    best = {name: len(paths) / min(p.seconds for p in r) for name, r in runs.items()}
    print(
        f"\nrecognize: {len(paths)} photos of 640x480 ({len(PHOTOS)} distinct, 1-6 faces each) against a gallery of "
        f"{len(gallery)} faces ({len(gallery.identities)} identities); detector {args.detector.name}, recognizer "
        f"{described} ({pipeline.recognizer.embedding_size}-d"
        f"{'; int8: facekit export --int8 on the aligned crops of ORL s1-s30' if int8 else ''})\n"
        f"CPU: {len(os.sched_getaffinity(0))} cores, load average {load_before:.1f} before, {load_after:.1f} after; "
        f"onnxruntime {ort.__version__}, CPU provider, intra-op threads: {threads}, spin-waiting "
        f"{'off' if args.no_spinning else 'on (default)'}; facekit detects at 640x480, insightface at "
        f"{args.det_size[0]}x{args.det_size[1]} (det_size); median and best of {args.repeats} passes after a warm-up\n"
    )
    labels = {
        "facekit": "facekit recognize_images, batch 16",
        "facekit int8": "facekit recognize_images, batch 16, int8 recognizer",
        "insightface": f"insightface {insightface.__version__} FaceAnalysis",
    }
    print(
        table(
            ["pipeline", "images/s", "ms/photo", "best images/s", "vs insightface", "faces found"],
            [
                [
                    labels[name],
                    f"{speed[name]:.2f}",
                    f"{1000 / speed[name]:.1f}",
                    f"{best[name]:.2f}",
                    f"{speed[name] / speed['insightface']:.2f}x",
                    str(median[name].faces),
                ]
                for name in runs
            ],
        )
    )
    stages = ["read", "detect", "align", "embed", "search"]
    print("\nms per photo by stage, in the median pass (other: the rest, e.g. writing JSON Lines, Python glue)\n")
    rows = []
    for name, p in median.items():
        times = [1000 * p.stages.get(stage, 0.0) / len(paths) for stage in stages]
        rows.append([name, *(f"{t:.1f}" for t in times), f"{1000 * p.seconds / len(paths) - sum(times):.1f}"])
        rows[-1].append(f"{1000 * p.seconds / len(paths):.1f}")
    print(table(["pipeline", *stages, "other", "total"], rows))
    print(
        f"\nagreement on the {agree['photos']} distinct photos: same number of faces in {agree['same_count']}; "
        f"{agree['matched']} faces matched by IoU (min {agree['iou_min']:.3f}), landmarks within "
        f"{agree['points_max_px']:.2f} px, aligned crops differ by {agree['crop_mean_abs']:.2f} grey levels on "
        f"average (worst crop {agree['crop_worst_abs']:.2f}); embedding cosine facekit vs insightface "
        f"min {agree['cosine_min']:.4f}, mean {agree['cosine_mean']:.4f} (facekit, between different faces: "
        f"mean {agree['different_faces_cosine_mean']:.4f}); same identity (or both unknown) for "
        f"{agree['same_identity']} of {agree['matched']}"
    )
    if agree_int8:
        print(
            f"\nint8 recognizer vs fp32 on the {agree_int8['faces']} faces of the distinct photos (the same crops): "
            f"embedding cosine min {agree_int8['cosine_min']:.4f}, mean {agree_int8['cosine_mean']:.4f}"
        )


if __name__ == "__main__":
    main()
