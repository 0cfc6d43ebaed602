"""`--loss-param KEY=VALUE` through `facekit train-recognize`: each value takes its parameter's type (number,
integer, true/false, text), a bad one is a one-line usage error, and a triplet with semi-hard mining trains."""

from __future__ import annotations

import json
import shutil

import pytest

from facekit.recognition.losses import create_loss, parse_loss_params

TINY = ["--backbone", "mobilefacenet", "--embedding-size", 16, "--workers", 0, "--no-flip", "--no-onnx"]


def test_values_take_their_parameters_types_and_reach_the_loss():
    params = parse_loss_params("triplet", {"mining": "semi_hard", "soft_margin": "true", "margin": "0.3"})
    assert params == {"mining": "semi_hard", "soft_margin": True, "margin": 0.3}
    triplet = create_loss("triplet", embedding_size=8, num_classes=2, **params)
    assert (triplet.mining, triplet.soft_margin, triplet.margin) == ("semi_hard", True, 0.3)
    params = parse_loss_params("sphereface", {"m": "3", "s": "30"})
    assert params == {"m": 3, "s": 30.0} and type(params["m"]) is int and type(params["s"]) is float
    sphereface = create_loss("sphereface", embedding_size=8, num_classes=2, **params)
    assert (sphereface.m, sphereface.s) == (3, 30.0)
    assert parse_loss_params("lsoftmax", {"m": "4.0"}) == {"m": 4}  # a whole number written as a float
    assert parse_loss_params("margin_loss", {"per_class_beta": "no"}) == {"per_class_beta": False}


@pytest.mark.parametrize(
    ("loss", "item", "message"),
    [
        ("sphereface", "m=1.5", "m=1.5: sphereface's m takes an integer, not '1.5'"),
        ("arcface", "s=big", "s=big: arcface's s takes a number, not 'big'"),
        ("triplet", "soft_margin=maybe", "soft_margin=maybe: triplet's soft_margin takes true or false, not 'maybe'"),
        ("arcface", "margin=0.5", "loss 'arcface' has no parameter margin; valid: s, m"),
        ("arcface", "m", "expected KEY=VALUE, got 'm'"),
    ],
)
def test_bad_value_is_a_one_line_usage_error(cli, tmp_path, loss, item, message):
    data = tmp_path / "data"
    data.mkdir()
    result = cli("train-recognize", data, tmp_path / "out", "--loss", loss, "--loss-param", item)
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == f"Error: Invalid value for '--loss-param': {message}"
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # ~12 s on 2 busy cores
def test_triplet_with_semi_hard_mining_trains(cli, shared_data, tmp_path):
    data = tmp_path / "four"
    for person in range(1, 5):
        shutil.copytree(shared_data / f"faces/orl_aligned_112/s{person}", data / f"s{person}")
    out = tmp_path / "model"
    result = cli(
        "train-recognize", data, out, *TINY, "--loss", "triplet", "--loss-param", "mining=semi_hard",
        "--pk", 4, 4, "--epochs", 1, "--no-augment",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trained_with"]["loss_params"] == {"mining": "semi_hard"}
    assert metrics["steps"] >= 1 and all(step["loss"] >= 0 for step in metrics["history"])
    assert "triplet mining=semi_hard" in (out / "train.log").read_text()
