"""Inputs for one run: ``.npy``/``.npz`` files mapped to the model's inputs, else seeded random data.

Everything is checked (names, shapes, dtypes) before the model runs, so a
mistake costs a second, not a model load and a failed graph execution.
Pure NumPy: no TensorFlow here.
"""

from __future__ import annotations

import difflib
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from probe_cli.errors import FeedError, FileProblem, UsageProblem
from probe_cli.index import InputSpec, Shape, format_shape

DEFAULT_SEED = 0
#: Random integers for inputs that do not feed an Embedding are drawn from [0, 10).
DEFAULT_INT_LIMIT = 10


@dataclass(frozen=True)
class InputArg:
    """One ``--input [NAME=]FILE`` as given on the command line."""

    name: str | None
    path: Path


@dataclass(frozen=True)
class Feed:
    """The array fed to one input and where it came from (a path, ``path:key`` or ``random``)."""

    name: str
    array: np.ndarray
    source: str


def _did_you_mean(name: str, known: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"did you mean {close[0]!r}?" if close else "inputs: " + ", ".join(known)


def parse_input_arg(text: str, input_names: Sequence[str] = ()) -> InputArg:
    """``x.npy`` or ``image=x.npy``; a ``=`` belongs to the path unless what precedes it is an input name."""
    name, sep, path = text.partition("=")
    if sep and (name in input_names or not input_names) and name and path:
        return InputArg(name, Path(path))
    return InputArg(None, Path(text))


def _split_assignment(text: str, option: str, example: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise UsageProblem(f"{option} {text!r} is malformed", f"expected {example}")
    return name, value


def parse_shape_arg(text: str) -> tuple[str, tuple[int, ...]]:
    """``NAME=D1,D2,...`` with positive integer dims."""
    name, value = _split_assignment(text, "--shape", "NAME=D1,D2,... e.g. image=1,224,224,3")
    try:
        dims = tuple(int(d) for d in value.replace("x", ",").split(","))
    except ValueError:
        raise UsageProblem(f"--shape {text!r} is malformed", "dims must be integers, e.g. image=1,224,224,3") from None
    if any(d < 0 for d in dims):
        raise UsageProblem(f"--shape {text!r} has a negative dimension")
    return name, dims


def parse_range_arg(text: str) -> tuple[str, tuple[float, float]]:
    """``NAME=LO,HI`` with LO < HI."""
    name, value = _split_assignment(text, "--value-range", "NAME=LO,HI e.g. image=-1,1")
    parts = value.split(",")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise UsageProblem(f"--value-range {text!r} is malformed", "expected NAME=LO,HI e.g. image=-1,1") from None
    if not lo < hi or not np.isfinite([lo, hi]).all():
        raise UsageProblem(f"--value-range {text!r} needs finite LO < HI")
    return name, (lo, hi)


def read_array_file(path: Path) -> dict[str | None, np.ndarray]:
    """Arrays of a ``.npy`` (key None) or ``.npz`` file, never unpickling anything."""
    if not path.exists():
        raise FileProblem(f"input file {str(path)!r} does not exist")
    if path.is_dir():
        raise FileProblem(f"input {str(path)!r} is a directory, not a .npy/.npz file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise FileProblem(
                f"input file {str(path)!r} holds Python objects",
                "probe never unpickles inputs; save a numeric array instead",
            ) from None
        raise FileProblem(f"input file {str(path)!r} is not a readable .npy/.npz file: {exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise FileProblem(f"cannot read input file {str(path)!r}: {exc}") from None
    if isinstance(loaded, np.ndarray):
        return {None: loaded}
    with loaded:
        try:
            return {key: loaded[key] for key in loaded.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise FileProblem(f"cannot read input file {str(path)!r}: {exc}") from None


def _check(spec: InputSpec, array: np.ndarray, source: str) -> np.ndarray:
    """The array as the input's dtype, or a one-line FeedError naming expected and given."""
    expected = np.dtype(spec.dtype) if spec.dtype != "string" else None
    if array.dtype.kind in "OVSUc" and expected is not None or array.dtype.kind == "O":
        raise FeedError(f"input {spec.name!r} from {source}: dtype {array.dtype} cannot feed {spec.dtype}")
    if expected is not None and array.dtype != expected:
        same_kind = (array.dtype.kind == expected.kind) or (array.dtype.kind in "iu" and expected.kind in "iu")
        if not same_kind:
            raise FeedError(
                f"input {spec.name!r} from {source}: expected dtype {spec.dtype}, got {array.dtype}",
                f"convert the file, e.g. np.save(path, arr.astype('{spec.dtype}'))",
            )
        if expected.kind in "iu" and array.size:
            info = np.iinfo(expected)
            if array.min() < info.min or array.max() > info.max:
                raise FeedError(f"input {spec.name!r} from {source}: values do not fit {spec.dtype}")
        array = array.astype(expected)
    if len(array.shape) != len(spec.shape) or any(d is not None and d != g for d, g in zip(spec.shape, array.shape)):
        raise FeedError(
            f"input {spec.name!r} from {source}: expected shape {format_shape(spec.shape)}, "
            f"got {format_shape(array.shape)}"
        )
    if array.size == 0:
        raise FeedError(f"input {spec.name!r} from {source}: the array is empty (shape {format_shape(array.shape)})")
    return array


def _concrete_shape(spec: InputSpec, given: tuple[int, ...] | None, batch_size: int) -> tuple[int, ...]:
    """Fills unknown dims: the batch dim from --batch-size, others from --shape."""
    if given is not None:
        if len(given) == len(spec.shape) - 1 and spec.shape and spec.shape[0] is None:
            given = (batch_size, *given)
        if len(given) != len(spec.shape) or any(d is not None and d != g for d, g in zip(spec.shape, given)):
            raise FeedError(
                f"--shape for input {spec.name!r} is {format_shape(given)}, but the input is {format_shape(spec.shape)}"
            )
        return given
    dims = []
    for axis, dim in enumerate(spec.shape):
        if dim is None and axis == 0:
            dim = batch_size
        elif dim is None:
            raise FeedError(
                f"input {spec.name!r} has unknown dimension {axis} in shape {format_shape(spec.shape)}",
                f"give it with --shape {spec.name}=D1,D2,... or feed a file with --input {spec.name}=FILE",
            )
        dims.append(dim)
    return tuple(dims)


def random_array(
    spec: InputSpec, shape: Shape, rng: np.random.Generator, value_range: tuple[float, float] | None
) -> np.ndarray:
    """Uniform floats in [0, 1), integers below the Embedding's ``input_dim``, or ``value_range``."""
    dtype = np.dtype(spec.dtype) if spec.dtype != "string" else None
    if dtype is None:
        raise FeedError(
            f"input {spec.name!r} takes strings; probe cannot make them up", f"pass --input {spec.name}=FILE"
        )
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        lo, hi = value_range if value_range else (0, spec.int_limit or DEFAULT_INT_LIMIT)
        return rng.integers(int(np.ceil(lo)), int(np.ceil(hi)), size=shape).astype(dtype)
    lo, hi = value_range if value_range else (0.0, 1.0)
    values = rng.random(shape, dtype=np.float64)
    return (lo + (hi - lo) * values).astype(dtype)


def build_feeds(
    inputs: Sequence[InputSpec],
    args: Sequence[InputArg] = (),
    *,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    value_ranges: Mapping[str, tuple[float, float]] | None = None,
    batch_size: int = 1,
    seed: int = DEFAULT_SEED,
) -> list[Feed]:
    """One feed per model input, in the model's input order.

    Files map by name (``NAME=FILE``, ``.npz`` keys), then unnamed ``.npy``
    files by position among the inputs not yet fed. Every other input gets
    random data from its own stream ``default_rng([seed, position])``, so
    feeding one input from a file does not change the others.
    """
    shapes, value_ranges = dict(shapes or {}), dict(value_ranges or {})
    names = [spec.name for spec in inputs]
    for option, table in (("--shape", shapes), ("--value-range", value_ranges)):
        for name in table:
            if name not in names:
                raise FeedError(f"{option} names unknown input {name!r}", _did_you_mean(name, names))
    if batch_size < 1:
        raise UsageProblem(f"--batch-size must be at least 1, got {batch_size}")

    given: dict[str, tuple[np.ndarray, str]] = {}
    positional: list[tuple[np.ndarray, str]] = []
    for arg in args:
        arrays = read_array_file(arg.path)
        if None in arrays:  # .npy
            if arg.name is None:
                positional.append((arrays[None], str(arg.path)))
                continue
            arrays = {arg.name: arrays[None]}
        elif arg.name is not None:  # NAME=file.npz: a single array, or the key NAME
            if arg.name in arrays:
                arrays = {arg.name: arrays[arg.name]}
            elif len(arrays) == 1:
                arrays = {arg.name: next(iter(arrays.values()))}
            else:
                raise FeedError(f"{arg.path} has no array {arg.name!r}", "keys: " + ", ".join(arrays))
        for key, array in arrays.items():
            if key not in names:
                raise FeedError(
                    f"{arg.path} holds array {key!r}, which is no input of the model", _did_you_mean(key, names)
                )
            if key in given:
                raise FeedError(f"input {key!r} is given twice ({given[key][1]} and {arg.path})")
            source = str(arg.path) if arg.name is not None or arg.path.suffix == ".npy" else f"{arg.path}:{key}"
            given[key] = (array, source)
    free = [n for n in names if n not in given]
    if len(positional) > len(free):
        raise FeedError(
            f"{len(positional)} unnamed input file(s) but only {len(free)} input(s) left to feed "
            f"({', '.join(free) or 'none'})",
            "name them with --input NAME=FILE",
        )
    given.update(zip(free, positional))

    feeds = []
    for position, spec in enumerate(inputs):
        if spec.name in given:
            array, source = given[spec.name]
            feeds.append(Feed(spec.name, _check(spec, np.asarray(array), source), source))
            continue
        shape = _concrete_shape(spec, shapes.get(spec.name), batch_size)
        rng = np.random.default_rng([seed, position])
        feeds.append(Feed(spec.name, random_array(spec, shape, rng, value_ranges.get(spec.name)), "random"))
    return feeds
