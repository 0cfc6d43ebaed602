"""Detection commands: detect, import-model. Library imports happen inside the commands."""

from __future__ import annotations

from pathlib import Path

import click

from facekit.cli.options import ANNOTATED_HELP, MAX_PIXELS, RegistryChoice, detector_options

IMPORTERS = {
    "pytorch-retinaface": "Pytorch_Retinaface checkpoint (.pth, MobileNet-0.25 or ResNet-50 body)",
    "dlib-resnet": "dlib's dlib_face_recognition_resnet_model_v1.dat (a face recognizer: 150x150 RGB, 128-d)",
    "mtcnn": "facenet-pytorch's MTCNN weights: its wheel (.whl) or a folder of its pnet.pt, rnet.pt and onet.pt",
    "arcface-torch": "insightface/arcface_torch backbone.pth (a face recognizer; --backbone names its architecture)",
}


def _backbones() -> list[str]:
    from facekit.recognition.backbones import BACKBONES

    return list(BACKBONES)


@click.command("import-model")
@click.argument("source", type=click.Choice(sorted(IMPORTERS)))
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--body", type=click.Choice(["mobilenet0.25", "resnet50"]), help="Override the body read from the keys.")
@click.option(
    "--backbone",
    type=RegistryChoice(_backbones),
    default="iresnet50",
    show_default=True,
    help="arcface-torch: the backbone's architecture (its train config's `network`).",
)
def import_model_cmd(source: str, file: Path, out_dir: Path, body: str | None, backbone: str) -> None:
    """Make a facekit model directory from another project's checkpoint.

    SOURCE pytorch-retinaface: a biubug6/Pytorch_Retinaface .pth (DataParallel 'module.' prefixes are stripped).

    SOURCE dlib-resnet: dlib's dlib_face_recognition_resnet_model_v1.dat (in PyPI's face-recognition-models), read
    without dlib into a recognizer directory: model.pt, config.yaml and recognizer.onnx, 150x150 crops, 128-d.

    SOURCE mtcnn: the facenet-pytorch wheel (`pip download --no-deps facenet-pytorch==2.6.0`; never installed) or a
    folder of its facenet_pytorch/data/{pnet,rnet,onet}.pt: a detector directory running MTCNN's cascade.

    SOURCE arcface-torch: an insightface/arcface_torch backbone.pth (or training checkpoint) of --backbone: a
    recognizer directory with model.pt, config.yaml and recognizer.onnx.
    """
    from facekit.cli.outputs import Inputs
    from facekit.modeldir import MODEL_FILE

    if body and source != "pytorch-retinaface":
        raise click.BadParameter(f"is for pytorch-retinaface checkpoints, not {source}", param_hint="--body")
    if file.is_dir() and source != "mtcnn":
        raise click.BadParameter(f"{file} is a folder; SOURCE {source} takes a file", param_hint="FILE")
    inputs = Inputs().data(file, "the weights folder" if file.is_dir() else "the checkpoint")
    if source == "mtcnn":
        from facekit.detection.mtcnn import import_facenet_pytorch

        inputs.check(files=[out_dir / MODEL_FILE], folders=[out_dir])
        path = import_facenet_pytorch(file, out_dir)
    elif source == "dlib-resnet":
        from facekit.recognition.dlib_import import import_dlib_resnet
        from facekit.recognition.export import ONNX_FILE

        inputs.check(files=[out_dir / MODEL_FILE, out_dir / ONNX_FILE], folders=[out_dir])
        path = import_dlib_resnet(file, out_dir)
    elif source == "arcface-torch":
        from facekit.recognition.arcface_torch import import_arcface_torch
        from facekit.recognition.export import ONNX_FILE

        inputs.check(files=[out_dir / MODEL_FILE, out_dir / ONNX_FILE], folders=[out_dir])
        path = import_arcface_torch(file, out_dir, backbone)
    else:
        from facekit.detection.weights import import_pytorch_retinaface

        inputs.check(files=[out_dir / MODEL_FILE], folders=[out_dir])
        path = import_pytorch_retinaface(file, out_dir, body)
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
    detector = load_face_detector(model_path, device, backend)
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
