"""One source per default: every option of train-detect and train-recognize that has a default agrees with the
settings dataclass the command fills (an option without one leaves the dataclass's, or the recipe's, in charge); the
detection options agree with DetectSettings, and --body, --backbone and --loss offer their registry's names."""

from __future__ import annotations

import dataclasses

import click
import pytest

from facekit.cli import main
from facekit.cli.options import RegistryChoice
from facekit.detection.train import DetectTrainSettings
from facekit.recognition.augment import Augment
from facekit.recognition.settings import RecognizeTrainSettings


def _defaults(settings: type) -> dict[str, object]:
    out = {}
    for f in dataclasses.fields(settings):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _comparable(value: object) -> object:
    return list(value) if isinstance(value, tuple | list) else value


@pytest.mark.parametrize(
    ("command", "settings", "nested"),
    [
        ("train-detect", DetectTrainSettings, {}),
        ("train-recognize", RecognizeTrainSettings, {"aug_": _defaults(Augment)}),
    ],
)
def test_option_defaults_are_the_settings_defaults(command, settings, nested):
    expected = {k: v for k, v in _defaults(settings).items() if not dataclasses.is_dataclass(v)}  # nested: below
    for prefix, values in nested.items():  # --aug-flip -> Augment.flip
        expected |= {prefix + name: value for name, value in values.items()}
    checked = []
    cmd = main.get_command(click.Context(main), command)
    given = cmd.make_context(command, [], resilient_parsing=True).params  # what the command gets when told nothing
    for param in cmd.params:
        default = given.get(param.name)
        if not isinstance(param, click.Option) or param.name not in expected or default in (None, ()):
            continue  # no default of its own: the dataclass's (or the recipe's) applies
        assert _comparable(default) == _comparable(expected[param.name]), (command, param.name)
        checked.append(param.name)
    assert len(checked) >= 10, checked  # the comparison found the options it is about


def _commands(group: click.Group = main, ctx: click.Context | None = None) -> dict[str, click.Command]:
    """Every command under `group`, by its path ("db info")."""
    ctx = ctx or click.Context(group)
    out = {}
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            out |= {f"{name} {sub}": c for sub, c in _commands(cmd, click.Context(cmd, parent=ctx)).items()}
        else:
            out[name] = cmd
    return out


def test_detection_options_default_to_the_detect_settings():
    from facekit.detection.faces import DetectSettings

    settings = DetectSettings()
    detect = {p.name: p.default for p in _commands()["detect"].params}
    assert (detect["threshold"], detect["nms"], detect["max_size"]) == (settings.threshold, settings.nms,
                                                                      settings.max_size)  # fmt: skip
    thresholds = {path: p.default for path, c in _commands().items() for p in c.params if p.name == "det_threshold"}
    assert len(thresholds) >= 5 and set(thresholds.values()) == {settings.threshold}, thresholds


def test_registry_choices_offer_the_registries_names():
    from facekit.detection.model import BODIES
    from facekit.recognition.backbones import BACKBONES
    from facekit.recognition.losses import LOSSES

    registries = {"body": BODIES, "backbone": BACKBONES, "loss": LOSSES}
    seen = set()
    for path, cmd in _commands().items():
        for param in cmd.params:
            if isinstance(param.type, RegistryChoice) and param.name in registries:
                assert param.type.choices == registries[param.name].names(), (path, param.name)
                seen.add((path, param.name))
    assert {("train-detect", "body"), ("train-recognize", "backbone"), ("train-recognize", "loss")} <= seen, seen
