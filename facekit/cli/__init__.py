"""The `facekit` command. Subcommands live in small modules loaded on first use, so `facekit --help`
imports neither torch nor OpenCV.

Option precedence, lowest to highest: built-in defaults, `--config FILE` (YAML: a mapping of command name to
option values, e.g. `inspect: {json: true}`), `FACEKIT_<COMMAND>_<OPTION>` environment variables, flags.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

from facekit import __version__
from facekit.errors import FacekitError

# command name -> "module:attribute"; each module imports only click at top level.
COMMANDS: dict[str, str] = {
    "inspect": "facekit.cli.data:inspect_cmd",
    "pack-rec": "facekit.cli.data:pack_rec_cmd",
    "make-example-data": "facekit.cli.data:make_example_data_cmd",
    "align": "facekit.cli.prepare:align_cmd",
    "make-bin": "facekit.cli.prepare:make_bin_cmd",
    "detect": "facekit.cli.detect:detect_cmd",
    "import-model": "facekit.cli.detect:import_model_cmd",
    "train-detect": "facekit.cli.train_detect:train_detect_cmd",
    "eval-detect": "facekit.cli.eval_detect:eval_detect_cmd",
    "train-recognize": "facekit.cli.train_recognize:train_recognize_cmd",
    "build-db": "facekit.cli.gallery:build_db_cmd",
    "recognize": "facekit.cli.gallery:recognize_cmd",
    "db": "facekit.cli.db_bulk:db_group",  # the group of facekit.cli.gallery, with merge, import, export
    "evaluate-gallery": "facekit.cli.gallery:evaluate_gallery_cmd",
    "calibrate": "facekit.cli.calibrate:calibrate_cmd",
    "split-people": "facekit.cli.calibrate:split_people_cmd",
    "export": "facekit.cli.export:export_cmd",
    "embed": "facekit.cli.embed:embed_cmd",
}

# modules of the `train` extra (setup.cfg) -> what to call them when a command needs one that is not installed
TRAIN_EXTRA = {"torch": "PyTorch", "tensorboard": "TensorBoard", "scipy": "SciPy", "sklearn": "scikit-learn"}


class LazyGroup(click.Group):
    """A group whose subcommands are imported when used, and whose errors become one-line messages."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FacekitError as exc:
            error = click.ClickException(_one_line(str(exc)))
            error.exit_code = exc.exit_code
            raise error from None
        except KeyboardInterrupt:
            click.echo("facekit: interrupted", err=True)
            sys.exit(130)
        except ModuleNotFoundError as exc:  # a serving-only install: the one place a missing extra is named
            needed = TRAIN_EXTRA.get((exc.name or "").partition(".")[0])
            if needed is None:
                raise
            command = f"facekit {ctx.invoked_subcommand}" if ctx.invoked_subcommand else "facekit"
            raise click.ClickException(f"{command} needs {needed}: pip install 'facekit[train]'") from None


def _one_line(message: str) -> str:
    """The message of a FacekitError. One raised in a DataLoader worker (a bad image met during training) reaches
    the main process re-created by PyTorch as "Caught ImageDecodeError in DataLoader worker process 0.\nOriginal
    Traceback ...\nfacekit.errors.ImageDecodeError: <message>": keep the original message, the traceback's last line.
    """
    if message.startswith("Caught ") and "\nOriginal Traceback" in message:
        last = message.rstrip().rsplit("\n", 1)[-1]
        return last.partition(": ")[2] or last
    return message


def _load_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    import yaml

    try:
        with open(value, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise click.BadParameter(f"{value}: cannot read YAML ({exc})".replace("\n", " ")) from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise click.BadParameter(f"{value}: expected a mapping of command name to option values")
    unknown = sorted(set(data) - set(COMMANDS))
    if unknown:
        raise click.BadParameter(
            f"{value}: unknown command(s) {', '.join(unknown)}; known: {', '.join(sorted(COMMANDS))}"
        )
    ctx.default_map = {name: {k.replace("-", "_"): v for k, v in opts.items()} for name, opts in data.items()}
    return value


@click.group(cls=LazyGroup, context_settings={"auto_envvar_prefix": "FACEKIT", "help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="facekit")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    callback=_load_config,
    is_eager=True,
    expose_value=False,
    help="YAML file of option defaults per command.",
)
def main(verbose: int) -> None:
    """Train face detectors and recognizers, build galleries, recognize faces."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
