"""Options and output helpers shared by several commands, defined once."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import click

from facekit import DEFAULT_MAX_PIXELS

BACKEND = click.option(
    "--backend",
    type=click.Choice(["auto", "torch", "onnx"]),
    default="auto",
    show_default=True,
    help="For a model directory: PyTorch (auto) or its exported .onnx through ONNX Runtime.",
)
DEVICE = click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1 (ONNX: the CUDA provider).")
MAX_SIZE_HELP = "Scale larger photos down to this longest side for detection (0 = original size)."
ANNOTATED_HELP = (
    "JPEG copies in the photos' folder structure (x.jpg keeps its name, x.png becomes x.png.jpg); not a photo folder "
    "nor inside one."
)
FLIP = click.option("--flip/--no-flip", default=False, show_default=True, help="Average each face with its mirror.")
DET_THRESHOLD = click.option(
    "--det-threshold", default=0.5, show_default=True, type=click.FloatRange(0, 1), help="Minimum face score."
)
FACE_ANALYSIS_MAX_SIZE = 640  # --max-size where faces are found to be recognized or aligned (FaceAnalysis's det_size)


class ShardType(click.ParamType):
    """K/N -> facekit.data.shard.Shard (1 <= K <= N)."""

    name = "K/N"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> object:
        from facekit.data.shard import Shard

        if isinstance(value, Shard):
            return value
        try:
            return Shard.parse(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SHARD = click.option(
    "--shard",
    type=ShardType(),
    help="Run on shard K of N only (1 <= K <= N): the inputs whose path relative to the data folder (or list's "
    "folder) hashes (SHA-1) to K; N machines running 1/N .. N/N cover every input once.",
)
THREADS = click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="Threads for ONNX Runtime (intra- and inter-op) and, when the models run in PyTorch, torch "
    "[default: theirs, one per core]. 1 is often faster on a busy machine.",
)


INDEX_PARAM = click.option(
    "--index-param",
    "index_params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A parameter of the --index named (repeatable): ivf nlist, nprobe; hnsw m, ef_construction, ef_search; "
    "lsh nbits (bits per code, default 256), rerank (candidates re-ranked exactly, default 256).",
)


def parse_index_params(index: str, texts: tuple[str, ...]) -> dict[str, int]:
    """--index-param's NAME=VALUE texts as {name: int}, checked against --index; a bad one is a usage error."""
    if not texts:
        return {}
    hint = "'--index-param'"
    if index in ("auto", "exact"):
        raise click.BadParameter(f"applies to --index flat, ivf, hnsw or lsh, not {index}", param_hint=hint)
    params = {}
    for text in texts:
        name, _, value = text.partition("=")
        if not name.strip() or not value.strip().isdigit():
            raise click.BadParameter(f"{text!r}: expected NAME=INTEGER, such as nbits=512", param_hint=hint)
        params[name.strip()] = int(value)
    from facekit.gallery.indexes import check_params

    try:
        check_params(index, params)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from None
    return params


def session_options(threads: int | None):  # onnxruntime.SessionOptions | None
    """ONNX Runtime session options of --threads (None: ONNX Runtime's defaults)."""
    if threads is None:
        return None
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = threads
    return options


def torch_threads(threads: int | None) -> None:
    """--threads for PyTorch, when the models loaded it (the serving path with ONNX models never imports torch)."""
    if threads is not None and "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)


def _opencv_limit(_ctx: click.Context, _param: click.Parameter, value: int) -> int:
    """A --max-pixels above OpenCV's own limit (the backstop for formats whose header facekit does not read,
    facekit/__init__.py sets it to the default) raises that too, or OpenCV would refuse what the flag lets through.
    OpenCV reads it once, when cv2 is first imported: in a `facekit` process, still to come while options are
    parsed. It is never lowered (in a process that goes on, such as a test run, that would outlast the command):
    facekit checks the decoded size against --max-pixels itself."""
    current = os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", "")
    if "cv2" not in sys.modules and (not current.isdigit() or value > int(current)):
        os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(value)
    return value


MAX_PIXELS = click.option(
    "--max-pixels",
    default=DEFAULT_MAX_PIXELS,
    show_default=True,
    type=click.IntRange(min=1),
    callback=_opencv_limit,
    help="Refuse photos of more pixels than this, as their header says, before decoding them (decompression bombs).",
)


