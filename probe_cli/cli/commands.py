"""The ``probe`` command: parse, call the library, render. Nothing else lives here.

Every :class:`~probe_cli.core.errors.ProbeError` becomes one ``Error: ...`` line and
its exit code in :meth:`ProbeGroup.invoke`; TensorFlow is imported only when
a command needs it, so ``probe --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from probe_cli import __version__
from probe_cli.backends import tfenv  # imports TensorFlow only when asked to
from probe_cli.cli import config  # stdlib and Click only
from probe_cli.core import interrupt
from probe_cli.core.errors import FAILURE, INTERRUPTED, NUMERICS, USAGE, ProbeError

EXIT_CODES_HELP = """\b
Exit codes:
  0  success
  1  the model could not be loaded, run or written
  2  usage error or bad input (bad option, missing file, pattern matching
     nothing, input shape/dtype mismatch, archive exists, --unsafe needed)
  3  dump --check-numerics found NaN or Inf
  130  interrupted (Ctrl-C or SIGTERM); no archive is published after it
"""


def _verbose_callback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:  # before any command body runs, so before TensorFlow is imported
        tfenv.set_verbose(True)


def _debug_callback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta["probe.debug"] = True  # meta is shared by every context of the invocation


def _global_options() -> list[click.Option]:
    """-v and --debug, for probe itself and for every command (``probe list model.h5 -v`` works too)."""
    return [
        click.Option(
            ["-v", "--verbose"],
            is_flag=True,
            expose_value=False,
            callback=_verbose_callback,
            help="Show TensorFlow's own log messages.",
        ),
        click.Option(
            ["--debug"], is_flag=True, expose_value=False, callback=_debug_callback, help="Show Python tracebacks."
        ),
    ]


class ProbeCommand(click.Command):
    """A command that also takes probe's global options after its name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(_global_options())


class ProbeGroup(click.Group):
    """Turns domain errors into one line and an exit code, in one place."""

    command_class = ProbeCommand

    #: Click 8.2+ raises this for a bare ``probe``: it prints the help, so it stays as it is.
    _SHOWS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())

    def main(self, *args: Any, **kwargs: Any) -> Any:
        # the CLI owns its process; CliRunner and scripts calling it in-process too
        with tfenv.cli_process(), interrupt.watch():
            try:
                return super().main(*args, **kwargs)
            except SystemExit as exc:
                if interrupt.requested() and exc.code != INTERRUPTED:  # arrived after the last check, or was lost
                    click.echo(f"Error: {interrupted_message()}", err=True)
                    raise SystemExit(INTERRUPTED) from None
                raise

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt:  # while parsing: Click would print "Aborted!" and exit 1
            raise _interrupted() from None

    @staticmethod
    def _one_line(exc: click.UsageError) -> click.ClickException:
        """A usage error as one ``Error: ...`` line (Click would print usage and a hint first).

        A bad value that came from a variable or the config file says which.
        """
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        if isinstance(exc, click.BadParameter) and exc.ctx is not None:
            hint = exc.param_hint
            param = exc.param or next((p for p in exc.ctx.command.params if hint in p.opts), None)
            source, origin = config.origin_of(exc.ctx, param) if param is not None else (None, None)
            if source in (config.ENV, config.CONFIG):
                where = f" (from {origin or source})"
        return _error(exc.format_message() + where, exc.exit_code)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        """Every command's options can be set by PROBE_* variables, whenever it is added."""
        super().add_command(cmd, name)
        config.install_envvars(name or cmd.name, cmd)

    def _load_settings(self, ctx: click.Context) -> None:
        """PROBE_* variables checked, the config file read into Click's ``default_map``, before any command parses.

        A broken config file still lets ``probe COMMAND --help`` through (without it).
        """
        try:
            settings = config.load_settings(self)
        except config.ConfigError:
            if not set(ctx.meta.get("probe.argv", ())) & set(ctx.help_option_names):
                raise
            settings = config.Settings()
        ctx.meta[config.SETTINGS] = settings
        ctx.default_map = {**settings.defaults, **(ctx.default_map or {})}

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        tfenv.set_verbose(False)  # until -v says otherwise: each invocation starts quiet
        ctx.meta["probe.argv"] = ["probe", *args]
        try:
            return super().parse_args(ctx, args)
        except self._SHOWS_HELP:
            raise
        except click.UsageError as exc:
            raise self._one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            self._load_settings(ctx)
            result = super().invoke(ctx)
            interrupt.check()  # a signal whose exception was lost on the way still ends the run as one
            return result
        except ProbeError as exc:
            if ctx.meta.get("probe.debug"):
                raise
            if _caused_by_interrupt(exc):
                raise _interrupted() from None
            raise _error(str(exc), USAGE if _judges(ctx) else exc.exit_code) from None
        except self._SHOWS_HELP:
            raise
        except click.UsageError as exc:
            raise self._one_line(exc) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            raise _interrupted() from None
        except BrokenPipeError:
            raise  # the reader went away (probe list | head): Click exits quietly
        except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
            if ctx.meta.get("probe.debug"):
                raise
            if _caused_by_interrupt(exc):
                raise _interrupted() from None
            message = f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for details)"
            raise _error(message, USAGE if _judges(ctx) else FAILURE) from None


