"""The training recipe from the dataset's size, and how train-recognize's settings are resolved: explicit flags,
--config and FACEKIT_ variables over the recipe; backbone and embedding size from a --pretrained facekit model."""

from __future__ import annotations

import json

import pytest

from facekit.errors import FacekitError
from facekit.recognition.recipe import recipe_for
from facekit.recognition.settings import RecognizeTrainSettings, describe, resolve_settings

ORL = {"images": 300, "classes": 30}


def test_small_sets_get_adamw_and_a_small_margin():
    r = recipe_for(300, 30)  # ORL s1-s30
    assert (r.name, r.optimizer, r.lr, r.weight_decay, r.schedule) == ("small", "adamw", 2e-3, 0.05, "cosine")
    assert (r.batch_size, r.epochs, r.warmup_epochs) == (30, 15, 1.0)
    assert r.loss_params["arcface"] == {"s": 32.0, "m": 0.3}
    assert r.loss_params["adaface"] == {"s": 32.0} and "adacos" not in r.loss_params  # AdaCos sets its own scale


@pytest.mark.parametrize(("images", "size"), [(300, "small"), (500_000, "large")])
def test_fine_tuning_takes_sgd_with_the_sizes_batch_and_loss(images, size):
    plain, tuned = recipe_for(images, 30), recipe_for(images, 30, fine_tune=True)
    assert (tuned.name, tuned.optimizer, tuned.lr, tuned.weight_decay, tuned.warmup_epochs, tuned.schedule) == (
        f"fine-tuning, {size}",
        "sgd",
        0.01,
        5e-4,
        0.0,
        "cosine",
    )
    assert (tuned.batch_size, tuned.epochs, tuned.loss_params) == (plain.batch_size, plain.epochs, plain.loss_params)


def test_pretrained_resolves_to_the_fine_tuning_recipe(random_recognizer):
    s, recipe, _ = resolve_settings(RecognizeTrainSettings(pretrained=str(random_recognizer)), **ORL)
    assert (recipe.name, s.optimizer, s.lr) == ("fine-tuning, small", "sgd", 0.01)
    s, _, _ = resolve_settings(RecognizeTrainSettings(pretrained=str(random_recognizer), optimizer="adamw"), **ORL)
    assert (s.optimizer, s.lr) == ("adamw", 0.01)  # a flag given still wins


