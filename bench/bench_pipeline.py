"""Recognition throughput on this machine: what `facekit recognize DATA DB DETECT RECOGNIZE` does per photo (read,
detect, align, embed, search the gallery; the library path the CLI calls, photos read from disk, batch 16) beside
insightface's FaceAnalysis on the same two ONNX files (cv2.imread, app.get, the same gallery search in numpy), over
640x480 photos with 1-6 faces, on the CPU with the same onnxruntime settings for both.

    python bench/bench_pipeline.py [--photos 40] [--repeats 3] [--threads N] [--no-spinning] [--det-size W H]
                                   [--detector PATH] [--recognizer PATH] [--gallery 1000]

Detector: SCRFD-500M from ../shared/data/weights unless --detector (e.g. insightface's det_10g.onnx). Recognizer:
--recognizer (e.g. buffalo_l's w600k_r50.onnx), else an untrained iresnet50 (w600k_r50's architecture, 512-d)
exported by facekit with BatchNorm statistics set on random input: the real cost, meaningless identities. Gallery:
--gallery random unit vectors plus the faces of ../shared/data's knn_examples/train. Prints markdown tables: speed,
time per stage, and how far the two pipelines agree (faces per photo, boxes, crops, embeddings, identities).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from unittest import mock

import cv2
import numpy as np

if TYPE_CHECKING:
    from insightface.app import FaceAnalysis
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
SIZE = (640, 480)
CPU = ["CPUExecutionProvider"]
SPINNING = "session.intra_op.allow_spinning"  # onnxruntime session config key, "1" by default


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


def export_untrained_iresnet50(path: Path) -> Path:
    """An iresnet50, 512-d (w600k_r50's architecture) exported in insightface's ArcFaceONNX convention. arcface_torch's
    initialisation overflows in eval mode with the default running statistics (NaN embeddings), so every BatchNorm
    first gets the mean and variance of its input over a few batches of random crops (train mode, no gradients)."""
    import torch

    from facekit.recognition.backbones import create_backbone
    from facekit.recognition.config import RecognizerConfig
    from facekit.recognition.export import export_arcface_onnx

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
    return export_arcface_onnx(model, config, path)


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
    """The pipeline `facekit recognize` builds (ONNX files, CPU, photos seen at most 640 px wide). facekit's loader
    takes no onnxruntime options: given `options`, both sessions are rebuilt on the same files with them."""
    import onnxruntime as ort

    from facekit.runtime.detector import DetectSettings
    from facekit.runtime.pipeline import load_pipeline

    pipeline = load_pipeline(detector, recognizer, settings=DetectSettings(max_size=640))
    if options is not None:
        for model in (pipeline.detector, pipeline.recognizer):
            model.session = ort.InferenceSession(str(model.path), sess_options=options, providers=CPU)
    return pipeline


def load_insightface(
    detector: Path, recognizer: Path, root: Path, options: SessionOptions | None, det_size: tuple[int, int]
) -> FaceAnalysis:
    """FaceAnalysis over a model pack holding links to exactly the two files (root/models/<name>/), its sessions
    made with `options`; checked to route them to SCRFD and ArcFaceONNX."""
    from insightface.app import FaceAnalysis
    from insightface.model_zoo.arcface_onnx import ArcFaceONNX
    from insightface.model_zoo.scrfd import SCRFD

    pack = root / "models" / "facekit_bench_pipeline"
    pack.mkdir(parents=True)
    (pack / "1_detector.onnx").symlink_to(detector.resolve())
    (pack / "2_recognizer.onnx").symlink_to(recognizer.resolve())
    app = FaceAnalysis(
        name=pack.name,
        root=str(root),
        allowed_modules=["detection", "recognition"],
        providers=CPU,
        sess_options=options,
    )
    app.prepare(ctx_id=-1, det_size=det_size)
    routed = {task: type(model).__name__ for task, model in app.models.items()}
    if not (isinstance(app.models.get("detection"), SCRFD) and isinstance(app.models.get("recognition"), ArcFaceONNX)):
        raise SystemExit(f"insightface routed the files as {routed}; expected SCRFD and ArcFaceONNX")
    return app


def check_sessions(pipeline: FacePipeline, app: FaceAnalysis) -> str:
    """Every session of both libraries on the CPU provider alone, with the same intra-op threads and spinning; a
    description. insightface's SCRFD runs each det_size through a session of its own (fixed input shape), made on
    first use."""
    sessions = {
        "facekit detector": pipeline.detector.session,
        "facekit recognizer": pipeline.recognizer.session,
        "insightface detector": app.det_model.session,
        "insightface recognizer": app.models["recognition"].session,
    }
    for size, session in getattr(app.det_model, "resolution_sessions", {}).items():
        sessions[f"insightface detector {size[0]}x{size[1]}"] = session
    seen = set()
    for name, session in sessions.items():
        if session.get_providers() != CPU:
            raise SystemExit(f"{name} runs on {session.get_providers()}, expected {CPU}")
        options = session.get_session_options()
        try:
            spinning = options.get_session_config_entry(SPINNING)
        except RuntimeError:  # not set: onnxruntime's default, spinning
            spinning = "1"
        seen.add((options.intra_op_num_threads, spinning))
    if len(seen) != 1:
        raise SystemExit(f"the sessions differ in (intra-op threads, spinning): {seen}")
    threads = seen.pop()[0]
    return str(threads) if threads else "onnxruntime's default (one per physical core)"


def build_gallery(pipeline: FacePipeline, distractors: int, seed: int = 0) -> Gallery:
    """`distractors` random unit vectors (one identity each) plus the largest face of every photo of the
    knn_examples/train people (5 people, 9 photos)."""
    from facekit.gallery.store import Gallery, ModelStamp
    from facekit.runtime.pipeline import pick_face

    dim = pipeline.recognizer.embedding_size
    gallery = Gallery.empty(
        dim, ModelStamp.of(pipeline.recognizer), ModelStamp.of(pipeline.detector), crop_size=112, flip=False
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


class Stopwatch:
    """Seconds spent inside wrapped callables, summed by stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, stage: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - start

        return timed


@dataclass
class Pass:
    """One timed pass of a pipeline over the photos: wall seconds, faces found, seconds by stage."""

    seconds: float
    faces: int
    stages: dict[str, float]


def run_facekit(paths: list[Path], pipeline: FacePipeline, matcher: Matcher, threshold: float, out: Path) -> Pass:
    """recognize_images over the files, writing JSON Lines to `out` as the CLI does, its stages timed by wrapping
    the functions it calls (a clock read around each call, nothing else changes)."""
    from facekit.data import images
    from facekit.gallery import recognize

    watch = Stopwatch()
    readers = [(module, "read_image", "read") for module in (images, recognize) if hasattr(module, "read_image")]
    with ExitStack() as stack:
        for target, attribute, stage in (
            *readers,  # wherever recognize_images looks read_image up
            (pipeline, "detect", "detect"),
            (pipeline, "crops", "align"),
            (pipeline.recognizer, "embed", "embed"),
            (matcher, "match", "search"),
        ):
            stack.enter_context(mock.patch.object(target, attribute, watch.wrap(stage, getattr(target, attribute))))
        start = time.perf_counter()
        report = recognize.recognize_images(
            paths, pipeline, matcher, threshold=threshold, out=out, batch_images=16, progress=False
        )
        seconds = time.perf_counter() - start
    return Pass(seconds, report.faces, dict(watch.seconds))


def insightface_recognize(
    path: Path, app: FaceAnalysis, gallery: Gallery, threshold: float, watch: Stopwatch | None = None
) -> list[tuple]:
    """One photo read by OpenCV, through FaceAnalysis.get and the gallery search in numpy: [(face, identity or
    None, similarity)]."""
    clock = time.perf_counter
    t0 = clock()
    image = cv2.imread(str(path))
    t1 = clock()
    faces = app.get(image)
    t2 = clock()
    if faces:
        scores = np.stack([face.normed_embedding for face in faces]) @ gallery.embeddings.T  # [faces, N]
        best = scores.argmax(1)
        similarity = scores[np.arange(len(faces)), best].tolist()
        names = [gallery.identities[i] for i in gallery.identity_index[best]]
    t3 = clock()
    if watch is not None:
        watch.seconds["read"] += t1 - t0
        watch.seconds["search"] += t3 - t2
    if not faces:
        return []
    return [(face, n if s >= threshold else None, s) for face, n, s in zip(faces, names, similarity, strict=True)]


def run_insightface(paths: list[Path], app: FaceAnalysis, gallery: Gallery, threshold: float) -> Pass:
    """FaceAnalysis over the files, its detector and recognizer timed by wrapping their methods (ArcFaceONNX.get
    aligns and calls get_feat, which embeds)."""
    watch = Stopwatch()
    recognizer = app.models["recognition"]
    with ExitStack() as stack:
        for target, attribute, stage in (
            (app.det_model, "detect", "detect"),
            (recognizer, "get", "align"),
            (recognizer, "get_feat", "embed"),
        ):
            stack.enter_context(mock.patch.object(target, attribute, watch.wrap(stage, getattr(target, attribute))))
        start = time.perf_counter()
        faces = sum(len(insightface_recognize(path, app, gallery, threshold, watch)) for path in paths)
        seconds = time.perf_counter() - start
    stages = dict(watch.seconds)
    stages["align"] = stages.get("align", 0.0) - stages.get("embed", 0.0)  # get = align + get_feat
    return Pass(seconds, faces, stages)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def pairs(boxes_a: list[np.ndarray], boxes_b: list[np.ndarray], minimum: float = 0.5) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching by IoU (highest first, at least `minimum`): [(index in a, index in b, IoU)]."""
    candidates = sorted(((iou(a, b), i, j) for i, a in enumerate(boxes_a) for j, b in enumerate(boxes_b)), reverse=True)
    used_a, used_b, out = set(), set(), []
    for overlap, i, j in candidates:
        if overlap >= minimum and i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            out.append((i, j, overlap))
    return out


def agreement(
    paths: list[Path], pipeline: FacePipeline, app: FaceAnalysis, results: Path, gallery: Gallery, threshold: float
) -> dict:
    """How far the two pipelines agree on the distinct photos among `paths`: faces per photo, IoU of matched boxes,
    landmark distance, aligned-crop pixel difference, embedding cosine, identity; plus the cosine between
    different faces (facekit's), the floor against which the embedding cosine says anything."""
    from insightface.utils.face_align import norm_crop

    records = {}
    with open(results) as f:
        for line in f:
            record = json.loads(line)
            records[record["image"]] = record
    size = pipeline.recognizer.input_size
    same_count, ious, point_px, crop_diff, cosines, same_identity, embeddings = 0, [], [], [], [], 0, []
    for path in paths[: len(PHOTOS)]:
        image = cv2.imread(str(path))
        ours = pipeline.detect(image)
        our_embeddings = pipeline.embed([image] * len(ours), ours)
        embeddings.append(our_embeddings)
        our_identities = [face["identity"] for face in records[str(path)]["faces"]]
        theirs = insightface_recognize(path, app, gallery, threshold)
        same_count += len(ours) == len(theirs)
        for i, j, overlap in pairs([f.box for f in ours], [face.bbox for face, _, _ in theirs]):
            face, identity, _ = theirs[j]
            ious.append(overlap)
            point_px.append(float(np.abs(ours[i].landmarks - face.kps).max()))
            crop = norm_crop(image, landmark=face.kps, image_size=size).astype(np.float32)
            crop_diff.append(float(np.abs(pipeline.crops([image], [ours[i]])[0] - crop).mean()))
            cosines.append(float(our_embeddings[i] @ face.normed_embedding))
            same_identity += our_identities[i] == identity
    ours_all = np.concatenate(embeddings)
    between = (ours_all @ ours_all.T)[~np.eye(len(ours_all), dtype=bool)]
    nan = float("nan")
    return {
        "photos": len(paths[: len(PHOTOS)]),
        "same_count": same_count,
        "matched": len(cosines),
        "iou_min": min(ious, default=nan),
        "points_max_px": max(point_px, default=nan),
        "crop_mean_abs": statistics.fmean(crop_diff) if crop_diff else nan,
        "crop_worst_abs": max(crop_diff, default=nan),
        "cosine_min": min(cosines, default=nan),
        "cosine_mean": statistics.fmean(cosines) if cosines else nan,
        "different_faces_cosine_mean": float(between.mean()) if len(between) else nan,
        "same_identity": same_identity,
    }


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table, columns padded to line up in a terminal too."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


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
    parser.add_argument("--recognizer", type=Path, help="ArcFaceONNX .onnx (default: an untrained iresnet50 export)")
    parser.add_argument("--gallery", type=int, default=1000, help="random unit vectors in the gallery")
    parser.add_argument(
        "--det-size",
        type=int,
        nargs=2,
        default=(640, 640),
        metavar=("W", "H"),
        help="insightface's det_size: it letterboxes every photo into W x H (facekit: 640x480)",
    )
    args = parser.parse_args()
    if min(args.photos, args.repeats, *args.det_size, args.threads or 1) < 1 or args.gallery < 0:
        parser.error("--photos, --repeats, --threads and --det-size must be positive, --gallery at least 0")
    for path in (args.detector, args.recognizer):
        if path is not None and not path.is_file():
            parser.error(f"{path}: no such file")
    sys.path.insert(0, str(ROOT))
    import insightface
    import onnxruntime as ort

    from facekit.gallery.recognize import Matcher, default_threshold

    load_before = os.getloadavg()[0]
    options = session_options(args.threads, not args.no_spinning)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        recognizer = args.recognizer
        if recognizer is None:
            print("exporting an untrained iresnet50 (BatchNorm statistics from random input) ...", file=sys.stderr)
            recognizer = export_untrained_iresnet50(tmp / "iresnet50.onnx")
        paths = write_photos(tmp / "photos", args.photos)
        pipeline = load_facekit(args.detector, recognizer, options)
        app = load_insightface(args.detector, recognizer, tmp / "insightface", options, tuple(args.det_size))
        gallery = build_gallery(pipeline, args.gallery)
        threshold, _ = default_threshold(pipeline.recognizer)
        matcher = Matcher(gallery, match="image")
        out = tmp / "recognize.jsonl"
        passes = {
            "facekit": lambda: run_facekit(paths, pipeline, matcher, threshold, out),
            "insightface": lambda: run_insightface(paths, app, gallery, threshold),
        }
        print(f"warm-up, then {args.repeats} timed passes of {len(paths)} photos each ...", file=sys.stderr)
        for run in passes.values():  # first-run allocations; insightface makes its 640x640 detector session
            run()
        threads = check_sessions(pipeline, app)
        runs = {name: [] for name in passes}
        for _ in range(args.repeats):  # interleaved, so that a busy spell of the machine hits both
            for name, run in passes.items():
                runs[name].append(run())
        agree = agreement(paths, pipeline, app, out, gallery, threshold)
    load_after = os.getloadavg()[0]

    median = {name: sorted(r, key=lambda p: p.seconds)[(len(r) - 1) // 2] for name, r in runs.items()}
    speed = {name: len(paths) / p.seconds for name, p in median.items()}
    best = {name: len(paths) / min(p.seconds for p in r) for name, r in runs.items()}
    print(
        f"\nrecognize: {len(paths)} photos of 640x480 ({len(PHOTOS)} distinct, 1-6 faces each) against a gallery of "
        f"{len(gallery)} faces ({len(gallery.identities)} identities); detector {args.detector.name}, recognizer "
        f"{recognizer.name} ({pipeline.recognizer.embedding_size}-d)\n"
        f"CPU: {len(os.sched_getaffinity(0))} cores, load average {load_before:.1f} before, {load_after:.1f} after; "
        f"onnxruntime {ort.__version__}, CPU provider, intra-op threads: {threads}, spin-waiting "
        f"{'off' if args.no_spinning else 'on (default)'}; facekit detects at 640x480, insightface at "
        f"{args.det_size[0]}x{args.det_size[1]} (det_size); median and best of {args.repeats} passes after a warm-up\n"
    )
    labels = {
        "facekit": "facekit recognize_images, batch 16",
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


if __name__ == "__main__":
    main()