#: Commands whose exit status is diff(1)'s: 1 means "different", so every error is 2, "trouble".
JUDGING_COMMANDS = ("diff", "compare")


def _judges(ctx: click.Context) -> bool:
    return ctx.invoked_subcommand in JUDGING_COMMANDS


INTERRUPTED_MESSAGE = "interrupted; no archive was written"


def _error(message: str, exit_code: int) -> click.ClickException:
    """What Click prints as one ``Error: ...`` line and exits with ``exit_code``: the one place that maps codes."""
    error = click.ClickException(message)
    error.exit_code = exit_code  # type: ignore[misc]  # an instance attribute, as Click's own subclasses set it
    return error


def _interrupted() -> click.ClickException:
    # Click would print "Aborted!" and exit 1; the archive writer has already cleaned up.
    return _error(interrupted_message(), INTERRUPTED)


def interrupted_message() -> str:
    """What an interrupt did: nothing was published, or (a signal during or after publishing) what was."""
    done = interrupt.published()
    if not done:
        return INTERRUPTED_MESSAGE
    return "interrupted after writing " + ", ".join(repr(str(path)) for path in done)


def _caused_by_interrupt(exc: BaseException) -> bool:
    """Whether Ctrl-C or SIGTERM is behind ``exc``.

    An interrupt that lands inside a C extension's import comes back as
    pybind11's ``ImportError: initialization failed`` (seen during
    ``import tensorflow``), and library code may wrap that in a ProbeError.
    """
    if interrupt.requested():  # from then on any error is the signal's doing, its exception maybe lost
        return True
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        cause = pending.pop()
        if isinstance(cause, KeyboardInterrupt):
            return True
        if id(cause) not in seen:
            seen.add(id(cause))
            pending += [link for link in (cause.__cause__, cause.__context__) if link is not None]
    return False


def _command_line(ctx: click.Context) -> str:
    """The command as typed, plus what it took from PROBE_* variables or the config file: it runs again alone."""
    argv = list(ctx.find_root().meta.get("probe.argv", ["probe"]))
    options, positional = config.implicit_arguments(ctx)
    end = argv.index("--") if "--" in argv else len(argv)  # options go before a '--' that ends them
    argv[end:end] = options
    argv += positional
    return shlex.join(argv)


