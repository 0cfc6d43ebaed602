"""What `train-recognize` can be told, and how the settings left open (None) are resolved: the backbone and
embedding size from a facekit --pretrained model (else RecognizerConfig's defaults), the batch of a metric loss from
--pk, everything else from the dataset's recipe (facekit/recognition/recipe.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from facekit.errors import FacekitError
from facekit.recognition.augment import Augment
from facekit.recognition.config import RecognizerConfig
from facekit.recognition.recipe import Recipe, recipe_for

RECIPE_FIELDS = ("optimizer", "lr", "weight_decay", "batch_size", "epochs", "warmup_epochs", "schedule")


@dataclass
class RecognizeTrainSettings:
    """Everything `train-recognize` can be told. None: from the recipe, or for backbone / embedding_size from the
    --pretrained facekit model (else RecognizerConfig's defaults)."""

    backbone: str | None = None
    embedding_size: int | None = None
    loss: str = "arcface"
    loss_params: dict[str, float | int | bool | str] = field(default_factory=dict)  # over the recipe's, the loss's
    sample_rate: float = 1.0
    optimizer: str | None = None  # "sgd" or "adamw"
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float | None = None
    epochs: int | None = None
    batch_size: int | None = None  # global
    pk: tuple[int, int] = (32, 4)  # identities x images per batch, for metric losses
    warmup_epochs: float | None = None
    schedule: str | None = None  # "poly" or "cosine"
    augment: Augment = field(default_factory=Augment)
    amp: str = "bf16"  # "none", "fp16", "bf16"; CUDA only
    channels_last: bool = True  # NHWC activations: faster on CUDA, and on CPU (oneDNN)
    clip_grad: float = 5.0
    workers: int = 2
    device: str = "auto"
    seed: int = 0
    pretrained: str | None = None
    backbone_lr_mult: float = 1.0
    freeze_backbone_epochs: int = 0
    resume: bool = False
    stop_at_step: int = 0  # stop (checkpoint and model written) after this many steps; 0: train to the end
    val: list[str] = field(default_factory=list)
    val_every: int = 1000  # steps; also after the last step
    log_every: int = 50  # steps; also at each epoch's end
    flip: bool = True  # flip test in verification
    save_every: int = 1000  # steps; also at each epoch's end
    export_onnx: bool = True
    progress: bool = True


def pretrained_config(path: str | Path) -> RecognizerConfig | None:
    """The config of a facekit recognizer (model directory or model.pt); None for other weights (backbone.pth)."""
    from facekit.modeldir import is_facekit_model, load_model, read_torch_file

    payload = read_torch_file(path)
    if not is_facekit_model(payload):
        return None
    return RecognizerConfig.from_dict(load_model(path, "recognizer", payload)["config"])


def resolve_settings(
    s: RecognizeTrainSettings, *, images: int, classes: int, world_size: int = 1
) -> tuple[RecognizeTrainSettings, Recipe, list[str]]:
    """`s` with every None filled, the dataset's recipe and the names of the settings taken from it."""
    from facekit.recognition.losses import LOSSES

    try:
        LOSSES[s.loss]
    except ValueError as exc:
        raise FacekitError(str(exc)) from None
    resolved = {"backbone": s.backbone or RecognizerConfig.backbone}
    resolved["embedding_size"] = s.embedding_size or RecognizerConfig.embedding_size
    if s.pretrained:
        config = pretrained_config(s.pretrained)
        if config is not None:
            for name in ("backbone", "embedding_size"):
                given, theirs = getattr(s, name), getattr(config, name)
                if given is not None and given != theirs:
                    flag = "--" + name.replace("_", "-")
                    raise FacekitError(
                        f"{flag} {given} does not fit --pretrained {s.pretrained}, a {config.backbone} with "
                        f"{config.embedding_size}-d embeddings; leave {flag} out to fine-tune it"
                    )
                resolved[name] = theirs
    recipe = recipe_for(images, classes, fine_tune=bool(s.pretrained))
    taken = [name for name in RECIPE_FIELDS if getattr(s, name) is None]
    resolved |= {name: getattr(recipe, name) for name in taken}
    if s.batch_size is None:
        if LOSSES[s.loss].needs_pk_sampler:
            resolved["batch_size"] = math.prod(s.pk)
            taken.remove("batch_size")
        else:  # a whole number of samples per process, no more than the images
            batch = min(resolved["batch_size"], images)
            resolved["batch_size"] = max(world_size, batch - batch % world_size)
    recipe_loss = recipe.loss_params.get(s.loss, {})
    if any(k not in s.loss_params for k in recipe_loss):
        taken.append("loss_params")
    resolved["loss_params"] = recipe_loss | s.loss_params
    return replace(s, **resolved), recipe, taken


def describe(s: RecognizeTrainSettings, recipe: Recipe, taken: list[str], *, images: int, classes: int) -> str:
    """One line: the recipe, the settings it gave and those given instead, e.g. `recipe: small dataset (300 images,
    30 people, 10.0 per person): adamw lr 0.002, weight decay 0.05, batch 30, 15 epochs, ...`."""
    loss = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in s.loss_params.items())
    parts = [
        f"{s.optimizer} lr {s.lr:g}",
        f"weight decay {s.weight_decay:g}",
        f"batch {s.batch_size}",
        f"{s.epochs} epochs",
        f"warm-up {s.warmup_epochs:g} epoch{'' if s.warmup_epochs == 1 else 's'}",
        f"{s.schedule} schedule",
        f"{s.loss}{' ' + loss if loss else ''}",
    ]
    given = [f"--{name.replace('_', '-')}" for name in RECIPE_FIELDS if name not in taken]
    return (
        f"recipe: {recipe.name} dataset ({images} images, {classes} people, {images / classes:.1f} per person): "
        f"{', '.join(parts)}" + (f" (given: {' '.join(given)})" if given else "")
    )
