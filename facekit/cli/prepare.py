"""Real-photo data preparation: align, make-bin (and the --detect options pack-rec shares). Library imports happen
inside the commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from facekit import ARCFACE_SIZE, DEFAULT_JPEG_QUALITY
from facekit.cli.options import (
    BACKEND,
    DET_THRESHOLD,
    DEVICE,
    FACE_ANALYSIS_MAX_SIZE,
    MAX_PIXELS,
    MAX_SIZE_HELP,
    SHARD,
    compose,
    listing,
    pick_option,
)

if TYPE_CHECKING:
    from facekit.data.shard import Shard

FOLDERS = click.Path(exists=True, file_okay=False, path_type=Path)


def align_options(detect_required: bool) -> Callable:
    """--detect MODEL and how photos become crops: --recognizer, --pick, --max-size, --det-threshold, --workers,
    --backend, --device, --max-pixels."""
    return compose(
        [
            click.option(
                "--detect",
                "detect_model",
                required=detect_required,
                type=click.Path(exists=True, path_type=Path),
                help="Detector that finds the face to align: a facekit detector directory (or model.pt) or a "
                "SCRFD-layout .onnx (insightface's SCRFD-500M / det_10g).",
            ),
            click.option(
                "--recognizer",
                "recognizer_model",
                type=click.Path(exists=True, path_type=Path),
                help="Align onto this recognizer's own template and input size (a facekit recognizer directory, "
                "model.pt or .onnx) instead of the ArcFace template at --size.",
            ),
            pick_option(),
            click.option(
                "--max-size",
                default=FACE_ANALYSIS_MAX_SIZE,
                show_default=True,
                type=click.IntRange(min=0),
                help=MAX_SIZE_HELP + f" {FACE_ANALYSIS_MAX_SIZE} as build-db.",
            ),
            DET_THRESHOLD,
            click.option(
                "--workers",
                default=1,
                show_default=True,
                type=click.IntRange(min=1),
                help="Photos detected at once (threads).",
            ),
            BACKEND,
            DEVICE,
            MAX_PIXELS,
        ]
    )


def load_aligner(detect_model: Path, backend: str, device: str, size: int | None, pick: str, max_size: int,
                 det_threshold: float, max_pixels: int, recognizer_model: Path | None = None):  # fmt: skip
    """(detector, AlignSettings) from the align options: crops of `size` (None: ARCFACE_SIZE) on ArcFace's template,
    or of `recognizer_model`'s own size and template."""
    from facekit.runtime.detector import load_face_detector
    from facekit.runtime.prepare import AlignSettings

    points = None
    if recognizer_model is not None:
        from facekit.runtime.recognizer import load_face_recognizer

        if size is not None:
            raise click.BadParameter("the recognizer's input size is the crop size; give one", param_hint="'--size'")
        recognizer = load_face_recognizer(recognizer_model, device, backend)
        size, points = recognizer.input_size, tuple(map(tuple, recognizer.template.tolist()))
    settings = AlignSettings(size=size or ARCFACE_SIZE, pick=pick, max_size=max_size or None, threshold=det_threshold,
                             max_pixels=max_pixels, template=points)  # fmt: skip
    return load_face_detector(detect_model, device, backend), settings


def detect_only(detect_model: Path | None, **given: object) -> None:
    """Usage error for options (name -> value, None or False when not given) that apply with --detect only."""
    for name, value in given.items():
        if detect_model is None and value not in (None, False):
            raise click.BadParameter("applies with --detect only (aligned crops keep their size and alignment)",
                                     param_hint=f"'--{name.replace('_', '-')}'")  # fmt: skip


def report_crops(crops: object, pick: str) -> None:
    """The photos that gave no crop, and those with several faces (the first 20)."""
    listing("warning: unreadable photos, skipped", crops.unreadable)
    listing("warning: photos without a face, skipped", crops.no_face)
    listing(f"note: photos with several faces (kept the {pick} one)", crops.several_faces, 20)
    listing("warning: person folders without any face", crops.empty, 20)