def _model_given(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """MODEL may come from PROBE_MODEL or the config file; from nowhere, it is missing (except for ``probe config``)."""
    if value is None and not ctx.meta.get(config.DESCRIBING):
        hint = "'MODEL'"  # Click would write '[MODEL]', the argument being optional on the command line
        raise click.MissingParameter(config.MISSING_MODEL_HINT, ctx, param, param_hint=hint)
    return value


def _stacked(*options: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Click options as one decorator, applied as if written one above the other in this order."""

    def apply(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            func = option(func)
        return func

    return apply


#: How to open a model file (--custom-objects, --unsafe, --signature): for one model or two.
open_options = _stacked(
    click.option(
        "--custom-objects",
        "custom_objects",
        multiple=True,
        type=click.Path(path_type=Path),
        metavar="FILE.py",
        help="Import this Python file so custom classes defined or registered there can be loaded. Repeatable.",
    ),
    click.option(
        "--unsafe",
        is_flag=True,
        help="Allow the model file to run code (Lambda layers). Only for files you trust.",
    ),
    click.option(
        "--signature",
        default="serving_default",
        show_default=True,
        metavar="NAME",
        help="SavedModel signature to load (SavedModel directories only).",
    ),
)


def model_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """MODEL plus how to open it: shared by every command that loads a model."""

    @click.argument("model", required=False, callback=_model_given, type=click.Path(path_type=Path))
    @open_options
    @functools.wraps(func)
    def wrapper(
        *args: Any, model: Path, custom_objects: tuple[Path, ...], unsafe: bool, signature: str, **kwargs: Any
    ) -> Any:
        from probe_cli.pipeline import ModelOptions

        return func(*args, model=ModelOptions(model, tuple(custom_objects), unsafe, signature), **kwargs)

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
def cli() -> None:
    """Look inside TensorFlow/Keras models: list every layer and op tensor, dump any of them to HDF5.

    \b
      probe list model.h5
      probe dump model.h5 --tensor 'ROI/.*NonMax.*' --input x.npy -o dump.h5
    """


cli.params.extend(_global_options())
config.install_envvars(None, cli)  # PROBE_VERBOSE, PROBE_DEBUG (the commands' own: in ProbeGroup.add_command)


@cli.command(name="list")
@model_options
@click.option(
    "--match",
    multiple=True,
    callback=_check_regexes,
    metavar="REGEX",
    help="Show only the tensors this pattern selects, as dump does, and the layers they belong to or "
    "come out of (with --layers: the layers it selects). Repeatable.",
)
@click.option("--layers", "layers_only", is_flag=True, help="Show inputs and layers only.")
@json_option
def list_command(model: Any, match: tuple[str, ...], layers_only: bool, as_json: bool) -> None:
    """List a model's inputs, layers and every op tensor, under the names dump accepts."""
    from probe_cli.cli.render import Out, render_index
    from probe_cli.pipeline import filter_index, list_model

    index = filter_index(list_model(model), match, layers_only)
    render_index(Out(), index, str(model.path), layers_only=layers_only, as_json=as_json)


#: --tensor and --layer: which tensors, as dump selects them.
selection_options = _stacked(
    click.option(
        "-t",
        "--tensor",
        "tensors",
        multiple=True,
        callback=_check_regexes,
        metavar="REGEX",
        help="Fetch every tensor whose full name (op:0) or op name this regex matches completely. Repeatable.",
    ),
    click.option(
        "-l",
        "--layer",
        "layers",
        multiple=True,
        callback=_check_regexes,
        metavar="REGEX",
        help="Fetch the output tensor(s) of every layer whose name this regex matches completely. Repeatable.",
    ),
)


#: What to feed: files, an earlier archive's inputs, or seeded random samples.
_input_option_list = _stacked(
    click.option(
        "-i",
        "--input",
        "inputs",
        multiple=True,
        metavar="[NAME=]FILE",
        help=".npy (by name, else by position) or .npz (keys are input names). Repeatable.",
    ),
    click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        default=None,
        help="Samples per graph execution: files holding more samples run in batches; random inputs get "
        "this many. [default: the model's fixed batch size, else 1 for random inputs and up to 32 for files]",
    ),
    click.option(
        "--shape",
        "shapes",
        multiple=True,
        metavar="NAME=D1,D2,...",
        help="Shape of a random input with unknown dimensions (with or without the batch dim).",
    ),
    click.option(
        "--value-range",
        "value_ranges",
        multiple=True,
        metavar="NAME=LO,HI",
        help="Range of a random input's values (default [0, 1) for floats).",
    ),
    click.option("--seed", default=0, show_default=True, type=int, help="Seed of the random inputs."),
    click.option(
        "--inputs-from",
        type=click.Path(path_type=Path),
        metavar="ARCHIVE.h5",
        help="Feed exactly the inputs stored in an earlier probe archive (so a later diff compares like with like).",
    ),
    click.option(
        "--samples",
        type=click.IntRange(min=1),
        default=None,
        help="How many random samples to make for inputs no file feeds  [default: --batch-size, else 1]",
    ),
)


def input_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The input options, handed to the command as one ``feed: InputOptions``."""

    @_input_option_list
    @functools.wraps(func)
    def wrapper(
        *args: Any,
        inputs: tuple[str, ...],
        batch_size: int | None,
        shapes: tuple[str, ...],
        value_ranges: tuple[str, ...],
        seed: int,
        inputs_from: Path | None,
        samples: int | None,
        **kwargs: Any,
    ) -> Any:
        from probe_cli.pipeline import InputOptions

        feed = InputOptions(inputs, shapes, value_ranges, batch_size, seed, inputs_from, samples)
        return func(*args, feed=feed, **kwargs)

    return wrapper


@cli.command()
@model_options
@selection_options
@input_options
@click.option(
    "--check-numerics",
    is_flag=True,
    help="Find the first op (graph order) whose output holds NaN/Inf; watches every op unless --tensor/--layer "
    "narrow it. Exit code 3 when found.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    metavar="ARCHIVE.h5",
    help="Archive to write  [default: MODEL_NAME.probe.h5]",
)
@click.option("--force", is_flag=True, help="Overwrite an existing archive.")
@click.option("--dry-run", is_flag=True, help="Show what would be fetched (names, shapes, bytes) and run nothing.")
@click.option(
    "--compression",
    type=click.Choice(["none", "gzip", "lzf"]),
    default="none",
    show_default=True,
    help="HDF5 compression of the stored tensors.",
)
@click.option(
    "--stats-only",
    is_flag=True,
    help="Store each tensor's distribution over all samples instead of its values, computed inside the graph: "
    "NaN, -Inf, +Inf, negative, zero and positive counts (as tfdbg's FULL_HEALTH), exact min, max, mean and std.",
)
@click.option(
    "--histogram",
    is_flag=True,
    help="With --stats-only, a histogram of each tensor too. Costly: with it, the statistics add 3-5x what the "
    "default ones add to the run (measured on MobileNetV2 and ResNet50: docs/performance.md).",
)
@click.option(
    "--channels",
    is_flag=True,
    help="With --stats-only, min/max/mean/std per channel (the last axis) too; costs what --histogram costs, "
    "and both together cost the same as either.",
)
@click.option(
    "--hist-range",
    metavar="LO,HI",
    help="Range of --stats-only histograms (values outside go to two overflow bins); implies --histogram  "
    "[default: each tensor's range over the first batch]",
)
@click.option("--bins", type=click.IntRange(min=1), default=64, show_default=True, help="--histogram bins.")
@click.option(
    "--shard",
    metavar="K/N",
    help="Process only the K-th of N contiguous slices of the samples (K from 0), for a job array; `probe merge` "
    "joins the parts.",
)
@click.option(
    "--max-bytes",
    default="16G",
    show_default=True,
    metavar="SIZE",
    help="Stop before running when the archive is estimated to be larger (e.g. 500M, 2G).",
)
@json_option
@click.pass_context
def dump(
    ctx: click.Context,
    model: Any,
    tensors: tuple[str, ...],
    layers: tuple[str, ...],
    feed: Any,
    check_numerics: bool,
    output: Path | None,
    force: bool,
    dry_run: bool,
    compression: str,
    stats_only: bool,
    histogram: bool,
    channels: bool,
    hist_range: str | None,
    bins: int,
    shard: str | None,
    max_bytes: str,
    as_json: bool,
) -> None:
    """Run the model once and write the selected tensors to an HDF5 archive.

    With no --tensor or --layer, every layer output and model output is dumped. Inputs not
    given with --input get seeded random data.
    """
    from probe_cli.cli.render import Out, progress_bar, render_dump
    from probe_cli.core.units import parse_bytes
    from probe_cli.pipeline import DumpRequest, DumpSpec
    from probe_cli.pipeline import dump as run_dump

    try:
        limit = parse_bytes(max_bytes)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--max-bytes") from None

    spec = DumpSpec(
        tensors=tensors,
        layers=layers,
        force=force,
        dry_run=dry_run,
        command=_command_line(ctx),
        compression=compression,
        max_bytes=limit,
        check_numerics=check_numerics,
        stats_only=stats_only,
        hist_range=_pair_of_floats(hist_range, "--hist-range"),
        bins=bins,
        shard=_shard(shard),
        histogram=histogram,
        channels=channels,
    )
    request = DumpRequest(model=model, spec=spec, inputs=feed, output=output)
    with progress_bar(enabled=not as_json) as progress:
        result = run_dump(request, progress=progress)
    _warn(result.warnings)
    render_dump(Out(), result, as_json=as_json)
    if result.nonfinite is not None:
        click.echo(f"Error: NaN/Inf first appears at {result.nonfinite.where()}", err=True)
        ctx.exit(NUMERICS)


def _warn(messages: Sequence[str]) -> None:
    """The library's warnings, one ``Warning: ...`` line each on stderr, so stdout (JSON) stays clean."""
    for message in messages:
        click.echo(f"Warning: {message}", err=True)


def _pair_of_floats(text: str | None, option: str) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not LO,HI (two numbers)", param_hint=option) from None
    if not low < high:
        raise click.BadParameter(f"{text!r} needs LO < HI", param_hint=option)
    return low, high


def _shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    k, _, n = text.partition("/")
    if not (k.isdigit() and n.isdigit()) or not 0 <= int(k) < int(n):
        raise click.BadParameter(f"{text!r} is not K/N with 0 <= K < N (e.g. 0/4)", param_hint="--shard")
    return int(k), int(n)


def _interrupt(signum: int, frame: object) -> None:
    """Ctrl-C and SIGTERM unwind alike, so a half-written archive is removed on the way out; the
    signal is recorded first, for where its exception gets lost (see :mod:`probe_cli.core.interrupt`)."""
    if interrupt.request():
        raise KeyboardInterrupt


ARCHIVE_MATCH_HELP = (
    "Only tensors whose full name (op:0) or op name this regex matches completely, as dump selects. Repeatable."
)
#: Same as probe_cli.analysis.diff's criteria, repeated so --help never imports h5py.
DIFF_VERDICT = """\b
A float tensor differs when its relative error is over its budget:
  ||c - r|| > budget * ||r||   (r the reference's values, c the candidate's;
                                + 1e-9 * sqrt(n), so an all-zero r tolerates rounding)
The budget is 1e-4 unless --max-error sets it, for all tensors (REL) or for
those a pattern matches (PATTERN=REL; the last matching pattern wins).
With --atol or --rtol, a tensor also differs when any element is out of
tolerance (numpy.isclose; NaN equals NaN, Inf the same Inf; the option not
given keeps its default, atol 1e-5, rtol 1e-4), and --max-error then applies
only if given:
  |c - r| > atol + rtol * |r|
Integers and booleans must be equal."""

#: What "added" means, for compare --help (docs/comparing.md says more).
ADDED_HELP = """\b
"added": how much relative error a tensor adds to what it receives: its own
relative error less the largest of its inputs' (through ops not compared).
Large where a layer introduces error (an int8 layer with too coarse a scale);
about 0 where error only passes through; negative where a layer shrinks the
relative error it receives (an average, a ReLU zeroing noisy values)."""


class BudgetType(click.ParamType):
    """``--max-error``: REL or PATTERN=REL; in [tool.probe] a number or a string."""

    name = "REL|PATTERN=REL"
    toml_types = ((str, int, float), "a number or a string (PATTERN=REL)")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        pattern, sep, number = text.rpartition("=")
        try:
            float(number)
        except ValueError:
            self.fail(f"{text!r} is not REL or PATTERN=REL (e.g. 0.02 or 'probs/.*=0.05')", param, ctx)
        if sep:
            try:
                re.compile(pattern)
            except re.error as exc:
                self.fail(f"pattern {pattern!r} is not a valid regular expression: {exc}", param, ctx)
        return text


#: --atol, --rtol, --max-error, --map and --all: how diff and compare pair, judge and show tensors.
tolerance_options = _stacked(
    click.option(
        "--max-error",
        "max_error",
        type=BudgetType(),
        multiple=True,
        help="Relative-error budget ||c - r|| / ||r||: REL for every tensor (default 1e-4), PATTERN=REL for the "
        "tensors PATTERN matches (reference or candidate name; the last matching one wins). Repeatable.",
    ),
    click.option(
        "--atol",
        type=click.FloatRange(min=0),
        default=None,
        help="Absolute tolerance of every element (adds the elementwise verdict).",
    ),
    click.option(
        "--rtol",
        type=click.FloatRange(min=0),
        default=None,
        help="Tolerance relative to the reference's values (adds the elementwise verdict).",
    ),
    click.option(
        "--map",
        "map_file",
        type=click.Path(path_type=Path),
        metavar="FILE",
        help="Pairs of tensor names (the reference's, then the candidate's) that pairing does not find: a JSON "
        "object, a JSON list of pairs, or a two-column CSV.",
    ),
    click.option(
        "--all",
        "show_all",
        is_flag=True,
        help="Show every paired tensor, not only inputs, outputs, layer outputs and those that differ.",
    ),
)


def _budgets(values: tuple[str, ...]) -> Any:
    from probe_cli.analysis.diff import Budgets

    return Budgets.parse(values) if values else None


#: --html: the report page of diff and compare.
html_option = click.option(
    "--html",
    "html_report",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="REPORT.html",
    help="Also write a self-contained HTML report (error along the graph, histograms, sortable table; overwritten).",
)


def _write_html(path: Path, title: str, models: tuple[Path, Path] | None = None) -> Callable[[Any, Path, Path], None]:
    """Writes the report of a result from its candidate's and reference's archives; ``models``
    (reference, candidate): the models as the user named them, for the page's header."""

    def write(result: Any, candidate: Path, reference: Path) -> None:
        from probe_cli.analysis.report import build_report, write_report

        if models is not None:
            result = dataclasses.replace(result, a=str(models[1]), b=str(models[0]))
        write_report(path, build_report(result, candidate, reference, title=title))

    return write


def _read_map(map_file: Path | None) -> dict[str, str] | None:
    from probe_cli.analysis.pairing import read_map

    return None if map_file is None else read_map(map_file)


@cli.command()
@click.argument("archive", type=click.Path(path_type=Path), metavar="ARCHIVE.h5")
@click.option("--match", multiple=True, callback=_check_regexes, metavar="REGEX", help=ARCHIVE_MATCH_HELP)
@json_option
def show(archive: Path, match: tuple[str, ...], as_json: bool) -> None:
    """Show an archive's provenance and its tensors' statistics, in graph order.

    Provenance: model path and SHA-256, samples (of how many, for a shard), the seed
    where random inputs were made, versions, command, creation time, and the fed
    inputs with their sources (--json: every attribute). Per tensor:
    shape, dtype, min, max, mean, std (over finite values) and NaN/Inf counts.
    Needs only h5py: TensorFlow is not loaded.
    """
    from probe_cli.analysis.show import show_archive
    from probe_cli.cli.render import Out, render_show

    render_show(Out(), show_archive(archive, match), as_json=as_json)


@cli.command(epilog=DIFF_VERDICT)
@click.argument("a", type=click.Path(path_type=Path), metavar="CANDIDATE.h5")
@click.argument("b", type=click.Path(path_type=Path), metavar="REFERENCE.h5")
@tolerance_options
@click.option("--match", multiple=True, callback=_check_regexes, metavar="REGEX", help=ARCHIVE_MATCH_HELP)
@html_option
@json_option
@click.pass_context
def diff(
    ctx: click.Context,
    a: Path,
    b: Path,
    max_error: tuple[str, ...],
    atol: float | None,
    rtol: float | None,
    map_file: Path | None,
    show_all: bool,
    match: tuple[str, ...],
    html_report: Path | None,
    as_json: bool,
) -> None:
    """Compare the tensors of two archives and name the first divergence in graph order.
    The second archive, REFERENCE.h5, is the reference.

    Tensors are paired by --map, by name, by graph name with call wrappers, the model scope and
    scope counters removed (a Keras file's conv1/Relu:0 and its SavedModel's
    StatefulPartitionedCall/m_1/conv1_1/Relu:0), then by their place in the model graphs the
    archives store: inputs in order, outputs in order, copies and fused ops (docs/comparing.md).
    Per tensor: relative error ||c - r|| / ||r|| against its budget, max absolute error and SNR
    (cosine and more with --json). Shows inputs, outputs, layer outputs and what differs (--all:
    every pair); counts the unpaired tensors by kind (-v lists them). Warns (on stderr) when the
    archives were fed different inputs.

    \b
    Exit status, as diff(1):
      0  same tensors, shapes and dtypes, all within budget
      1  differences found (values, shapes, dtypes, or tensors in only one archive)
      2  trouble (missing file, not a probe archive, bad pattern)
    """
    from probe_cli.analysis.diff import diff_archives
    from probe_cli.cli.render import Out, render_diff

    result = diff_archives(
        a, b, atol=atol, rtol=rtol, match=match, mapping=_read_map(map_file), budgets=_budgets(max_error)
    )
    if html_report is not None:
        _write_html(html_report, "probe diff")(result, a, b)
    render_diff(
        Out(), result, as_json=as_json, warn=Out(sys.stderr, color=False), show_all=show_all, verbose=tfenv.verbose()
    )
    _step_summary(result)
    if not result.same:
        ctx.exit(1)


def _step_summary(result: Any, title: str = "probe diff") -> None:
    """In GitHub Actions, the verdict also goes to the run's page (see :mod:`probe_cli.cli.summary`)."""
    from probe_cli.cli.summary import append_diff_summary

    problem = append_diff_summary(result, title)
    if problem is not None:
        click.echo(f"Warning: {problem}", err=True)


@cli.command()
@click.argument("archive", type=click.Path(path_type=Path), metavar="ARCHIVE.h5")
@click.option(
    "-t",
    "--tensor",
    "tensors",
    multiple=True,
    callback=_check_regexes,
    metavar="REGEX",
    help="Plot every stored tensor whose full name (op:0) or op name this regex matches completely. Repeatable. "
    "[default: the stored tensors (a dump's layer outputs), the first 16 in graph order]",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    metavar="PATH",
    help="PNG to write (overwritten), or an existing directory for one PNG per tensor  [default: ARCHIVE_NAME.png]",
)
@click.option(
    "--sample", default=0, show_default=True, type=click.IntRange(min=0), help="Sample (batch index) of channel maps."
)
@click.option("--bins", default=64, show_default=True, type=click.IntRange(min=1), help="Histogram bins.")
@click.option(
    "--max-channels", default=16, show_default=True, type=click.IntRange(min=1), help="Channel maps per tensor."
)
def plot(
    archive: Path, tensors: tuple[str, ...], output: Path | None, sample: int, bins: int, max_channels: int
) -> None:
    """Draw a histogram of each selected tensor and, for (N, H, W, C) tensors, its channel maps.

    One PNG with one row per tensor (300 pixels high each): the histogram of
    its finite values (NaN and Inf counts in the title) and, for image-like
    4-D tensors, a grid of the first channels of one sample. With -o DIR,
    one such PNG per tensor, named after it (conv1/Relu:0 -> conv1__Relu_0.png).

    \b
    Needs matplotlib:  pip install matplotlib  (from a checkout: pip install -e '.[plot]')
    """
    from probe_cli.analysis.plot import plot_archive
    from probe_cli.cli.render import Out, render_plot

    result = plot_archive(archive, tensors, output, sample=sample, bins=bins, max_channels=max_channels)
    render_plot(Out(), result)


def _command_named(ctx: click.Context, param: click.Parameter, name: str | None) -> click.Command:
    """``probe config``'s COMMAND: any other command of the group."""
    group = ctx.parent.command if ctx.parent is not None else None
    commands = getattr(group, "commands", {})
    choices = ", ".join(other for other in commands if other != ctx.info_name)
    if name is None:
        raise click.MissingParameter(f"Choose from {choices}", ctx, param, param_hint="'COMMAND'")
    if name not in commands or name == ctx.info_name:
        raise click.BadParameter(f"{name!r} is not a command; choose from {choices}", ctx, param)
    command: click.Command = commands[name]
    return command


@cli.command(
    name="config",
    context_settings={"ignore_unknown_options": True},
    short_help="Show a command's settings and where each comes from.",
)
@click.argument("target", required=False, callback=_command_named, metavar="COMMAND")
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="[ARGS]...")
@json_option
@click.pass_context
def config_command(ctx: click.Context, target: click.Command, args: tuple[str, ...], as_json: bool) -> None:
    """Show the settings COMMAND would run with, and where each one comes from.

    ARGS are COMMAND's own arguments and options, as you would give them; nothing is run or
    loaded. Each setting comes from the command line, else an environment variable
    (PROBE_DUMP_SEED, then PROBE_SEED), else the [tool.probe.dump], then [tool.probe], table of
    the nearest probe.toml or pyproject.toml from the current directory upwards, else its
    default. --unsafe is taken from the command line only. --json here is config's own.

    \b
      probe config dump
      probe config dump --tensor 'conv1/.*' --json
    """
    import json

    assert ctx.parent is not None and target.name is not None
    ctx.meta[config.DESCRIBING] = True  # MODEL may be missing here
    try:
        with config.parse_only(target).make_context(target.name, list(args), parent=ctx.parent) as sub:
            rows = config.describe(sub)
    finally:
        ctx.meta.pop(config.DESCRIBING, None)
    settings = config.settings_of(ctx)
    if as_json:
        click.echo(json.dumps(config.settings_document(target.name, settings, rows), indent=2))
    else:
        click.echo("\n".join(config.settings_lines(target.name, settings, rows)))


