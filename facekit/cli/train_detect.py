"""`facekit train-detect DATA_PATH MODEL_OUTPUT_PATH`. Library imports happen inside the command."""

from __future__ import annotations

import os
from pathlib import Path

import click

from facekit.cli.options import RegistryChoice, detector_bodies


@click.command("train-detect")
@click.argument("data_path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("model_output_path", type=click.Path(file_okay=False, path_type=Path))
@click.option("--body", type=RegistryChoice(detector_bodies), default="mobilenet0.25", show_default=True)
@click.option("--image-size", type=click.IntRange(min=32), help="Training input side [default: 640, resnet50: 840].")
@click.option("--epochs", default=250, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1), help="Global batch size.")
@click.option("--lr", default=1e-3, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--momentum", default=0.9, show_default=True, type=float)
@click.option("--weight-decay", default=5e-4, show_default=True, type=float)
@click.option("--warmup-epochs", default=1.0, show_default=True, type=click.FloatRange(min=0))
@click.option(
    "--loss-weights",
    nargs=3,
    type=float,
    default=(2.0, 1.0, 1.0),
    show_default=True,
    help="Weights of the box, class and landmark losses.",
)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=0), help="DataLoader processes.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda (under torchrun: one per rank).")
@click.option("--amp/--no-amp", default=True, show_default=True, help="Mixed precision on CUDA.")
@click.option(
    "--eval-every",
    default=10,
    show_default=True,
    type=click.IntRange(min=1),
    help="Validate on val/label.txt every N epochs (and after the last).",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--pretrained",
    type=click.Path(exists=True, path_type=Path),
    help="Start from a facekit detector, a Pytorch_Retinaface .pth or an ImageNet backbone (.tar).",
)
@click.option("--resume", is_flag=True, help="Continue from MODEL_OUTPUT_PATH/checkpoint.pt.")
@click.option("--onnx/--no-onnx", "export_onnx", default=True, show_default=True, help="Export detector.onnx.")
def train_detect_cmd(data_path: Path, model_output_path: Path, **options: object) -> None:
    """Train a RetinaFace detector on DATA_PATH/{train,val}/label.txt + images/.

    MODEL_OUTPUT_PATH receives model.pt (weights + config), config.yaml, detector.onnx (insightface SCRFD layout),
    metrics.json, train.log, checkpoint.pt (for --resume) and tensorboard/. Ctrl-C keeps the last epoch's checkpoint.
    Under `torchrun --nproc_per_node N facekit train-detect ...` it trains with DDP (gloo on CPU, NCCL on GPU).
    """
    from facekit.cli.outputs import Inputs
    from facekit.detection.train import DetectTrainSettings, train_detector

    reads = Inputs().data(data_path, "the training data folder").model(options["pretrained"], "pretrained")
    reads.check(folders=[model_output_path])
    options["pretrained"] = str(options["pretrained"]) if options["pretrained"] else None
    options["loss_weights"] = tuple(options["loss_weights"])
    metrics = train_detector(data_path, model_output_path, DetectTrainSettings(**options))
    if os.environ.get("RANK", "0") != "0":  # under torchrun only the first process reports
        return
    final = metrics["final"]
    summary = ", ".join(f"{k} {v}" for k, v in final.items() if k.startswith(("val_", "loss")) and v is not None)
    click.echo(f"trained {metrics['epochs']} epochs ({metrics['steps']} steps): {summary}")
    click.echo(f"model written to {model_output_path}")
