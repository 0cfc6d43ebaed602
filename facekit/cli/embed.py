"""embed: the embedding of each face in photos, with its box, landmarks and score (an .h5, or .npy + JSON Lines)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from facekit.cli.options import FLIP, SHARD, THREADS, cli_pipeline, listing, pick_option, pipeline_options

if TYPE_CHECKING:
    from facekit.data.shard import Shard

MODEL = click.Path(exists=True, path_type=Path)


def _suffix(_ctx: click.Context, _param: click.Parameter, value: Path) -> Path:
    from facekit.gallery.embed import SUFFIXES

    if value.suffix.lower() not in SUFFIXES:
        raise click.BadParameter(f"{value}: expected a file ending in {' or '.join(SUFFIXES)}")
    return value


@click.command("embed")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--detect", "detect_model", required=True, type=MODEL, help="Detector: a model directory or .onnx.")
@click.option(
    "--recognize", "recognize_model", required=True, type=MODEL, help="Recognizer: a model directory or .onnx."
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_suffix,
    help="FILE.h5, or FILE.npy (the embeddings) with FILE.jsonl beside it (one line per row).",
)
@click.option("--all-faces", is_flag=True, help="Every face of each photo (default: one face per photo, see --pick).")
@pick_option()
@FLIP
@SHARD
@pipeline_options()
@THREADS
def embed_cmd(images: tuple[Path, ...], detect_model: Path, recognize_model: Path, out: Path, all_faces: bool,
              pick: str, flip: bool, shard: Shard | None, backend: str, device: str, max_size: int,
              det_threshold: float, max_pixels: int, batch: int, threads: int | None) -> None:  # fmt: skip
    """Write the embedding of each face in IMAGES (images, folders searched recursively, or .txt / .csv / .lst
    lists): its photo, box, landmarks, detection score and L2-normalised embedding, one row per face, the same
    embeddings as recognize and build-db make. Photos that cannot be read or show no face are skipped and listed.
    With --shard K/N, the photos of shard K only (each IMAGES argument split by paths relative to it).
    Exit codes: 0 written, 1 nothing written (bad model, no readable photo, no face at all), 2 usage error.
    """
    from facekit.cli.outputs import Inputs
    from facekit.data.images import NoReadablePhotos
    from facekit.data.shard import require_some, select_photos
    from facekit.errors import FacekitError
    from facekit.gallery.embed import embed_images, output_files
    from facekit.gallery.sources import query_list

    outputs = output_files(out)
    reads = Inputs().model(detect_model, "detector").model(recognize_model, "recognizer")
    paths, total = [], 0
    for source in images:
        photos = query_list(source)
        if not photos:
            raise FacekitError(f"{source}: no photos to embed (expected an image, a folder of images or a list)")
        reads.photo_source(source, photos, "photo")
        total, paths = total + len(photos), paths + select_photos(shard, source, photos)
    reads.check(files=outputs)
    require_some(shard, len(paths), total, ", ".join(map(str, images)))
    pipeline = cli_pipeline(detect_model, recognize_model, backend, device, max_size, det_threshold, flip, max_pixels,
                            threads)  # fmt: skip
    try:
        report = embed_images(paths, pipeline, out, all_faces=all_faces, pick=pick, batch_images=batch)
    except NoReadablePhotos as exc:
        if len(exc.unreadable) == 1:
            raise FacekitError(exc.unreadable[0]) from None
        listing("warning: unreadable photos, skipped", exc.unreadable, 20)
        raise FacekitError(f"{', '.join(map(str, images))}: {exc}") from None
    listing("warning: unreadable photos, skipped", report.unreadable, 20)
    listing("warning: photos without a face, skipped", report.no_face, 20)
    click.echo(f"{report.faces} faces from {report.images} photos -> {', '.join(map(str, outputs))}", err=True)