def listing(title: str, items: list[str], limit: int | None = None, more: str = "") -> None:
    """`title (N):` and one `  - item` line each on stderr, the first `limit` of them (all when None)."""
    if items:
        click.echo(f"{title} ({len(items)}):", err=True)
        for item in items[:limit]:
            click.echo(f"  - {item}", err=True)
        if limit is not None and len(items) > limit:
            click.echo(f"  ... and {len(items) - limit} more{more}", err=True)


def cli_pipeline(detect_model: Path, recognize_model: Path, backend: str, device: str, max_size: int,
                 det_threshold: float, flip: bool, max_pixels: int, threads: int | None = None):  # fmt: skip
    """The runtime.pipeline.FacePipeline of pipeline_options' values (max_size 0: photos at their own size; threads
    None: ONNX Runtime's and torch's defaults)."""
    from facekit.runtime.detector import DetectSettings
    from facekit.runtime.pipeline import load_pipeline

    settings = DetectSettings(threshold=det_threshold, max_size=max_size or None)
    pipeline = load_pipeline(detect_model, recognize_model, device=device, backend=backend, settings=settings,
                             flip=flip, max_pixels=max_pixels, session_options=session_options(threads))  # fmt: skip
    torch_threads(threads)
    return pipeline


def _picks() -> list[str]:
    from facekit.runtime.pipeline import PICKS

    return list(PICKS)


def pick_option() -> Callable:
    """--pick: which face of a photo with several stands for its person (runtime.pipeline.PICKS)."""
    return click.option(
        "--pick",
        type=RegistryChoice(_picks),
        default="largest",
        show_default=True,
        help="The face kept from a photo with several: the largest box, the box nearest the photo's centre (loose "
        "crops around one person) or the highest detection score.",
    )


def detector_options(max_size_help: str = MAX_SIZE_HELP) -> Callable:
    """--model, --backend, --device and --max-size: which detector runs where, on what input size."""
    model = click.option(
        "--model",
        "model_path",
        required=True,
        type=click.Path(exists=True, path_type=Path),
        help="A facekit detector model directory (or its model.pt), or a SCRFD-layout .onnx "
        "(facekit's detector.onnx, insightface's SCRFD / det_10g).",
    )
    max_size = click.option(
        "--max-size", default=1280, show_default=True, type=click.IntRange(min=0), help=max_size_help
    )
    return compose([model, BACKEND, DEVICE, max_size])


def pipeline_options(batch: bool = True) -> Callable:
    """Options of the commands that run a detector and a recognizer given as positional model paths."""
    options = [
        BACKEND,
        DEVICE,
        click.option(
            "--max-size",
            default=FACE_ANALYSIS_MAX_SIZE,
            show_default=True,
            type=click.IntRange(min=0),
            help=MAX_SIZE_HELP + f" {FACE_ANALYSIS_MAX_SIZE} as insightface's FaceAnalysis: portraits' large faces "
            "need it.",
        ),
        DET_THRESHOLD,
        MAX_PIXELS,
    ]
    if batch:
        options.append(
            click.option("--batch", default=16, show_default=True, type=click.IntRange(min=1), help="Photos per batch.")
        )
    return compose(options)


def compose(options: list[Callable]) -> Callable:
    def decorate(func: Callable) -> Callable:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


class RegistryChoice(click.Choice):
    """A click.Choice over the names `load()` returns (a facekit.registry.Registry, any iterable of names), read
    when first needed (so `facekit --help` imports no torch)."""

    def __init__(self, load: Callable[[], Iterable[str]]) -> None:
        self._load = load
        self._choices: list[str] | None = None
        super().__init__([])

    @property
    def choices(self) -> list[str]:
        if self._choices is None:
            self._choices = sorted(self._load())
        return self._choices

    @choices.setter
    def choices(self, value: object) -> None:  # click.Choice.__init__ assigns; the registry decides
        pass


def detector_bodies() -> Iterable[str]:
    """The registered RetinaFace bodies (facekit.detection.model.BODIES), for RegistryChoice."""
    from facekit.detection.model import BODIES

    return BODIES


def backbones() -> Iterable[str]:
    """The registered recognition backbones (facekit.recognition.backbones.BACKBONES), for RegistryChoice."""
    from facekit.recognition.backbones import BACKBONES

    return BACKBONES


def losses() -> Iterable[str]:
    """The registered recognition losses (facekit.recognition.losses.LOSSES), for RegistryChoice."""
    from facekit.recognition.losses import LOSSES

    return LOSSES
