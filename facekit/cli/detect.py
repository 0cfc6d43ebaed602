"""Detection commands: detect, import-model. Library imports happen inside the commands."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from facekit.cli.options import (
    ANNOTATED_HELP,
    MAX_PIXELS,
    THREADS,
    RegistryChoice,
    backbones,
    detector_bodies,
    detector_options,
    session_options,
    torch_threads,
)


@dataclass(frozen=True)
class Importer:
    """A SOURCE of import-model: `target` ("module:function") is called as function(FILE, OUT_DIR), plus the
    import-model option named by `option` as a keyword; `help` is its paragraph of `--help`; a `recognizer` directory
    gets recognizer.onnx beside model.pt; `folder`: FILE may be a folder."""

    target: str
    help: str
    recognizer: bool = False
    folder: bool = False
    option: str | None = None


IMPORTERS = {
    "pytorch-retinaface": Importer(
        "facekit.detection.weights:import_pytorch_retinaface",
        "a biubug6/Pytorch_Retinaface .pth (DataParallel 'module.' prefixes are stripped).",
        option="body",
    ),
    "dlib-resnet": Importer(
        "facekit.recognition.dlib_import:import_dlib_resnet",
        "dlib's dlib_face_recognition_resnet_model_v1.dat (in PyPI's face-recognition-models), read without dlib into "
        "a recognizer directory: model.pt, config.yaml and recognizer.onnx, 150x150 crops, 128-d.",
        recognizer=True,
    ),
    "mtcnn": Importer(
        "facekit.detection.mtcnn:import_facenet_pytorch",
        "the facenet-pytorch wheel (`pip download --no-deps facenet-pytorch==2.6.0`; never installed) or a folder of "
        "its facenet_pytorch/data/{pnet,rnet,onet}.pt: a detector directory running MTCNN's cascade.",
        folder=True,
    ),
    "arcface-torch": Importer(
        "facekit.recognition.arcface_torch:import_arcface_torch",
        "an insightface/arcface_torch backbone.pth (or training checkpoint) of --backbone: a recognizer directory with "
        "model.pt, config.yaml and recognizer.onnx.",
        recognizer=True,
        option="backbone",
    ),
}
IMPORT_HELP = "\n\n".join(
    ["Make a facekit model directory from another project's checkpoint."]
    + [f"SOURCE {name}: {importer.help}" for name, importer in IMPORTERS.items()]
)


@click.command("import-model", help=IMPORT_HELP)
@click.argument("source", type=click.Choice(sorted(IMPORTERS)))
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--body", type=RegistryChoice(detector_bodies), help="Override the body read from the keys.")
@click.option(
    "--backbone",
    type=RegistryChoice(backbones),
    default="iresnet50",
    show_default=True,
    help="arcface-torch: the backbone's architecture (its train config's `network`).",
)
def import_model_cmd(source: str, file: Path, out_dir: Path, **options: str | None) -> None:
    """`facekit import-model SOURCE FILE OUT_DIR`: the IMPORTERS entry of SOURCE, called with its option."""
    import importlib

    from facekit.cli.outputs import Inputs
    from facekit.modeldir import MODEL_FILE

    importer = IMPORTERS[source]
    if options["body"] and importer.option != "body":
        raise click.BadParameter(f"is for pytorch-retinaface checkpoints, not {source}", param_hint="--body")
    if file.is_dir() and not importer.folder:
        raise click.BadParameter(f"{file} is a folder; SOURCE {source} takes a file", param_hint="FILE")
    outputs = [out_dir / MODEL_FILE]
    if importer.recognizer:
        from facekit.recognition.export import ONNX_FILE

        outputs.append(out_dir / ONNX_FILE)
    inputs = Inputs().data(file, "the weights folder" if file.is_dir() else "the checkpoint")
    inputs.check(files=outputs, folders=[out_dir])
    module, function = importer.target.split(":")
    keyword = {importer.option: options[importer.option]} if importer.option else {}
    path = getattr(importlib.import_module(module), function)(file, out_dir, **keyword)
    click.echo(f"imported {file} -> {path}")


@click.command("detect")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@detector_options()
@click.option("--threshold", default=0.5, show_default=True, type=click.FloatRange(0, 1), help="Minimum face score.")
@click.option("--nms", default=0.4, show_default=True, type=click.FloatRange(0, 1), help="NMS IoU threshold.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write JSON Lines here instead of stdout.")
@click.option(
    "--save-annotated",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write a copy of each image with boxes, scores and landmarks drawn: " + ANNOTATED_HELP,
)
@MAX_PIXELS
@THREADS
def detect_cmd(
    images: tuple[Path, ...],
    model_path: Path,
    backend: str,
    threshold: float,
    nms: float,
    max_size: int,
    out: Path | None,
    save_annotated: Path | None,
    device: str,
    max_pixels: int,
    threads: int | None,
) -> None:
    """Detect faces in IMAGES (files or folders, searched recursively).

    One JSON object per image: {"image", "width", "height", "faces": [{"box": [x1, y1, x2, y2], "score",
    "landmarks": [[x, y] x 5]}]}. Unreadable images are skipped and listed at the end.
    """
    from facekit.cli.outputs import Inputs
    from facekit.data.images import NoReadablePhotos
    from facekit.detection.run import detect_images
    from facekit.errors import FacekitError
    from facekit.runtime.detector import DetectSettings, load_face_detector

    reads = Inputs().model(model_path, "detector")
    for image in images:
        reads.data(image, "the image folder" if image.is_dir() else "the image")
    reads.check(files=[out], folders=[save_annotated])
    detector = load_face_detector(model_path, device, backend, session_options(threads))
    torch_threads(threads)
    settings = DetectSettings(threshold=threshold, nms=nms, max_size=max_size or None)
    try:
        report = detect_images(images, detector, settings, out=out, annotated_dir=save_annotated, max_pixels=max_pixels)
    except NoReadablePhotos as exc:
        if len(exc.unreadable) == 1:  # the only image: its own error
            raise FacekitError(exc.unreadable[0]) from None
        _list_skipped(exc.unreadable)
        raise FacekitError(f"{', '.join(map(str, images))}: {exc}") from None
    click.echo(f"{report.images} images, {report.faces} faces" + (f" -> {out}" if out else ""), err=True)
    _list_skipped(report.skipped)


def _list_skipped(messages: list[str]) -> None:
    if messages:
        click.echo(f"warning: skipped {len(messages)} unreadable images:", err=True)
        for message in messages:
            click.echo(f"  - {message}", err=True)
