"""One source per default: every option of train-detect and train-recognize that has a default agrees with the
settings dataclass the command fills (an option without one leaves the dataclass's, or the recipe's, in charge)."""

from __future__ import annotations

import dataclasses

import click
import pytest

from facekit.cli import main
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