@pytest.mark.parametrize(
    ("images", "batch", "epochs"),
    [(60, 16, 15), (300, 30, 15), (2_600, 64, 15), (5_200, 64, 8), (20_000, 64, 8), (99_999, 64, 8)],
)
def test_batch_and_epochs_follow_the_size(images, batch, epochs):
    r = recipe_for(images, max(1, images // 20))
    assert (r.batch_size, r.epochs) == (batch, epochs)


def test_large_sets_get_arcface_torch_recipe():
    r = recipe_for(500_000, 10_000)
    assert (r.name, r.optimizer, r.lr, r.weight_decay, r.batch_size, r.epochs, r.warmup_epochs, r.schedule) == (
        "large",
        "sgd",
        0.1,
        5e-4,
        128,
        20,
        0.0,
        "poly",
    )
    assert r.loss_params == {}  # the registry's ArcFace s=64 m=0.5


def test_explicit_settings_win_and_loss_params_merge():
    s, recipe, taken = resolve_settings(RecognizeTrainSettings(lr=0.01, epochs=3, loss_params={"s": 64.0}), **ORL)
    assert (s.lr, s.epochs, s.optimizer, s.batch_size, s.loss_params) == (0.01, 3, "adamw", 30, {"s": 64.0, "m": 0.3})
    assert set(taken) == {"optimizer", "weight_decay", "batch_size", "warmup_epochs", "schedule", "loss_params"}
    line = describe(s, recipe, taken, **ORL)
    assert line.startswith("recipe: small dataset (300 images, 30 people, 10.0 per person): adamw lr 0.01")
    assert line.endswith("arcface s=64 m=0.3 (given: --lr --epochs)")
    assert (s.backbone, s.embedding_size) == ("iresnet50", 512)


def test_metric_losses_take_the_batch_from_pk_and_other_losses_no_margin():
    s, _, taken = resolve_settings(RecognizeTrainSettings(loss="triplet", pk=(6, 4)), **ORL)
    assert s.batch_size == 24 and "batch_size" not in taken and s.loss_params == {}


def test_batch_splits_evenly_over_processes_and_fits_the_data():
    assert resolve_settings(RecognizeTrainSettings(), images=300, classes=30, world_size=4)[0].batch_size == 28
    assert resolve_settings(RecognizeTrainSettings(), images=12, classes=3)[0].batch_size == 12


def test_unknown_loss_is_one_line():
    with pytest.raises(FacekitError, match="unknown loss 'nope'; known: adacos, adaface"):
        resolve_settings(RecognizeTrainSettings(loss="nope"), **ORL)


def test_pretrained_facekit_model_gives_backbone_and_size(random_recognizer):
    s, _, _ = resolve_settings(RecognizeTrainSettings(pretrained=str(random_recognizer)), **ORL)
    assert (s.backbone, s.embedding_size) == ("mobilefacenet", 32)
    s, _, _ = resolve_settings(RecognizeTrainSettings(pretrained=str(random_recognizer / "model.pt")), **ORL)
    assert (s.backbone, s.embedding_size) == ("mobilefacenet", 32)


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        (["--backbone", "iresnet18"], "--backbone iresnet18 does not fit --pretrained"),
        (["--embedding-size", "64"], "--embedding-size 64 does not fit --pretrained"),
    ],
)
def test_a_different_backbone_than_the_pretrained_is_one_line(
    cli, shared_data, random_recognizer, tmp_path, flag, message
):
    data = tmp_path / "data"
    for person in ("s1", "s2"):
        (data / person).mkdir(parents=True)
        (data / person / "1.jpg").write_bytes((shared_data / f"faces/orl_aligned_112/{person}/1.jpg").read_bytes())
    result = cli("train-recognize", data, tmp_path / "out", "--pretrained", random_recognizer, *flag)
    assert result.exit_code == 1
    assert message in result.output and "mobilefacenet with 32-d embeddings" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_leaves_recipe_options_open_and_config_and_env_fill_them(cli, tmp_path, monkeypatch):
    """No training: the CLI's settings are captured. Flags, --config and FACEKIT_ variables set values; the rest
    stay None for the recipe."""
    from facekit.recognition import train

    seen = []
    monkeypatch.setattr(
        train, "train_recognizer", lambda data, out, s: seen.append(s) or {"final": {}, "steps": 0, "calibration": None}
    )
    config = tmp_path / "c.yaml"
    config.write_text("train-recognize: {epochs: 4, aug-erase: 0.5}\n")
    monkeypatch.setenv("FACEKIT_TRAIN_RECOGNIZE_LR", "0.01")
    (tmp_path / "d").mkdir()
    result = cli(
        "--config", config, "train-recognize", tmp_path / "d", tmp_path / "o", "--no-augment", "--aug-blur", 0.3
    )
    assert result.exit_code == 0, result.output
    (s,) = seen
    assert (s.epochs, s.lr, s.batch_size, s.optimizer, s.backbone, s.embedding_size) == (
        4,
        0.01,
        None,
        None,
        None,
        None,
    )
    assert (s.augment.blur, s.augment.erase, s.augment.flip, s.augment.crop) == (0.3, 0.5, 0.0, 0.0)
    json.dumps(s.augment.__dict__)  # saved in metrics.json


def test_small_recipe_scales_every_margin_head_with_a_fixed_scale():
    """SMALL_LOSS_PARAMS names registered margin heads, and every margin head with an `s` is among them."""
    from facekit.recognition.losses import LOSSES
    from facekit.recognition.recipe import SMALL_LOSS_PARAMS

    with_scale = {name for name, spec in LOSSES.items() if spec.kind == "margin" and "s" in spec.defaults}
    assert set(SMALL_LOSS_PARAMS) == with_scale
    for name, values in SMALL_LOSS_PARAMS.items():
        assert set(values) <= set(LOSSES[name].defaults), name
