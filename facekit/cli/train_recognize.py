"""`facekit train-recognize DATA_PATH MODEL_OUTPUT_PATH`. Library imports happen inside the command."""

from __future__ import annotations

import os
from pathlib import Path

import click

from facekit.cli.options import RegistryChoice


def _backbones() -> list[str]:
    from facekit.recognition.backbones import BACKBONES

    return list(BACKBONES)


def _losses() -> list[str]:
    from facekit.recognition.losses import LOSSES

    return list(LOSSES)


def _loss_params(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, float]:
    params = {}
    for item in values:
        key, sep, value = item.partition("=")
        try:
            params[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise click.BadParameter(f"expected KEY=NUMBER, got {item!r}", ctx=ctx, param=param)
    return params


@click.command("train-recognize")
@click.argument("data_path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("model_output_path", type=click.Path(file_okay=False, path_type=Path))
@click.option("--backbone", type=RegistryChoice(_backbones), default="iresnet50", show_default=True)
@click.option("--embedding-size", default=512, show_default=True, type=click.IntRange(min=2))
@click.option("--loss", type=RegistryChoice(_losses), default="arcface", show_default=True)
@click.option(
    "--loss-param",
    "loss_params",
    multiple=True,
    callback=_loss_params,
    metavar="KEY=VALUE",
    help="A loss hyper-parameter, e.g. --loss-param s=64 --loss-param m=0.5 (repeatable).",
)
@click.option(
    "--sample-rate",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True),
    help="Partial FC: share of class centres sampled per step (margin losses).",
)
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), default="sgd", show_default=True)
@click.option("--lr", default=0.1, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--momentum", default=0.9, show_default=True, type=float)
@click.option("--weight-decay", default=5e-4, show_default=True, type=float)
@click.option("--epochs", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(min=1), help="Global batch size.")
@click.option(
    "--pk",
    nargs=2,
    type=click.IntRange(min=1),
    default=(32, 4),
    show_default=True,
    help="Identities x images per batch for metric losses (P*K = batch size).",
)
@click.option("--warmup-epochs", default=0.0, show_default=True, type=click.FloatRange(min=0))
@click.option("--schedule", type=click.Choice(["poly", "cosine"]), default="poly", show_default=True)
@click.option(
    "--amp",
    type=click.Choice(["none", "fp16", "bf16"]),
    default="bf16",
    show_default=True,
    help="Mixed precision on CUDA.",
)
@click.option("--channels-last/--no-channels-last", default=True, show_default=True, help="On CUDA.")
@click.option("--clip-grad", default=5.0, show_default=True, type=click.FloatRange(min=0), help="0 = off.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=0))
@click.option("--device", default="auto", show_default=True)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--pretrained",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Backbone weights (an arcface_torch backbone.pth).",
)
@click.option("--resume", is_flag=True, help="Continue from MODEL_OUTPUT_PATH/checkpoint.pt.")
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
    folder of aligned 112x112 crops per person; every .bin in it is a verification set.

    MODEL_OUTPUT_PATH receives model.pt (weights + config with the calibrated threshold), config.yaml,
    recognizer.onnx (insightface ArcFaceONNX convention), metrics.json, roc.png, train.log, checkpoint.pt and
    tensorboard/. Under `torchrun --nproc_per_node N -m facekit train-recognize ...` it trains with DDP and
    shards the class centres (Partial FC) across the processes.
    """
    from facekit.recognition.train import RecognizeTrainSettings, train_recognizer

    options["pretrained"] = str(options["pretrained"]) if options["pretrained"] else None
    options["val"] = list(options["val"])
    options["pk"] = tuple(options["pk"])
    metrics = train_recognizer(data_path, model_output_path, RecognizeTrainSettings(**options))
    if os.environ.get("RANK", "0") != "0":
        return
    final = metrics["final"]
    summary = ", ".join(f"{k} {v}" for k, v in final.items() if k.startswith(("val_", "loss", "threshold")))
    click.echo(f"trained {metrics['steps']} steps: {summary}")
    click.echo(f"model written to {model_output_path}")
