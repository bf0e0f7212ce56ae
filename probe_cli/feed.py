"""Inputs for one run: ``.npy``/``.npz`` files mapped to the model's inputs, else seeded random data.

Everything is checked (names, shapes, dtypes) before the model runs, so a
mistake costs a second, not a model load and a failed graph execution.
Pure NumPy: no TensorFlow here.
"""

from __future__ import annotations

import difflib
import math
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from probe_cli.archive.reader import open_archive, read_inputs
from probe_cli.core.errors import FeedError, FileProblem, ProbeError, UsageProblem, given, in_python, option
from probe_cli.core.types import Feed, InputSpec, format_shape

DEFAULT_SEED = 0
#: Random integers for inputs that do not feed an Embedding are drawn from [0, 10).
DEFAULT_INT_LIMIT = 10
#: Samples per execution when files hold many and --batch-size is not given.
DEFAULT_FILE_BATCH = 32


@dataclass(frozen=True)
class InputArg:
    """One ``--input [NAME=]FILE`` as given on the command line."""

    name: str | None
    path: Path


def _did_you_mean(name: str, known: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"did you mean {close[0]!r}?" if close else "inputs: " + ", ".join(known)


def parse_input_arg(text: str, input_names: Sequence[str] = ()) -> InputArg:
    """``x.npy`` or ``image=x.npy``; a ``=`` belongs to the path unless what precedes it is an input name."""
    name, sep, path = text.partition("=")
    if sep and (name in input_names or not input_names) and name and path:
        return InputArg(name, Path(path))
    if sep and name and path and not Path(text).exists() and Path(path).exists():
        raise FeedError(
            f"--input {text!r} names {name!r}, which is no input of the model", _did_you_mean(name, input_names)
        )
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
    if any(d == 0 for d in dims):
        raise UsageProblem(f"--shape {text!r} has a zero dimension", "an input must hold at least one value")
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


class _ArrayLike:
    """What a lazily read input shares with an ndarray: ``ndim`` and ``size`` follow from ``shape``."""

    @property
    def shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


class LazyArray(_ArrayLike):
    """A C-order ``.npy`` read slice by slice along axis 0.

    Big evaluation sets never sit in memory whole: each batch reads only its
    rows (``np.fromfile`` at an offset), so peak memory does not grow with the
    number of samples. Quacks like an ndarray where probe needs it.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype, offset: int, cast: np.dtype | None = None):
        self.path, self.file_shape, self.file_dtype, self.offset = path, shape, dtype, offset
        self.cast = cast

    @property
    def shape(self) -> tuple[int, ...]:
        return self.file_shape

    @property
    def dtype(self) -> np.dtype:
        return self.cast if self.cast is not None else self.file_dtype

    def __len__(self) -> int:
        return self.file_shape[0]

    def astype(self, dtype: np.dtype) -> LazyArray:
        return LazyArray(self.path, self.file_shape, self.file_dtype, self.offset, np.dtype(dtype))

    def read(self, start: int, stop: int) -> np.ndarray:
        row = int(np.prod(self.file_shape[1:]))
        stop = min(stop, self.file_shape[0])
        rows = max(stop - start, 0)
        data = np.fromfile(
            self.path,
            dtype=self.file_dtype,
            count=rows * row,
            offset=self.offset + start * row * self.file_dtype.itemsize,
        ).reshape((rows, *self.file_shape[1:]))
        return data.astype(self.cast) if self.cast is not None else data

    def __getitem__(self, key: slice) -> np.ndarray:
        if isinstance(key, slice) and key.step in (None, 1):
            start, stop, _ = key.indices(self.file_shape[0])
            return self.read(start, stop)
        return np.asarray(self)[key]

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        data = self.read(0, self.file_shape[0])
        return data if dtype is None else data.astype(dtype)


def _open_npy(path: Path) -> np.ndarray | LazyArray:
    """A lazy reader for plain C-order arrays with a batch axis, else the loaded array."""
    with path.open("rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version not in ((1, 0), (2, 0)):
            return np.load(path, allow_pickle=False)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(handle)
        offset = handle.tell()
    if dtype.hasobject:
        raise ValueError("Object arrays cannot be loaded when allow_pickle=False")
    if any(not isinstance(d, int) or d < 0 for d in shape):  # numpy's header reader accepts (2, -3)
        raise ValueError(f"the header gives an invalid shape {shape}")
    expected = offset + math.prod(shape) * dtype.itemsize  # Python ints: np.prod wraps around on huge shapes
    if path.stat().st_size < expected:
        raise ValueError(f"the file is truncated ({path.stat().st_size} of {expected} bytes)")
    if fortran or not shape or dtype.itemsize == 0:
        return np.load(path, allow_pickle=False)
    return LazyArray(path, tuple(shape), dtype, offset)


class StackedFiles(_ArrayLike):
    """A directory or glob of ``.npy`` files read as one array along axis 0, lazily.

    Each file holds one sample (its rank is the input's rank minus one) or
    several along axis 0; which one is decided against the input in :func:`build_feeds`.
    """

    def __init__(
        self, parts: list[np.ndarray | LazyArray], label: str, expand: bool = False, cast: np.dtype | None = None
    ):
        self.parts, self.label, self.expand, self.cast = parts, label, expand, cast
        self._starts = np.cumsum([0] + [1 if expand else p.shape[0] for p in parts])

    def for_rank(self, rank: int) -> StackedFiles:
        first = self.parts[0]
        expand = first.ndim == rank - 1
        for part in self.parts:
            if part.shape != first.shape and (expand or part.shape[1:] != first.shape[1:]):
                raise FeedError(f"files of {self.label} differ in shape: {first.shape} and {part.shape}")
        return StackedFiles(self.parts, self.label, expand, self.cast)

    @property
    def shape(self) -> tuple[int, ...]:
        sample = self.parts[0].shape if self.expand else self.parts[0].shape[1:]
        return (int(self._starts[-1]), *sample)

    @property
    def dtype(self) -> np.dtype:
        return self.cast if self.cast is not None else self.parts[0].dtype

    def astype(self, dtype: np.dtype) -> StackedFiles:
        return StackedFiles(self.parts, self.label, self.expand, np.dtype(dtype))

    def __getitem__(self, key: slice) -> np.ndarray:
        start, stop, _ = key.indices(self.shape[0])
        chunks = []
        for index, part in enumerate(self.parts):
            lo, hi = int(self._starts[index]), int(self._starts[index + 1])
            if hi <= start or lo >= stop:
                continue
            if self.expand:
                chunks.append(np.asarray(part)[None])
            else:
                chunks.append(np.asarray(part[max(start - lo, 0) : min(stop, hi) - lo]))
        data = np.concatenate(chunks) if chunks else np.empty((0, *self.shape[1:]), self.parts[0].dtype)
        return data.astype(self.cast) if self.cast is not None else data

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        data = self[0 : self.shape[0]]
        return data if dtype is None else data.astype(dtype)


class RandomSamples(_ArrayLike):
    """Seeded random inputs, made a slice at a time.

    Sample ``i`` of the input at ``position`` always comes from ``default_rng([seed, position, i])``,
    so any slice of samples (a batch, a shard of a job array) equals that slice of one whole run,
    and nothing is held in memory.
    """

    def __init__(
        self,
        spec: InputSpec,
        shape: tuple[int, ...],
        seed: int,
        position: int,
        value_range: tuple[float, float] | None,
    ) -> None:
        self.spec, self.full_shape, self.value_range = spec, shape, value_range
        self.seed, self.position = seed, position
        if shape[0]:
            self._sample(0)  # made now, so a bad spec or range fails before the run

    def _sample(self, index: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.position, index])
        return random_array(self.spec, self.full_shape[1:], rng, self.value_range)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.full_shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.spec.dtype)

    def __getitem__(self, key: slice) -> np.ndarray:
        start, stop, _ = key.indices(self.full_shape[0])
        if stop <= start:
            return np.empty((0, *self.full_shape[1:]), self.dtype)
        return np.stack([self._sample(i) for i in range(start, stop)])

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        data = self[0 : self.full_shape[0]]
        return data if dtype is None else data.astype(dtype)


class Window(_ArrayLike):
    """Samples ``start`` to ``stop`` of an array or lazily read input, still read lazily (``dump --shard``)."""

    def __init__(self, base: Any, start: int, stop: int) -> None:
        self.base, self.start, self.stop = base, start, stop

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.stop - self.start, *self.base.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.base.dtype)

    def __getitem__(self, key: slice) -> np.ndarray:
        start, stop, _ = key.indices(self.stop - self.start)
        return np.asarray(self.base[self.start + start : self.start + stop])

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        data = self[0 : self.stop - self.start]
        return data if dtype is None else data.astype(dtype)


def _shard(k: int, n: int) -> str:
    return given("--shard", f"({k}, {n})" if in_python() else f"{k}/{n}")


def shard_range(samples: int, shard: tuple[int, int]) -> tuple[int, int]:
    """The samples ``[start, stop)`` of shard ``K`` of ``N``: contiguous slices, as equal as they can be."""
    k, n = shard
    if not 0 <= k < n:
        raise UsageProblem(f"{_shard(k, n)} names no shard: K counts from 0 to N-1")
    if n > samples:
        raise UsageProblem(f"{_shard(k, n)}: {samples} sample(s) cannot be split {n} ways", "use fewer shards")
    return k * samples // n, (k + 1) * samples // n


def shard_feeds(feeds: Sequence[Feed], inputs: Sequence[InputSpec], start: int, stop: int) -> list[Feed]:
    """The feeds of samples ``[start, stop)``; inputs without a sample axis are fed whole to every shard."""
    return [
        replace(f, array=Window(f.array, start, stop)) if f.array.ndim and spec.shape else f
        for f, spec in zip(feeds, inputs)
    ]


def _many_files(path: Path) -> list[Path] | None:
    """The .npy files a directory or glob names, or None for a single path."""
    text = str(path)
    if path.is_dir():
        files = sorted(path.glob("*.npy"))
    elif any(c in text for c in "*?[") and not path.exists():
        import glob

        files = sorted(Path(p) for p in glob.glob(text) if p.endswith(".npy"))
    else:
        return None
    if not files:
        raise FileProblem(f"input {text!r} names no .npy files")
    return files


def _archive_inputs(path: Path) -> dict[str | None, Any]:
    """The inputs stored in an earlier probe archive, by input name (``--inputs-from``)."""

    with open_archive(path) as file:
        arrays: dict[str | None, Any] = {name: array for name, (array, _) in read_inputs(file).items()}
    if not arrays:
        raise FileProblem(f"archive {str(path)!r} holds no inputs")
    return arrays


def read_array_file(path: Path) -> dict[str | None, Any]:
    """Arrays of a ``.npy`` (key None), an ``.npz``, a probe archive's inputs, or a directory/glob of ``.npy`` files.

    Never unpickles anything; ``.npy`` data is read lazily (see :class:`LazyArray`).
    """
    files = _many_files(path)
    if files is not None:
        parts = [read_array_file(f)[None] for f in files]
        return {None: StackedFiles(parts, str(path))}
    if not path.exists():
        raise FileProblem(f"input file {str(path)!r} does not exist")
    if path.is_dir():
        raise FileProblem(f"input {str(path)!r} is a directory, not a .npy/.npz file")
    head = b""
    try:
        # numpy is handed our handle, so a corrupt .npz cannot leave its own open (np.load leaks it)
        with path.open("rb") as handle:
            head = handle.read(8)
            if head == b"\x89HDF\r\n\x1a\n":
                return _archive_inputs(path)
            if head.startswith(b"\x93NUMPY"):
                return {None: _open_npy(path)}
            handle.seek(0)
            loaded = np.load(handle, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                return {None: loaded}
            with loaded:
                return {key: loaded[key] for key in loaded.files}
    except ProbeError:  # already says what is wrong (e.g. an HDF5 file that is not a probe archive)
        raise
    except ValueError as exc:
        raise _unreadable(path, exc, head) from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise FileProblem(f"cannot read input file {str(path)!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a corrupt header fails inside numpy's parser (SyntaxError, TokenError)
        raise FileProblem(f"input file {str(path)!r} is not a readable .npy/.npz file: {exc}") from None


def _unreadable(path: Path, exc: ValueError, head: bytes) -> FileProblem:
    """numpy's ValueError as one line; numpy blames pickling for any file without a known magic."""
    message = str(exc)
    if "Object arrays" in message or ("pickle" in message.lower() and head.startswith(b"\x80")):
        return FileProblem(
            f"input file {str(path)!r} holds Python objects",
            "probe never unpickles inputs; save a numeric array instead",
        )
    if "pickle" in message.lower():
        return FileProblem(f"input file {str(path)!r} is not a .npy/.npz file")
    return FileProblem(f"input file {str(path)!r} is not a readable .npy/.npz file: {message}")


#: The source of an array handed to the Python API (``inputs=``), as feeds and archives record it.
IN_MEMORY = "array"


def _where(name: str, source: str) -> str:
    return f"input {name!r} given in inputs=" if source == IN_MEMORY else f"input {name!r} from {source}"


def _convert_hint(source: str, dtype: str) -> str:
    if source == IN_MEMORY:
        return f"convert it, e.g. arr.astype('{dtype}')"
    return f"convert the file, e.g. np.save(path, arr.astype('{dtype}'))"


def conversion_warning(feed: Feed) -> str | None:
    """One line for an input converted by a cast that can change values (float64 to float32, int64 to int32)."""
    if feed.converted_from is None:
        return None
    dtype = np.dtype(feed.array.dtype)
    return f"{_where(feed.name, feed.source)}: {feed.converted_from} converted to {dtype}, which can change values"


def feed_warnings(feeds: Sequence[Feed]) -> list[str]:
    """:func:`conversion_warning` of every feed that has one."""
    return [line for line in map(conversion_warning, feeds) if line is not None]


def _check(spec: InputSpec, array: Any, source: str) -> tuple[Any, str | None]:
    """The array as the input's dtype and the dtype it had when that cast can change values, or a one-line
    FeedError naming expected and given.

    numpy's safe casts (uint8, int16 or float16 to float32) are made silently; same-kind casts that can
    change values (float64 to float32, int64 to int32 with every value in range, int64 to float32) are
    made and reported; others (float to int, complex to float) are refused.

    Axis 0 of a file may hold any number of samples when the input's batch
    dimension is unknown, or a multiple of it when it is fixed: the run is
    then split into batches (see :func:`iter_batches`).
    """
    if isinstance(array, StackedFiles):
        array = array.for_rank(len(spec.shape))
    expected = np.dtype(spec.dtype) if spec.dtype != "string" else None
    fed_as = np.dtype(array.dtype)
    where = _where(spec.name, source)
    if fed_as.kind in "OVSUc" and expected is not None or fed_as.kind == "O":
        raise FeedError(f"{where}: dtype {fed_as} cannot feed {spec.dtype}", _convert_hint(source, spec.dtype))
    converted_from = None
    if expected is not None and fed_as != expected:
        integers = fed_as.kind in "iu" and expected.kind in "iu"
        safe = np.can_cast(fed_as, expected, "safe")  # numpy's safe casts change no value
        if not (np.can_cast(fed_as, expected, "same_kind") or integers):
            raise FeedError(f"{where}: expected dtype {spec.dtype}, got {fed_as}", _convert_hint(source, spec.dtype))
        if integers and not safe and array.size:
            info = np.iinfo(expected)
            low, high = _extremes(array)
            if low < info.min or high > info.max:
                raise FeedError(f"{where}: values do not fit {spec.dtype}", _convert_hint(source, spec.dtype))
        if not safe:  # a safe cast is made silently
            converted_from = str(fed_as)
        array = array.astype(expected)
    shape = tuple(array.shape)
    batch_ok = (
        bool(shape)
        and bool(spec.shape)
        and (spec.shape[0] is None or spec.shape[0] == shape[0] or (shape[0] > 0 and shape[0] % spec.shape[0] == 0))
    )
    if (
        len(shape) != len(spec.shape)
        or not batch_ok
        or any(d is not None and d != g for d, g in zip(spec.shape[1:], shape[1:]))
    ):
        if not (shape == () and spec.shape == ()):
            raise FeedError(f"{where}: expected shape {format_shape(spec.shape)}, got {format_shape(shape)}")
    if array.size == 0:
        raise FeedError(f"{where}: the array is empty (shape {format_shape(shape)})")
    return array, converted_from


def _extremes(array: Any) -> tuple[Any, Any]:
    """min and max of an array, or of a lazy file read about 16 MB at a time along axis 0."""
    if isinstance(array, np.ndarray) or not array.ndim:
        data = np.asarray(array)
        return data.min(), data.max()
    rows = max(1, (1 << 24) // max(1, array.size // array.shape[0] * array.dtype.itemsize))
    low = high = None
    for start in range(0, array.shape[0], rows):  # one slice in memory at a time
        part = np.asarray(array[start : start + rows])
        if part.size:
            low = part.min() if low is None else min(low, part.min())
            high = part.max() if high is None else max(high, part.max())
    return low, high


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
                f"feed an array for it in inputs={{{spec.name!r}: ...}}"
                if in_python()
                else f"give it with --shape {spec.name}=D1,D2,... or feed a file with --input {spec.name}=FILE",
            )
        dims.append(dim)
    return tuple(dims)


def random_array(
    spec: InputSpec, shape: tuple[int, ...], rng: np.random.Generator, value_range: tuple[float, float] | None
) -> np.ndarray:
    """Uniform floats in [0, 1), integers below the Embedding's ``input_dim``, or ``value_range``."""
    dtype = np.dtype(spec.dtype) if spec.dtype != "string" else None
    if dtype is None:
        raise FeedError(
            f"input {spec.name!r} takes strings; probe cannot make them up",
            f"pass them in inputs={{{spec.name!r}: ...}}" if in_python() else f"pass --input {spec.name}=FILE",
        )
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if value_range is None:
            low, high = 0, min(spec.int_limit or DEFAULT_INT_LIMIT, int(info.max) + 1)
        else:  # the integers in [LO, HI)
            low, high = int(np.ceil(value_range[0])), int(np.ceil(value_range[1]))
            if low >= high:
                raise FeedError(
                    f"--value-range {value_range[0]:g},{value_range[1]:g} holds no integer for input {spec.name!r}"
                )
            if low < info.min or high - 1 > info.max:
                raise FeedError(
                    f"--value-range {value_range[0]:g},{value_range[1]:g} does not fit input {spec.name!r} "
                    f"({spec.dtype}: {info.min}..{info.max})"
                )
        return rng.integers(low, high, size=shape).astype(dtype)
    lo, hi = value_range if value_range else (0.0, 1.0)
    if dtype.kind == "f" and max(abs(lo), abs(hi)) > float(np.finfo(dtype).max):
        raise FeedError(f"--value-range {lo:g},{hi:g} does not fit input {spec.name!r} ({spec.dtype})")
    values = rng.random(shape)
    out = (lo * (1.0 - values) + hi * values).astype(dtype)  # no overflow in hi - lo
    if dtype.kind == "f":  # rounding to a narrower float can reach HI: keep [LO, HI)
        out = np.minimum(out, np.nextafter(dtype.type(hi), dtype.type(lo)))
    return out


def build_feeds(
    inputs: Sequence[InputSpec],
    args: Sequence[InputArg] = (),
    *,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    value_ranges: Mapping[str, tuple[float, float]] | None = None,
    batch_size: int | None = None,
    seed: int = DEFAULT_SEED,
    in_memory: Mapping[str, Any] | None = None,
    samples: int | None = None,
) -> list[Feed]:
    """One feed per model input, in the model's input order.

    ``in_memory`` arrays (the Python API's) map by input name. Files map by name (``NAME=FILE``,
    ``.npz`` keys), then unnamed ``.npy`` files by position among the inputs not yet fed. Every
    other input gets ``samples`` (else ``batch_size``, else 1, or as many as the files hold) random
    samples, sample ``i`` from its own stream ``default_rng([seed, position, i])``
    (:class:`RandomSamples`), so feeding one input from a file does not change the others, and
    the shards of a run equal the run.
    """
    shapes, value_ranges = dict(shapes or {}), dict(value_ranges or {})
    names = [spec.name for spec in inputs]
    for flag, table in (("--shape", shapes), ("--value-range", value_ranges)):
        for name in table:
            if name not in names:
                raise FeedError(f"{flag} names unknown input {name!r}", _did_you_mean(name, names))
    if batch_size is not None and batch_size < 1:
        raise UsageProblem(f"{option('--batch-size')} must be at least 1, got {batch_size}")
    if seed < 0:
        raise UsageProblem(f"{option('--seed')} must be a non-negative integer, got {seed}")

    given: dict[str, tuple[np.ndarray, str]] = {}
    for name, array in (in_memory or {}).items():
        if name not in names:
            raise FeedError(f"input {name!r} is no input of the model", _did_you_mean(name, names))
        given[name] = (array, IN_MEMORY)
    positional: list[tuple[np.ndarray, str]] = []
    for arg in args:
        arrays = read_array_file(arg.path)
        stored_as: dict[str, Any] = {}
        if None in arrays:  # .npy
            if arg.name is None:
                positional.append((arrays[None], str(arg.path)))
                continue
            arrays = {arg.name: arrays[None]}
        elif arg.name is None and len(arrays) == len(names) == 1 and not set(arrays) & set(names):
            # one input under another name (a Keras file's input_layer, its SavedModel's keras_tensor_14)
            ((stored, array),) = arrays.items()
            arrays, stored_as = {names[0]: array}, {names[0]: stored}
        elif arg.name is not None:  # NAME=file.npz: a single array, or the key NAME
            if arg.name in arrays:
                arrays = {arg.name: arrays[arg.name]}
            elif len(arrays) == 1:
                arrays = {arg.name: next(iter(arrays.values()))}
            else:
                raise FeedError(f"{arg.path} has no array {arg.name!r}", "keys: " + ", ".join(map(str, arrays)))
        for key, array in arrays.items():
            assert key is not None  # a .npy's array (key None) was renamed or set aside above
            if key not in names:
                raise FeedError(
                    f"{arg.path} holds array {key!r}, which is no input of the model", _did_you_mean(key, names)
                )
            if key in given:
                raise FeedError(f"input {key!r} is given twice ({given[key][1]} and {arg.path})")
            source = (
                str(arg.path)
                if arg.name is not None or arg.path.suffix == ".npy"
                else f"{arg.path}:{stored_as.get(key, key)}"
            )
            given[key] = (array, source)
    free = [n for n in names if n not in given]
    if len(positional) > len(free):
        raise FeedError(
            f"{len(positional)} unnamed input file(s) but only {len(free)} input(s) left to feed "
            f"({', '.join(free) or 'none'})",
            "name them with --input NAME=FILE",
        )
    given.update(zip(free, positional))

    checked = {}
    for spec in inputs:
        if spec.name in given:
            array, source = given[spec.name]
            array = array if isinstance(array, (LazyArray, StackedFiles)) else np.asarray(array)
            fed, converted_from = _check(spec, array, source)
            checked[spec.name] = Feed(spec.name, fed, source, converted_from)
    # Random inputs get as many samples as the files hold, so every input has the same count.
    from_files = [
        f.array.shape[0] for s, f in ((s, checked.get(s.name)) for s in inputs) if f and s.shape and s.shape[0] is None
    ]
    random_batch = from_files[0] if from_files else (samples or batch_size or 1)
    feeds = []
    for position, spec in enumerate(inputs):
        if spec.name in checked:
            feeds.append(checked[spec.name])
            continue
        shape = _concrete_shape(spec, shapes.get(spec.name), random_batch)
        value_range = value_ranges.get(spec.name)
        if spec.shape:  # a sample axis: seeded sample by sample, made batch by batch
            made: Any = RandomSamples(spec, shape, seed, position, value_range)
        else:
            made = random_array(spec, shape, np.random.default_rng([seed, position]), value_range)
        feeds.append(Feed(spec.name, made, "random"))
    return feeds


def sample_count(feeds: Sequence[Feed], inputs: Sequence[InputSpec]) -> int:
    """How many samples the feeds hold along the batch axis (all batched inputs must agree)."""
    counts = {f.name: int(f.array.shape[0]) for f, spec in zip(feeds, inputs) if f.array.ndim and spec.shape}
    if len(set(counts.values())) > 1:
        listing = ", ".join(f"{name}: {n}" for name, n in counts.items())
        raise FeedError(f"inputs hold different numbers of samples ({listing})")
    return next(iter(counts.values()), 1)


def plan_batches(inputs: Sequence[InputSpec], samples: int, batch_size: int | None) -> int:
    """Samples per execution: a model's fixed batch dimension wins, else --batch-size, else all at once up to 32."""
    fixed = {spec.shape[0] for spec in inputs if spec.shape and spec.shape[0] is not None}
    if len(fixed) > 1:
        raise FeedError(f"inputs have different fixed batch sizes {sorted(fixed)}")
    if fixed:
        size = fixed.pop()
        if batch_size is not None and batch_size != size:
            raise FeedError(
                f"the model's batch size is fixed at {size}; {given('--batch-size', str(batch_size))} cannot apply"
            )
        if samples % size:
            raise FeedError(f"the model's batch size is fixed at {size}, but the inputs hold {samples} samples")
        return size
    return batch_size if batch_size is not None else min(samples, DEFAULT_FILE_BATCH)


def iter_batches(feeds: Sequence[Feed], inputs: Sequence[InputSpec], batch_size: int) -> Iterator[list[Feed]]:
    """Feeds for each execution, read from the sources batch by batch."""
    samples = sample_count(feeds, inputs)
    for start in range(0, samples, batch_size):
        stop = min(start + batch_size, samples)
        yield [
            replace(f, array=np.asarray(f.array[start:stop]) if f.array.ndim and spec.shape else np.asarray(f.array))
            for f, spec in zip(feeds, inputs)
        ]
