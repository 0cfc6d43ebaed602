"""The training recipe train-recognize follows when not told otherwise: a pure rule from the dataset's size.

- small (under 100,000 images), measured on ORL and meant for a few hundred to a few thousand people: AdamW, lr 2e-3,
  weight decay 0.05, linear warm-up over 1 epoch then cosine decay, ArcFace s=32 m=0.3 (a margin that small
  classes can meet; likewise every margin head with a fixed scale gets s=32, and the additive-angle heads of the
  ArcFace family m=0.3, SMALL_LOSS_PARAMS); batch = images / 10 (at least 10 steps an epoch) kept within 16-64;
  epochs = 40,000 image views / images kept within 8-15 (ORL's 300 images: batch 30, 15 epochs; 5,000 photos:
  batch 64, 8 epochs).
- large (100,000 images and more): arcface_torch's recipe for MS1M-scale sets: SGD lr 0.1 (momentum 0.9), weight
  decay 5e-4, batch 128, 20 epochs, no warm-up, polynomial decay, the loss's own defaults (ArcFace s=64 m=0.5).
- fine-tuning (--pretrained), either size: SGD lr 0.01 (momentum 0.9), weight decay 5e-4, no warm-up, cosine decay;
  batch, epochs and loss as for the size. AdamW's steps are about lr for every weight whatever its scale, which
  wrecks a trained network with small weights: dlib's ResNet (no BatchNorm, its scale kept in affine layers, conv
  weights ~0.01) collapsed to one embedding for every face within 5 steps at a backbone lr of 2e-4. SGD's steps
  follow the gradient.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

LARGE_FROM = 100_000  # images
SMALL_VIEWS = 40_000  # image views a small set is trained for, within SMALL_EPOCHS
SMALL_EPOCHS = (8, 15)
SMALL_BATCH = (16, 64)
_SMALL_SCALE = {"s": 32.0}
_SMALL_ANGLE = {"s": 32.0, "m": 0.3}
SMALL_LOSS_PARAMS = {  # the small recipe's values over a margin head's defaults (registry names)
    "arcface": _SMALL_ANGLE, "subcenter_arcface": _SMALL_ANGLE, "curricularface": _SMALL_ANGLE,
    "elasticface_arc": _SMALL_ANGLE, "normface": _SMALL_SCALE, "cosface": _SMALL_SCALE, "am_softmax": _SMALL_SCALE,
    "sphereface": _SMALL_SCALE, "combined": _SMALL_SCALE, "elasticface_cos": _SMALL_SCALE, "adaface": _SMALL_SCALE,
    "magface": _SMALL_SCALE, "mv_softmax": _SMALL_SCALE,
}  # fmt: skip


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters for one dataset size. loss_params: per loss name, values replacing the registry's defaults."""

    name: str
    optimizer: str
    lr: float
    weight_decay: float
    batch_size: int
    epochs: int
    warmup_epochs: float
    schedule: str
    loss_params: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def recipe_for(images: int, classes: int, *, fine_tune: bool = False) -> Recipe:
    """The recipe for a training set of `images` crops of `classes` people, from scratch or fine-tuning a
    --pretrained model (module docstring)."""
    if images < 1 or classes < 1:
        raise ValueError(f"a training set needs images and people, got {images} images of {classes} people")
    if images >= LARGE_FROM:
        recipe = Recipe("large", "sgd", 0.1, 5e-4, 128, 20, 0.0, "poly")
    else:
        batch = min(max(SMALL_BATCH[0], 2 * round(images / 20)), SMALL_BATCH[1])
        epochs = min(max(SMALL_EPOCHS[0], round(SMALL_VIEWS / images)), SMALL_EPOCHS[1])
        params = {name: dict(values) for name, values in SMALL_LOSS_PARAMS.items()}
        recipe = Recipe("small", "adamw", 2e-3, 0.05, batch, epochs, 1.0, "cosine", params)
    if fine_tune:
        recipe = replace(recipe, name=f"fine-tuning, {recipe.name}", optimizer="sgd", lr=0.01, weight_decay=5e-4,
                         warmup_epochs=0.0, schedule="cosine")  # fmt: skip
    return recipe
