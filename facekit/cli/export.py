"""export: a facekit model directory -> its ONNX file (float32, float16 or int8), checked against PyTorch."""

from __future__ import annotations

from pathlib import Path

import click

from facekit.cli.options import MAX_PIXELS

PHOTOS = click.Path(exists=True, path_type=Path)


@click.command("export")
@click.argument("model_dir", type=click.Path(exists=True, path_type=Path))
@click.option("--fp16", is_flag=True, help="float16 weights and arithmetic (inputs and outputs stay float32).")
@click.option(
    "--int8",
    "calibration",
    type=PHOTOS,
    metavar="CALIBRATION_IMAGES",
    help="int8 (ONNX Runtime static quantisation) calibrated on these photos: an image, a folder or a list (at most "
    "64 of them, spread evenly over it); a detector's whole photos, a recognizer's aligned face crops (as `facekit "
    "align` makes).",
)
@click.option(
    "--opset",
    default=17,
    show_default=True,
    type=click.IntRange(13, 20),
    help="ONNX opset (13 to 20: per-channel int8 needs 13, PyTorch's TorchScript exporter stops at 20).",
)
@click.option(
    "--check",
    "checks",
    multiple=True,
    type=PHOTOS,
    metavar="IMAGES",
    help="Compare the export with PyTorch on these photos (an image, a folder or a list; repeatable; a recognizer's "
    "are face crops) and fail on a mismatch.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write it (default: MODEL_DIR/detector.onnx or recognizer.onnx, .fp16.onnx / .int8.onnx when "
    "converted).",
)
@click.option(
    "--insightface",
    is_flag=True,
    help="For insightface's FaceAnalysis: a recognizer trained on crops insightface cannot make (another template "
    "or size, e.g. dlib's 150x150 chips) is wrapped to take insightface's 256x256 ArcFace crops and resample them "
    "onto its own (default --out: recognizer.insightface.onnx). Others export as usual. Not with --check / --int8.",
)
@MAX_PIXELS
def export_cmd(model_dir: Path, fp16: bool, calibration: Path | None, opset: int, checks: tuple[Path, ...],
               out: Path | None, insightface: bool, max_pixels: int) -> None:  # fmt: skip
    """Write the ONNX file of the facekit model MODEL_DIR (trained by train-detect / train-recognize or made by
    import-model): a detector in insightface's SCRFD layout, a recognizer in its ArcFaceONNX convention at its own
    input size, both loadable by insightface.model_zoo.get_model and by facekit.

    A float32 export keeps the model's fingerprint, so galleries built with either form accept the other; float16
    and int8 files make slightly different embeddings and are known by their own. Exit codes: 0 written (and
    checked), 1 bad model or photos, or a mismatch with PyTorch (nothing written), 2 usage error.
    """
    from facekit.cli.outputs import Inputs
    from facekit.modeldir import MODEL_FILE
    from facekit.runtime.export import default_output, export_model, model_kind

    if fp16 and calibration is not None:
        raise click.UsageError("--fp16 and --int8 exclude each other")
    precision = "fp16" if fp16 else "int8" if calibration is not None else "fp32"
    kind = model_kind(model_dir)
    if insightface and kind == "detector":
        raise click.UsageError("--insightface is for recognizers (a detector's export is insightface's SCRFD layout)")
    out = out or default_output(model_dir, kind, precision, insightface=insightface)
    model_file = model_dir / MODEL_FILE if model_dir.is_dir() else model_dir
    reads = Inputs().file(model_file, f"the {kind} model file")
    reads.file(model_file.with_name("config.yaml"), f"the {kind} model's config")
    calibration_photos = [] if calibration is None else _photos(calibration, "calibration")
    if calibration is not None:
        reads.photo_source(calibration, calibration_photos, "calibration")
    check_photos = []
    for path in checks:
        photos = _photos(path, "--check")
        reads.photo_source(path, photos, "--check photo")
        check_photos += photos
    reads.check(files=[out])
    skipped: list[str] = []
    path, parity = export_model(model_dir, out, precision=precision, opset=opset, calibration=calibration_photos,
                                check=check_photos, max_pixels=max_pixels, kind=kind, skipped=skipped,
                                insightface=insightface)  # fmt: skip
    if skipped:
        click.echo(f"warning: unreadable photos, skipped ({len(skipped)}):", err=True)
        for item in skipped:
            click.echo(f"  - {item}", err=True)
    if parity is not None:
        click.echo(f"parity with PyTorch: {parity.summary()}", err=True)
    click.echo(f"exported {model_dir} -> {path} ({kind}, {precision}, opset {opset})")


def _photos(path: Path, what: str) -> list[Path]:
    """The photos at `path` (an image, a folder searched recursively, or a .txt / .csv / .lst list)."""
    from facekit.errors import FacekitError
    from facekit.gallery.sources import query_list

    photos = query_list(path)
    if not photos:
        raise FacekitError(f"{path}: no photos for {what} (expected an image, a folder of images or a list)")
    return photos