@click.command("align")
@click.argument("src", type=FOLDERS)
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--size", type=click.IntRange(min=16), help=f"Crop side (pixels) [default: {ARCFACE_SIZE}, or the recognizer's]."
)
@click.option(
    "--quality",
    default=DEFAULT_JPEG_QUALITY,
    show_default=True,
    type=click.IntRange(1, 100),
    help="JPEG quality of the crops.",
)
@click.option("--force", is_flag=True, help="Redo everything when OUT was aligned with other settings.")
@SHARD
@align_options(detect_required=True)
def align_cmd(src: Path, out: Path, size: int | None, recognizer_model: Path | None, quality: int, force: bool,
              shard: Shard | None, detect_model: Path, pick: str, max_size: int, det_threshold: float, workers: int,
              backend: str, device: str, max_pixels: int) -> None:  # fmt: skip
    """Align one face of each raw photo in SRC (one folder per person) onto the recognizer's template.

    OUT gets the same folders of SIZE x SIZE JPEG crops named <stem>.jpg and OUT/alignment.json, which records
    every photo: source, crop, status (ok, no_face, unreadable), faces found, the one picked, its box, score and
    landmarks. Re-running skips the photos already done; an interrupted run keeps its progress. Photos that are
    unreadable, show no face or several are listed at the end. With --shard K/N, the photos of shard K only, into
    an OUT of its own (its alignment.json names the shard): the crops of all shards never share a name, so their
    folders copy into one.
    """
    from facekit.cli.outputs import Inputs
    from facekit.errors import FacekitError
    from facekit.runtime.prepare import ALIGNMENT_FILE, align_folders

    inputs = Inputs().data(src, "the photo folder").model(detect_model, "detector")
    inputs.model(recognizer_model, "recognizer").check(folders=[out])
    detector, settings = load_aligner(detect_model, backend, device, size, pick, max_size, det_threshold, max_pixels,
                                      recognizer_model)  # fmt: skip
    report = align_folders(src, out, detector, settings, workers=workers, force=force, quality=quality, shard=shard)
    listing("warning: unreadable photos", [r["error"] for r in report.having("unreadable")])
    listing("warning: photos without a face", [r["source"] for r in report.having("no_face")])
    several = [f"{r['source']} ({r['faces']} faces)" for r in report.several_faces]
    listing(f"note: photos with several faces (kept the {pick} one)", several, 20, f" (see {ALIGNMENT_FILE})")
    listing("warning: person folders without photos", report.empty, 20)
    if report.removed:
        click.echo(f"note: removed {len(report.removed)} crops of an earlier run that no photo gives now", err=True)
    counts = report.summary()
    if not counts["ok"]:
        raise FacekitError(f"{src}: no face found in {counts['photos']} photos (see {out / ALIGNMENT_FILE})")
    click.echo(
        f"aligned {counts['ok']} of {counts['photos']} photos ({100 * counts['ok'] / counts['photos']:.1f} %) into "
        f"{out} ({counts['photos'] - report.reused} this run, {report.reused} done before); {counts['no_face']} "
        f"without a face, {counts['unreadable']} unreadable, {counts['several_faces']} with several faces"
    )


@click.command("make-bin")
@click.argument("identity_folders", type=FOLDERS)
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--pairs",
    default=3000,
    show_default=True,
    type=click.IntRange(min=20),
    help="Pairs to write (a multiple of 20): half same person, half different, in 10 balanced folds.",
)
@click.option("--seed", default=0, show_default=True, help="Random seed: the same seed writes the same pairs.")
@click.option(
    "--size",
    type=click.IntRange(min=16),
    help=f"Crop side with --detect [default: {ARCFACE_SIZE}, or the recognizer's].",
)
@align_options(detect_required=False)
def make_bin_cmd(identity_folders: Path, out: Path, pairs: int, seed: int, size: int | None,
                 detect_model: Path | None, recognizer_model: Path | None, pick: str, max_size: int,
                 det_threshold: float, workers: int, backend: str, device: str, max_pixels: int) -> None:  # fmt: skip
    """Write an insightface verification .bin of pairs of the people in IDENTITY_FOLDERS, and OUT.json naming them.

    IDENTITY_FOLDERS holds aligned crops all of one size, or raw photos with --detect MODEL (aligned in memory as
    `facekit align` does). With 20 people or more, each of the 10 folds has its own people (as LFW's View 2).
    """
    if out.suffix != ".bin":
        raise click.BadParameter(f"{out}: must end in .bin (the sidecar is {out.stem}.json)", param_hint="OUT")
    if pairs % 20:
        raise click.BadParameter(
            f"{pairs} is not a multiple of 20 (10 folds of equal same and different pairs)", param_hint="'--pairs'"
        )
    detect_only(detect_model, size=size, recognizer=recognizer_model)
    from facekit.cli.outputs import Inputs
    from facekit.runtime.prepare import align_in_memory, read_crops, write_pairs_bin

    reads = Inputs().data(identity_folders, "the photo folder").model(detect_model, "detector")
    reads.model(recognizer_model, "recognizer").check(files=[out, out.with_suffix(".json")])
    if detect_model is None:
        crops = read_crops(identity_folders, max_pixels=max_pixels)
    else:
        detector, settings = load_aligner(detect_model, backend, device, size, pick, max_size, det_threshold,
                                          max_pixels, recognizer_model)  # fmt: skip
        crops = align_in_memory(identity_folders, detector, settings, workers=workers)
    report_crops(crops, pick)
    aligned_by, template = None, None
    if detect_model is not None:
        aligned_by, template = str(detect_model), settings.points.round(4).tolist()
    result = write_pairs_bin(crops, out, pairs=pairs, seed=seed, source=str(identity_folders), aligned_by=aligned_by,
                             template=template)  # fmt: skip
    if result.pairs < result.requested:
        click.echo(
            f"warning: only {result.pairs} balanced distinct pairs exist, not {result.requested}; wrote them", err=True
        )
    folds = "person-disjoint folds" if result.disjoint else "folds that share people (fewer than 20 people)"
    click.echo(
        f"wrote {result.pairs} pairs ({result.sidecar['same']} same, {result.pairs - result.sidecar['same']} "
        f"different) of {len(result.people)} people in 10 {folds} to {out}; {out.with_suffix('.json')} names them"
    )