@cli.command(epilog=DIFF_VERDICT + "\n\n" + ADDED_HELP)
@click.argument("reference", type=click.Path(path_type=Path))
@click.argument("candidate", type=click.Path(path_type=Path))
@open_options
@selection_options
@input_options
@tolerance_options
@click.option(
    "--save-dir",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="Keep both archives there (reference.probe.h5, candidate.probe.h5; overwritten) for show, plot and diff.",
)
@html_option
@click.option(
    "--model-explorer",
    "explorer_dir",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="Also write node data (and graphs it needs) to see the errors in Google's Model Explorer; "
    "DIR/README.md has the command that opens them.",
)
@json_option
@click.pass_context
def compare(
    ctx: click.Context,
    reference: Path,
    candidate: Path,
    custom_objects: tuple[Path, ...],
    unsafe: bool,
    signature: str,
    tensors: tuple[str, ...],
    layers: tuple[str, ...],
    feed: Any,
    max_error: tuple[str, ...],
    atol: float | None,
    rtol: float | None,
    map_file: Path | None,
    show_all: bool,
    save_dir: Path | None,
    html_report: Path | None,
    explorer_dir: Path | None,
    as_json: bool,
) -> None:
    """Run two forms of a model on the same inputs and name the first tensor, in graph order, where the
    CANDIDATE diverges from the REFERENCE.

    The forms: a Keras file, its SavedModel, a frozen graph, a TFLite conversion (int8 too), a
    retrained copy. Inputs not given get seeded random data (the reference's, fed to both). Tensors
    are paired as diff pairs them, across the two graphs: by name, graph name, inputs and outputs
    in order, copies, and fused ops with the chain they replaced (a Conv with its folded BatchNorm
    and the reference's batchnorm/add_1). --tensor/--layer select on either side, through the
    pairing. Unpaired tensors are counted by kind (-v lists them) and do not decide the verdict.

    \b
    Exit status, as diff(1):
      0  every paired tensor within its budget
      1  a paired tensor differs
      2  trouble (a model that does not load or run, a bad option)
    """
    from probe_cli.cli.render import Out, render_diff
    from probe_cli.feed import feed_warnings
    from probe_cli.pipeline import ModelOptions, compare_models, make_feeds, open_model

    options = (tuple(custom_objects), unsafe, signature)
    ref, cand = (open_model(ModelOptions(path, *options)) for path in (reference, candidate))
    feeds = make_feeds(ref.index, feed)
    _warn(feed_warnings(feeds))
    result = compare_models(
        ref,
        cand,
        feeds,
        save_dir,
        tensors=tensors,
        layers=layers,
        mapping=_read_map(map_file),
        atol=atol,
        rtol=rtol,
        budgets=_budgets(max_error),
        seed=feed.seed,
        batch_size=feed.batch_size,
        command=_command_line(ctx),
        with_archives=None
        if html_report is None
        else _write_html(html_report, "probe compare", (reference, candidate)),
    )
    if save_dir is None:  # name the models as the user did
        result = dataclasses.replace(result, a=str(candidate), b=str(reference))
    render_diff(
        Out(), result, as_json=as_json, warn=Out(sys.stderr, color=False), show_all=show_all, verbose=tfenv.verbose()
    )
    if explorer_dir is not None:
        from probe_cli.analysis.explorer import explorer_for
        from probe_cli.cli.render import render_explorer

        render_explorer(Out(sys.stderr) if as_json else Out(), explorer_for(explorer_dir, result, ref, cand))
    _step_summary(result, "probe compare")
    if not result.same:
        ctx.exit(1)


