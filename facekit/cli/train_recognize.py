"""`facekit train-recognize DATA_PATH MODEL_OUTPUT_PATH`. Library imports happen inside the command."""

from __future__ import annotations

import os
from pathlib import Path

import click

from facekit.cli.options import RegistryChoice, backbones, losses

RECIPE = "from the recipe"
UNIT = click.FloatRange(0, 1)
AUGMENT = ("flip", "crop", "color", "grey", "blur", "lowres", "erase", "rotate")


def _loss_params(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    """KEY=VALUE items as {KEY: VALUE} text; the command converts them once --loss is known."""
    params = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", ctx=ctx, param=param)
        params[key.strip()] = value.strip()
    return params


def _typed_loss_params(ctx: click.Context, loss: str, texts: dict[str, str]) -> dict[str, float | int | bool | str]:
    """--loss-param's texts converted to the types of `loss`'s parameters; a bad one is a usage error (exit 2)."""
    from facekit.recognition.losses import parse_loss_params

    try:
        return parse_loss_params(loss, texts)
    except ValueError as exc:
        param = next(p for p in ctx.command.params if p.name == "loss_params")
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


@click.command("train-recognize")
@click.argument("data_path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("model_output_path", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--backbone", type=RegistryChoice(backbones), show_default="iresnet50, or the --pretrained facekit model's"
)
@click.option("--embedding-size", type=click.IntRange(min=2), show_default="512, or the --pretrained facekit model's")
@click.option("--loss", type=RegistryChoice(losses), default="arcface", show_default=True)
@click.option(
    "--loss-param",
    "loss_params",
    multiple=True,
    callback=_loss_params,
    metavar="KEY=VALUE",
    help="A loss hyper-parameter, e.g. --loss-param s=64 --loss-param m=0.5 (repeatable); over the recipe's "
    "(arcface s=32 m=0.3 for small datasets) and the loss's defaults.",
)
@click.option(
    "--sample-rate",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True),
    help="Partial FC: share of class centres sampled per step (margin losses).",
)
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), show_default=RECIPE)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), show_default=RECIPE)
@click.option("--momentum", default=0.9, show_default=True, type=float, help="SGD.")
@click.option("--weight-decay", type=click.FloatRange(min=0), show_default=RECIPE)
@click.option("--epochs", type=click.IntRange(min=1), show_default=RECIPE)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    show_default="from the recipe; P*K for metric losses",
    help="Global batch size.",
)
@click.option(
    "--pk",
    nargs=2,
    type=click.IntRange(min=1),
    default=(32, 4),
    show_default=True,
    help="Identities x images per batch for metric losses (P*K = batch size).",
)
@click.option("--warmup-epochs", type=click.FloatRange(min=0), show_default=RECIPE)
@click.option("--schedule", type=click.Choice(["poly", "cosine"]), show_default=RECIPE)
@click.option(
    "--augment/--no-augment",
    default=True,
    show_default=True,
    help="Random changes to the training crops; --no-augment sets every --aug-* not given to 0.",
)
@click.option("--aug-flip", default=0.5, show_default=True, type=UNIT, help="Probability of a mirror image.")
@click.option(
    "--aug-crop", default=0.08, show_default=True, type=UNIT, help="Random zoom and shift, up to +- this share."
)
@click.option(
    "--aug-color",
    default=0.3,
    show_default=True,
    type=UNIT,
    help="Brightness, contrast and saturation jitter (factors 1 +- this).",
)
@click.option("--aug-grey", default=0.1, show_default=True, type=UNIT, help="Probability of greyscale.")
@click.option("--aug-blur", default=0.1, show_default=True, type=UNIT, help="Probability of a Gaussian blur.")
@click.option(
    "--aug-lowres", default=0.15, show_default=True, type=UNIT, help="Probability of down- and up-sampling (1/4-3/4)."
)
@click.option(
    "--aug-erase", default=0.2, show_default=True, type=UNIT, help="Probability of erasing a patch (2-20 %) with noise."
)
@click.option(
    "--aug-rotate",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 180),
    help="Random rotation, up to +- this many degrees (crops aligned by a weak detector's landmarks).",
)
@click.option(
    "--amp",
    type=click.Choice(["none", "fp16", "bf16"]),
    default="bf16",
    show_default=True,
    help="Mixed precision on CUDA.",
)
@click.option(
    "--channels-last/--no-channels-last",
    default=True,
    show_default=True,
    help="NHWC memory order (faster on CUDA and CPU).",
)
@click.option("--clip-grad", default=5.0, show_default=True, type=click.FloatRange(min=0), help="0 = off.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=0))
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--pretrained",
    type=click.Path(exists=True, path_type=Path),
    help="Start the backbone from a facekit recognizer (directory or model.pt; its backbone and embedding size) "
    "or an arcface_torch backbone.pth. The people here always get a new head.",
)
@click.option(
    "--backbone-lr-mult",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="The backbone's learning rate = --lr x this (fine-tuning: e.g. 0.1).",
)
@click.option(
    "--freeze-backbone-epochs",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Train only the head for the first N epochs (backbone and its BatchNorm statistics fixed).",
)
@click.option("--resume", is_flag=True, help="Continue from MODEL_OUTPUT_PATH/checkpoint.pt.")
@click.option(
    "--stop-at-step",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Stop after this many steps in all (checkpoint and model written), keeping the whole run's schedule; "
    "--resume continues it. 0: train to the end.",
)
@click.option(
    "--val",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Extra verification .bin (every .bin in DATA_PATH is used too).",
)
@click.option("--val-every", default=1000, show_default=True, type=click.IntRange(min=1), help="Steps.")
@click.option(
    "--log-every",
    default=50,
    show_default=True,
    type=click.IntRange(min=1),
    help="Log loss, lr and images/s every N steps (and at each epoch's end).",
)
@click.option("--flip/--no-flip", default=True, show_default=True, help="Flip test in verification.")
@click.option(
    "--save-every",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Checkpoint every N steps (and at each epoch's end).",
)
@click.option("--onnx/--no-onnx", "export_onnx", default=True, show_default=True, help="Export recognizer.onnx.")
def train_recognize_cmd(data_path: Path, model_output_path: Path, **options: object) -> None:
    """Train a face recognizer on DATA_PATH: recognition_train_data/ (cele.rec, cele.idx, property) or one
    folder of aligned 112x112 crops per person; every .bin in it is a verification set, and the recognizer's
    threshold is calibrated on one of them (best accuracy).

    Settings not given follow a recipe chosen from the dataset's size (printed at the start; see
    facekit/recognition/recipe.py). MODEL_OUTPUT_PATH receives model.pt (weights + config with the calibrated
    threshold), config.yaml, recognizer.onnx (insightface ArcFaceONNX convention), metrics.json, roc.png, train.log,
    checkpoint.pt and tensorboard/. Under `torchrun --nproc_per_node N -m facekit train-recognize ...` it trains
    with DDP and shards the class centres (Partial FC) across the processes.
    """
    from facekit.cli.outputs import Inputs
    from facekit.recognition.augment import Augment
    from facekit.recognition.settings import RecognizeTrainSettings
    from facekit.recognition.train import train_recognizer

    ctx = click.get_current_context()
    options["loss_params"] = _typed_loss_params(ctx, options["loss"], options["loss_params"])
    reads = Inputs().data(data_path, "the training data folder").model(options["pretrained"], "pretrained")
    for val in options["val"]:
        reads.file(Path(val), "a verification set")
    reads.check(folders=[model_output_path])
    strengths = {name: options.pop(f"aug_{name}") for name in AUGMENT}
    if not options.pop("augment"):
        default = click.core.ParameterSource.DEFAULT
        strengths = {k: 0.0 if ctx.get_parameter_source(f"aug_{k}") == default else v for k, v in strengths.items()}
    options["augment"] = Augment(**strengths)
    options["pretrained"] = str(options["pretrained"]) if options["pretrained"] else None
    options["val"] = list(options["val"])
    options["pk"] = tuple(options["pk"])
    metrics = train_recognizer(data_path, model_output_path, RecognizeTrainSettings(**options))
    if os.environ.get("RANK", "0") != "0":
        return
    final = metrics["final"]
    summary = ", ".join(f"{k} {v}" for k, v in final.items() if k.startswith(("val_", "loss", "threshold")))
    click.echo(f"trained {metrics['steps']} steps: {summary}")
    if metrics["calibration"]:
        from facekit.recognition.calibration import Calibration

        click.echo(Calibration.from_dict(metrics["calibration"]).summary())
    click.echo(f"model written to {model_output_path}")
