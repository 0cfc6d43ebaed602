"""Threshold commands: calibrate (and record) a recognizer's threshold, split people for open-set evaluation.
Library imports happen inside."""

from __future__ import annotations

from pathlib import Path

import click

from facekit import strict_json
from facekit.cli.options import FLIP, cli_pipeline, pick_option, pipeline_options

FAR = click.option(
    "--far",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Calibrate at the highest TAR whose FAR is at most this (0 < FAR < 1; needs >= 1 / FAR different pairs).",
)
BEST_ACCURACY = click.option(
    "--best-accuracy",
    is_flag=True,
    help="Calibrate at the highest balanced accuracy, the mean of TAR and TNR (the default rule).",
)


def rule(far: float | None, best_accuracy: bool) -> float | None:
    """The FAR target of --far / --best-accuracy (None: best accuracy); both at once is a usage error."""
    if far is not None and best_accuracy:
        raise click.UsageError("--far and --best-accuracy exclude each other")
    return far


@click.command("calibrate")
@click.argument("model", type=click.Path(exists=True, path_type=Path))
@click.argument("pairs", type=click.Path(exists=True, path_type=Path))
@FAR
@BEST_ACCURACY
@click.option(
    "--write",
    is_flag=True,
    help="Store the threshold and its provenance in MODEL (model.pt, config.yaml and recognizer.onnx's metadata, or "
    "a bare .onnx's metadata). Galleries built with MODEL keep working.",
)
@click.option(
    "--detect",
    "detect_model",
    type=click.Path(exists=True, path_type=Path),
    help="PAIRS folders hold photos: detect (this detector) and align one face of each, as evaluate-gallery does. "
    "Default: they hold aligned crops.",
)
@pick_option()
@FLIP
@click.option("--json", "as_json", is_flag=True, help="Print the calibration as JSON.")
@pipeline_options(batch=False)
def calibrate_cmd(model: Path, pairs: Path, far: float | None, best_accuracy: bool, write: bool,
                  detect_model: Path | None, pick: str, flip: bool, as_json: bool, backend: str, device: str,
                  max_size: int, det_threshold: float, max_pixels: int) -> None:  # fmt: skip
    """Calibrate MODEL's open-set threshold (cosine; "same person" from it up) on PAIRS and print it with the FAR
    and TAR it reaches there and the pairs and people it came from.

    MODEL: a recognizer model directory, its model.pt, or an .onnx. PAIRS: a verification .bin (people from its
    make-bin sidecar), or a folder of identity folders: every same-person pair and every different-person pair
    (a seeded sample when there are very many). Use people the recognizer never trained on, and neither the
    gallery nor the probe people of an evaluation. Exit codes: 0 done, 1 bad input, 2 usage error.
    """
    from facekit.gallery.protocol import calibration_set
    from facekit.runtime.recognizer import load_face_recognizer, store_calibration

    far = rule(far, best_accuracy)
    pipeline = None
    if detect_model is None:
        recognizer = load_face_recognizer(model, device, backend)
    else:
        pipeline = cli_pipeline(detect_model, model, backend, device, max_size, det_threshold, flip, max_pixels)
        recognizer = pipeline.recognizer
    pair_set, skipped = calibration_set(pairs, size=recognizer.input_size, pipeline=pipeline, pick=pick)
    if skipped:
        click.echo(f"warning: {len(skipped)} photos left out (unreadable or no face), e.g. {skipped[0]}", err=True)
    embed = lambda crops: recognizer.embed(crops, flip=flip)  # noqa: E731
    calibration = pair_set.calibrate(embed, far=far, embedder=recognizer.name)
    click.echo(strict_json.dumps(calibration.as_dict(), indent=2) if as_json else calibration.summary())
    if write:
        written = store_calibration(model, calibration)
        click.echo(f"wrote threshold {calibration.threshold:.4f} to {', '.join(map(str, written))}", err=True)


@click.command("split-people")
@click.argument("people_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--calibration", default=20, show_default=True, type=click.IntRange(min=0), help="People who calibrate.")
@click.option("--gallery", default=20, show_default=True, type=click.IntRange(min=1), help="People enrolled.")
@click.option("--unknown", default=10, show_default=True, type=click.IntRange(min=0), help="People never enrolled.")
@click.option(
    "--gallery-photos", default=3, show_default=True, type=click.IntRange(min=1), help="Photos enrolled per person."
)
@click.option("--skip", default=0, show_default=True, type=click.IntRange(min=0), help="People left out first.")
@click.option("--copy", is_flag=True, help="Copy the photos instead of linking to them.")
def split_people_cmd(people_dir: Path, out_dir: Path, calibration: int, gallery: int, unknown: int,
                     gallery_photos: int, skip: int, copy: bool) -> None:  # fmt: skip
    """Split PEOPLE_DIR (one folder per person) by person into OUT_DIR/calibration, OUT_DIR/gallery and OUT_DIR/probe
    for `evaluate-gallery OUT/gallery OUT/probe ... --calibration OUT/calibration`.

    In natural order of the folder names, after the first --skip: the first --calibration people calibrate, the
    next --gallery are enrolled with their first --gallery-photos photos (the others are probes), the next
    --unknown are probes never enrolled. Photos are symbolic links (or copies); OUT_DIR/split.json says who is where.
    """
    from facekit.cli.outputs import Inputs
    from facekit.data.split import PeopleSplit, split_people

    Inputs().data(people_dir, "the people folder").check(folders=[out_dir])
    split = PeopleSplit(calibration, gallery, unknown, gallery_photos=gallery_photos, skip=skip)
    summary = split_people(people_dir, out_dir, split, copy=copy)
    photos = summary["photos"]
    click.echo(
        f"{out_dir}: {calibration} calibration people ({photos['calibration']} photos), {gallery} gallery people "
        f"({photos['gallery']} enrolled, probes: {photos['probe']} photos incl. {unknown} unknown people)",
        err=True,
    )
    if summary["gallery_without_probes"]:
        click.echo(f"note: gallery people without probes: {', '.join(summary['gallery_without_probes'])}", err=True)
    if summary["skipped"]:
        click.echo(f"warning: skipped {len(summary['skipped'])} files that are not photos:", err=True)
        for message in summary["skipped"]:
            click.echo(f"  - {message}", err=True)
