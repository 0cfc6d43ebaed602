"""`facekit eval-detect`: AP, landmark NME and PR curve of a detector on a label.txt split. Library imports happen
inside the command."""

from __future__ import annotations

import math
from pathlib import Path

import click

from facekit import strict_json
from facekit.cli.options import detector_options


def _ap(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"  # NaN: no ground-truth face


@click.command("eval-detect")
@click.argument("split_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@detector_options("Scale larger photos down to this longest side (0 = original size, as the WIDER FACE protocol uses).")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write metrics.json and pr_curve.png into this folder.",
)
@click.option(
    "--wider-gt",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of the official wider_face_val.mat and wider_{easy,medium,hard}_val.mat: adds the WIDER FACE "
    "easy/medium/hard AP.",
)
def eval_detect_cmd(
    split_dir: Path,
    model_path: Path,
    backend: str,
    device: str,
    max_size: int,
    out: Path | None,
    wider_gt: Path | None,
) -> None:
    """Evaluate a detector on SPLIT_DIR (a folder with label.txt and images/).

    Detects with score >= 0.02 and reports AP at IoU 0.5 (all-point interpolation), the landmark NME of the
    matched faces (mean point error / sqrt(box width * height)) and counts. Unreadable images are skipped and listed.
    """
    from facekit.cli.outputs import Inputs
    from facekit.detection.evaluate import EVAL_THRESHOLD, evaluate_split, plot_pr_curve
    from facekit.fileio import atomic_write
    from facekit.runtime.detector import DetectSettings, load_face_detector

    reads = Inputs().data(split_dir, "the evaluation split").data(wider_gt, "the WIDER FACE ground-truth folder")
    reads.model(model_path, "detector").check(folders=[out])
    detector = load_face_detector(model_path, device, backend)
    settings = DetectSettings(threshold=EVAL_THRESHOLD, max_size=max_size or None)
    metrics = evaluate_split(split_dir, detector, settings, wider_gt=wider_gt)
    ap, nme = metrics.ap, metrics.nme
    click.echo(f"split       {split_dir}: {metrics.images} images, {ap.num_gt} faces")
    click.echo(f"detector    {metrics.detector}: {ap.num_det} detections with score >= {settings.threshold:g}")
    click.echo(f"AP@{metrics.iou_threshold:g}      {_ap(ap.ap)}")
    nme_text = "n/a" if nme.num_faces == 0 else f"{nme.nme:.4f}"
    click.echo(f"NME         {nme_text} over {nme.num_faces} matched faces with landmarks")
    if metrics.wider is not None:
        levels = "  ".join(f"{name} {_ap(result.ap)}" for name, result in metrics.wider.levels.items())
        click.echo(f"WIDER FACE  {levels}  ({metrics.wider.images} images)")
        if metrics.wider.missing:
            click.echo(
                f"warning: {len(metrics.wider.missing)} WIDER FACE ground-truth images were not evaluated "
                f"(first: {', '.join(metrics.wider.missing[:3])}); the AP covers the rest",
                err=True,
            )
    if out is not None:
        with atomic_write(out / "metrics.json") as f:
            strict_json.dump(metrics.as_dict(), f, indent=2)
        plot_pr_curve(metrics.curves, out / "pr_curve.png", title=f"Precision-recall: {split_dir.name}")
        click.echo(f"wrote {out / 'metrics.json'}, {out / 'pr_curve.png'}")
    if metrics.skipped:
        click.echo(f"warning: skipped {len(metrics.skipped)} unreadable images:", err=True)
        for message in metrics.skipped:
            click.echo(f"  - {message}", err=True)
