"""The ``probe`` command: parse, call the library, render. Nothing else lives here.

Every :class:`~probe_cli.errors.ProbeError` becomes one ``Error: ...`` line and
its exit code in :meth:`ProbeGroup.invoke`; TensorFlow is imported only when
a command needs it, so ``probe --help`` stays fast.
"""

from __future__ import annotations

import functools
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from probe_cli import __version__
from probe_cli.errors import FAILURE, USAGE, ProbeError

EXIT_CODES_HELP = """\b
Exit codes:
  0  success
  1  the model could not be loaded, run or written
  2  usage error or bad input (bad option, missing file, pattern matching
     nothing, input shape/dtype mismatch, archive exists, --unsafe needed)
"""


class ProbeGroup(click.Group):
    """Turns domain errors into one line and an exit code, in one place."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["probe.argv"] = ["probe", *args]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ProbeError as exc:
            if ctx.meta.get("probe.debug"):
                raise
            error = click.ClickException(str(exc))
            error.exit_code = exc.exit_code
            raise error from None
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
            if ctx.meta.get("probe.debug"):
                raise
            error = click.ClickException(f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for details)")
            error.exit_code = FAILURE
            raise error from None


def _command_line(ctx: click.Context) -> str:
    return shlex.join(ctx.find_root().meta.get("probe.argv", ["probe"]))


def model_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """MODEL plus how to open it: shared by every command that loads a model."""

    @click.argument("model", type=click.Path(path_type=Path))
    @click.option(
        "--custom-objects",
        "custom_objects",
        multiple=True,
        type=click.Path(path_type=Path),
        metavar="FILE.py",
        help="Import this Python file so custom classes defined or registered there can be loaded. Repeatable.",
    )
    @click.option(
        "--unsafe", is_flag=True, help="Allow the model file to run code (Lambda layers). Only for files you trust."
    )
    @functools.wraps(func)
    def wrapper(*args: Any, model: Path, custom_objects: tuple[Path, ...], unsafe: bool, **kwargs: Any) -> Any:
        from probe_cli.pipeline import ModelOptions

        return func(*args, model=ModelOptions(model, tuple(custom_objects), unsafe), **kwargs)

    return wrapper


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of tables.")(func)


def _check_regexes(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """A pattern that does not compile is a usage error, reported before anything loads."""
    import re

    for value in values:
        try:
            re.compile(value)
        except re.error as exc:
            raise click.BadParameter(f"{value!r} is not a valid regular expression: {exc}") from None
    return values


@click.group(cls=ProbeGroup, epilog=EXIT_CODES_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="probe")
@click.option("-v", "--verbose", is_flag=True, help="Show TensorFlow's own log messages.")
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, debug: bool) -> None:
    """Look inside TensorFlow/Keras models: list every layer and op tensor, dump any of them to HDF5.

    \b
      probe list model.h5
      probe dump model.h5 --tensor 'ROI/.*NonMax.*' --input x.npy -o dump.h5
    """
    from probe_cli import _tf

    ctx.meta["probe.debug"] = debug
    _tf.set_verbose(verbose)


@cli.command(name="list")
@model_options
@click.option(
    "--match",
    multiple=True,
    callback=_check_regexes,
    metavar="REGEX",
    help="Show only tensors (with --layers: layers) this pattern selects, as dump does. Repeatable.",
)
@click.option("--layers", "layers_only", is_flag=True, help="Show inputs and layers only.")
@json_option
def list_command(model: Any, match: tuple[str, ...], layers_only: bool, as_json: bool) -> None:
    """List a model's inputs, layers and every op tensor, under the names dump accepts."""
    from probe_cli.pipeline import filter_index, list_model
    from probe_cli.render import Out, render_index

    index = filter_index(list_model(model), match, layers_only)
    render_index(Out(), index, str(model.path), layers_only=layers_only, as_json=as_json)


@cli.command()
@model_options
@click.option(
    "-t",
    "--tensor",
    "tensors",
    multiple=True,
    callback=_check_regexes,
    metavar="REGEX",
    help="Fetch every tensor whose full name (op:0) or op name this regex matches completely. Repeatable.",
)
@click.option(
    "-l",
    "--layer",
    "layers",
    multiple=True,
    callback=_check_regexes,
    metavar="REGEX",
    help="Fetch the output tensor(s) of every layer whose name this regex matches completely. Repeatable.",
)
@click.option(
    "-i",
    "--input",
    "inputs",
    multiple=True,
    metavar="[NAME=]FILE",
    help=".npy (by name, else by position) or .npz (keys are input names). Repeatable.",
)
@click.option(
    "--batch-size", default=1, show_default=True, type=click.IntRange(min=1), help="Batch dimension of random inputs."
)
@click.option(
    "--shape",
    "shapes",
    multiple=True,
    metavar="NAME=D1,D2,...",
    help="Shape of a random input with unknown dimensions (with or without the batch dim).",
)
@click.option(
    "--value-range",
    "value_ranges",
    multiple=True,
    metavar="NAME=LO,HI",
    help="Range of a random input's values (default [0, 1) for floats).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random inputs.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    metavar="ARCHIVE.h5",
    help="Archive to write  [default: MODEL_NAME.probe.h5]",
)
@click.option("--force", is_flag=True, help="Overwrite an existing archive.")
@click.option("--dry-run", is_flag=True, help="Show what would be fetched (names, shapes, bytes) and run nothing.")
@json_option
@click.pass_context
def dump(
    ctx: click.Context,
    model: Any,
    tensors: tuple[str, ...],
    layers: tuple[str, ...],
    inputs: tuple[str, ...],
    batch_size: int,
    shapes: tuple[str, ...],
    value_ranges: tuple[str, ...],
    seed: int,
    output: Path | None,
    force: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Run the model once and write the selected tensors to an HDF5 archive.

    With no --tensor or --layer, every layer's output is dumped. Inputs not
    given with --input get seeded random data.
    """
    from probe_cli.pipeline import DumpRequest, InputOptions
    from probe_cli.pipeline import dump as run_dump
    from probe_cli.render import Out, render_dump

    request = DumpRequest(
        model=model,
        tensors=tensors,
        layers=layers,
        inputs=InputOptions(inputs, shapes, value_ranges, batch_size, seed),
        output=output,
        force=force,
        dry_run=dry_run,
        command=_command_line(ctx),
    )
    render_dump(Out(), run_dump(request), as_json=as_json)


def main() -> None:
    """Console-script entry point."""
    try:
        cli.main(prog_name="probe")
    except KeyboardInterrupt:  # pragma: no cover - interactive
        click.echo("Error: interrupted", err=True)
        sys.exit(130)


_ = USAGE  # documented above; exit code 2 comes from ProbeError subclasses and Click itself