@cli.command()
@click.argument("output", type=click.Path(path_type=Path), metavar="OUT.h5")
@click.argument("parts", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="PART.h5...")
@click.option("--copy", is_flag=True, help="Copy the values into OUT.h5 instead of mapping them (self-contained).")
@click.option("--force", is_flag=True, help="Overwrite an existing OUT.h5.")
def merge(output: Path, parts: tuple[Path, ...], copy: bool, force: bool) -> None:
    """Join the archives of a sharded run (dump --shard K/N) into one, in sample order.

    Tensors and inputs become HDF5 virtual datasets over the parts: nothing is copied, and
    OUT.h5 reads (h5py, h5ls, show, diff, plot) as long as the parts stay beside it. With
    --stats-only parts the statistics merge exactly. Parts of different runs (model, selection,
    seed), overlapping or missing samples, and files that are no shards are refused.
    """
    from probe_cli.archive.merge import merge_archives
    from probe_cli.cli.render import Out, render_merge

    render_merge(Out(), merge_archives(output, parts, copy=copy, force=force))


def main() -> None:
    """Console-script entry point."""
    import signal

    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) != signal.SIG_IGN:  # `probe dump ... &` in a script ignores Ctrl-C
            signal.signal(signum, _interrupt)
    try:
        cli.main(prog_name="probe")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        click.echo(f"Error: {INTERRUPTED_MESSAGE}", err=True)
        code = INTERRUPTED
    if interrupt.requested() and code != INTERRUPTED:  # arrived after the command had finished
        click.echo("Error: interrupted", err=True)
        code = INTERRUPTED
    _exit_fast(code)


def _exit_fast(code: int) -> None:
    """Skips TensorFlow's interpreter teardown (0.5-0.9 s on ResNet50) once all output is out.

    Everything probe writes is complete by now (archives are committed and
    closed inside the command); only stdout/stderr need flushing.
    """
    if "tensorflow" not in sys.modules:
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or broken pipe: nothing left to save
            pass
    os._exit(code)
