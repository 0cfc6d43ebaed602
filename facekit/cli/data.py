"""Data commands: inspect, pack-rec, make-example-data. Library imports happen inside the commands."""

from __future__ import annotations

import json as jsonlib
from pathlib import Path

import click

from facekit import ARCFACE_SIZE, DEFAULT_JPEG_QUALITY
from facekit.cli.prepare import align_options, detect_only, load_aligner, report_crops

existing = click.Path(exists=True, path_type=Path)


def _print_tree(value: object, indent: int = 2) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            if isinstance(sub, dict) and any(isinstance(v, dict) for v in sub.values()):
                click.echo(f"{' ' * indent}{key}:")
                _print_tree(sub, indent + 2)
            elif isinstance(sub, dict):
                inline = ", ".join(f"{k} {v}" for k, v in sub.items()) or "-"
                click.echo(f"{' ' * indent}{key + ':':<23} {inline}")
            else:
                click.echo(f"{' ' * indent}{key + ':':<23} {'-' if sub is None else sub}")


@click.command("inspect")
@click.argument("path", type=existing)
@click.option("--json", is_flag=True, help="Print the report as JSON.")
def inspect_cmd(path: Path, json: bool) -> None:
    """Recognise the layout at PATH, validate all of it and summarise it.

    PATH: detection_train_data/ (or one split), recognition_train_data/ (or a .rec), a verification .bin,
    or identity folders. Exits 1 when a problem is found; notes (things done unusually but readable) do not count.
    """
    from facekit.data.inspect import detect_layout, inspect_path

    if detect_layout(path) == "gallery":
        from facekit.gallery.inspection import inspect_gallery

        report = inspect_gallery(path)
    else:
        report = inspect_path(path)
    if json:
        click.echo(jsonlib.dumps(report.as_dict(), indent=2))
    else:
        click.echo(f"{report.layout}: {report.path}")
        _print_tree(report.summary)
        click.echo(f"problems: {len(report.problems) or 'none'}")
        for problem in report.problems[:50]:
            click.echo(f"  - {problem}")
        if len(report.problems) > 50:
            click.echo(f"  ... and {len(report.problems) - 50} more (see --json)")
        if report.notes:
            click.echo("notes:")
            for note in report.notes:
                click.echo(f"  - {note}")
    if not report.ok:
        raise SystemExit(1)


@click.command("pack-rec")
@click.argument("image_folders", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("output_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--size",
    type=click.IntRange(min=16),
    help=f"Expected (or, with --resize / --detect, made) square size [default: {ARCFACE_SIZE}, or the recognizer's].",
)
@click.option("--resize", is_flag=True, help="Resize images that are not SIZE x SIZE instead of refusing them.")
@click.option(
    "--quality",
    default=DEFAULT_JPEG_QUALITY,
    show_default=True,
    type=click.IntRange(1, 100),
    help="JPEG quality of re-encodes.",
)
@align_options(detect_required=False)
def pack_rec_cmd(image_folders: Path, output_dir: Path, size: int | None, resize: bool, quality: int,
                 detect_model: Path | None, recognizer_model: Path | None, pick: str, max_size: int,
                 det_threshold: float, workers: int, backend: str, device: str, max_pixels: int) -> None:  # fmt: skip
    """Pack IMAGE_FOLDERS (one sub-folder per person) into OUTPUT_DIR/{cele.rec,cele.idx,cele.lst,property}.

    insightface's face2rec2 convention: images at keys 1..N, header record 0, one record per identity.
    JPEG and PNG files of the right size are stored byte for byte. Unreadable images are skipped and listed.
    With --detect MODEL the folders hold raw photos: each gives its face aligned as `facekit align` does
    (.lst paths person/<stem>.jpg); photos without a face are skipped and listed.
    """
    from facekit.cli.outputs import Inputs

    if detect_model is not None and resize:
        raise click.BadParameter("not with --detect (it makes SIZE x SIZE crops)", param_hint="'--resize'")
    detect_only(detect_model, recognizer=recognizer_model)
    reads = Inputs().data(image_folders, "the image folder").model(detect_model, "detector")
    reads.model(recognizer_model, "recognizer").check(folders=[output_dir])
    if detect_model is not None:
        from facekit.runtime.prepare import align_in_memory, pack_crops

        detector, settings = load_aligner(detect_model, backend, device, size, pick, max_size, det_threshold,
                                          max_pixels, recognizer_model)  # fmt: skip
        crops = align_in_memory(image_folders, detector, settings, workers=workers, quality=quality)
        report_crops(crops, pick)
        prop = pack_crops(crops, output_dir)
        click.echo(
            f"packed {len(crops.items)} faces of {len(crops.identities)} identities from {crops.photos} photos into "
            f"{output_dir} (property {prop.num_classes},{prop.height},{prop.width})"
        )
        return
    from facekit.data.pack import pack_identity_folders

    result = pack_identity_folders(image_folders, output_dir, size=size or ARCFACE_SIZE, resize=resize, quality=quality,
                                   max_pixels=max_pixels)  # fmt: skip
    click.echo(
        f"packed {result.images} images of {len(result.identities)} identities into {output_dir} "
        f"(property {result.prop.num_classes},{result.prop.height},{result.prop.width})"
    )
    if result.empty:
        click.echo(
            f"warning: {len(result.empty)} person folders contributed no image: {', '.join(result.empty[:10])}",
            err=True,
        )
    if result.skipped:
        click.echo(f"warning: skipped {len(result.skipped)} unreadable images:", err=True)
        for message in result.skipped:
            click.echo(f"  - {message}", err=True)


@click.command("make-example-data")
@click.argument("output_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=0, show_default=True, help="Random seed: the same seed writes the same files.")
def make_example_data_cmd(output_dir: Path, seed: int) -> None:
    """Generate a small synthetic instance of every layout in OUTPUT_DIR.

    detection_train_data/, recognition_train_data/ (+ example_val.bin), gallery/, probe/ and truth.json:
    procedural faces whose boxes, 5 landmarks and identities are known exactly.
    """
    from facekit.data.synthetic import make_example_data

    summary = make_example_data(output_dir, seed=seed)
    click.echo(f"wrote example data to {output_dir}")
    _print_tree(summary.as_dict())
