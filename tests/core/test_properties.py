"""Property tests (hypothesis) of the resolver, the input-spec parsers and the archive round trip (no TensorFlow)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import h5py
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from probe_cli.archive.format import dataset_path
from probe_cli.archive.reader import list_tensors, open_archive, read_attrs, read_inputs
from probe_cli.archive.writer import write_archive
from probe_cli.core.errors import PatternError, UsageProblem
from probe_cli.core.names import unique_names
from probe_cli.core.resolve import compile_pattern, resolve
from probe_cli.core.types import LayerInfo, ModelIndex, TensorInfo
from probe_cli.feed import Feed, InputArg, parse_input_arg, parse_range_arg, parse_shape_arg

#: Modest example counts: the whole file runs in a few seconds on a 2-core CI machine.
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- resolver -----------------------------------------------------------------------------------

segment = st.text(alphabet="abcAB_1", min_size=1, max_size=4)
op_names = st.lists(segment, min_size=1, max_size=3).map("/".join)
tensor_names = st.tuples(op_names, st.integers(0, 2)).map(lambda t: f"{t[0]}:{t[1]}")
#: Patterns built from pieces that often match the generated names, sometimes not at all.
pattern_piece = st.sampled_from(["a", "b", "A", "_", "1", ".", ".*", "/", ":0", ":1", "[ab]", "(a|b)", "\\w+", "a?"])
patterns = st.lists(pattern_piece, min_size=1, max_size=5).map("".join)


@st.composite
def indexes(draw: st.DrawFn) -> ModelIndex:
    """A ModelIndex of unique tensor names and layers whose outputs are some of them."""
    names = draw(st.lists(tensor_names, min_size=0, max_size=25, unique=True))
    tensors = tuple(
        TensorInfo(n, f"g/{n}", "Op", "float32", None, n.split("/")[0], order=i) for i, n in enumerate(names)
    )
    layer_names = draw(st.lists(segment, max_size=5, unique=True))
    layers = tuple(
        LayerInfo(name, "Dense", 0, tuple(draw(st.lists(st.sampled_from(names), max_size=3))) if names else ())
        for name in layer_names
    )
    return ModelIndex("keras", (), (), layers, tensors)


def brute_force(index: ModelIndex, tensor_patterns: list[str], layer_patterns: list[str]) -> list[str] | None:
    """What resolve must return, or None when some pattern matches nothing."""
    wanted: set[str] = set()
    for pattern in tensor_patterns:
        hits = {t.name for t in index.tensors if re.fullmatch(pattern, t.name) or re.fullmatch(pattern, t.op_name)}
        if not hits:
            return None
        wanted |= hits
    for pattern in layer_patterns:
        layers = [layer for layer in index.layers if re.fullmatch(pattern, layer.name)]
        if not layers:
            return None
        wanted |= {n for layer in layers for n in layer.outputs}
    return [t.name for t in index.tensors if t.name in wanted]


@FAST
@given(indexes(), st.lists(patterns, max_size=3), st.lists(patterns, max_size=2))
def test_resolve_equals_brute_force_fullmatch(index: ModelIndex, tensors: list[str], layers: list[str]) -> None:
    expected = brute_force(index, tensors, layers)
    if expected is None:
        try:
            resolve(index, tensors, layers)
        except PatternError as error:
            assert "matches no" in error.message and error.exit_code == 2
        else:
            raise AssertionError("a pattern matching nothing must raise PatternError")
        return
    got = [t.name for t in resolve(index, tensors, layers)]
    assert got == expected
    assert len(got) == len(set(got))  # no duplicates
    orders = [index.tensor(n).order for n in got]
    assert orders == sorted(orders)  # a subsequence of graph order


@FAST
@given(indexes())
def test_every_tensor_resolves_by_its_escaped_name(index: ModelIndex) -> None:
    for tensor in index.tensors[:5]:
        assert [t.name for t in resolve(index, [re.escape(tensor.name)])] == [tensor.name]


@FAST
@given(st.text(max_size=30))
def test_compile_pattern_never_raises_anything_but_pattern_error(text: str) -> None:
    try:
        compile_pattern(text)
    except PatternError as error:
        assert error.exit_code == 2 and "\n" not in error.message.replace(repr(text), "")


@FAST
@given(indexes(), st.text(max_size=15))
def test_resolve_on_arbitrary_text_raises_only_pattern_error(index: ModelIndex, text: str) -> None:
    try:
        resolve(index, [text])
    except PatternError:
        pass


@FAST
@given(st.lists(st.tuples(st.text("ab/", max_size=4), st.text("ab/", max_size=4)), max_size=12))
def test_unique_names_are_unique(pairs: list[tuple[str, str]]) -> None:
    graph_unique = list({g: n for g, n in pairs}.items())  # graph names are unique in a graph
    result = unique_names(graph_unique)
    assert set(result) == {g for g, _ in graph_unique}
    assert len(set(result.values())) == len(result)
    assert all(result[g] in (n, g) for g, n in graph_unique)


# --- input-spec parsers -------------------------------------------------------------------------

spec_text = st.one_of(
    st.text(max_size=30),
    st.text(alphabet="ab=,x-0123456789.eEinfa+ _", max_size=20),
)


@FAST
@given(spec_text)
def test_parse_shape_arg_only_raises_usage_problem(text: str) -> None:
    try:
        name, dims = parse_shape_arg(text)
    except UsageProblem as error:
        assert error.exit_code == 2 and error.message.startswith(f"--shape {text!r} ")
        return
    assert name and "=" not in name
    assert dims and all(isinstance(d, int) and d > 0 for d in dims)


@FAST
@given(spec_text)
def test_parse_range_arg_only_raises_usage_problem(text: str) -> None:
    try:
        name, (lo, hi) = parse_range_arg(text)
    except UsageProblem as error:
        assert error.exit_code == 2 and error.message.startswith(f"--value-range {text!r} ")
        return
    assert name and "=" not in name
    assert np.isfinite(lo) and np.isfinite(hi) and lo < hi


@FAST
@given(spec_text, st.lists(st.text(max_size=5), max_size=3))
def test_parse_input_arg_never_raises(text: str, names: list[str]) -> None:
    arg = parse_input_arg(text, names)
    assert isinstance(arg, InputArg)
    if arg.name is None:
        assert arg.path == Path(text)
    else:
        assert text == f"{arg.name}={arg.path}" or text.startswith(f"{arg.name}=")
        assert not names or arg.name in names


input_names = st.text(alphabet="abcxyz_019", min_size=1, max_size=8)


@FAST
@given(input_names, st.lists(st.integers(1, 10**6), min_size=1, max_size=5), st.sampled_from([",", "x"]))
def test_parse_shape_arg_round_trip(name: str, dims: list[int], sep: str) -> None:
    assert parse_shape_arg(f"{name}={sep.join(map(str, dims))}") == (name, tuple(dims))


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@FAST
@given(input_names, finite, finite)
def test_parse_range_arg_round_trip(name: str, a: float, b: float) -> None:
    text = f"{name}={a!r},{b!r}"
    if a < b:
        assert parse_range_arg(text) == (name, (a, b))
    else:
        try:
            parse_range_arg(text)
        except UsageProblem as error:
            assert error.message == f"--value-range {text!r} needs finite LO < HI"
        else:
            raise AssertionError("LO >= HI must be refused")


# --- archive round trip -------------------------------------------------------------------------

dtypes = st.sampled_from(["float16", "float32", "float64", "int8", "int32", "int64", "uint8", "uint16", "bool"])
h5_segment = st.text(alphabet="abXY09_-.>", min_size=1, max_size=6).filter(lambda s: s not in (".", ".."))
archive_names = st.tuples(st.lists(h5_segment, min_size=1, max_size=3), st.integers(0, 3)).map(
    lambda t: f"{'/'.join(t[0])}:{t[1]}"
)


@st.composite
def tensor_sets(draw: st.DrawFn) -> list[tuple[TensorInfo, np.ndarray]]:
    """Random arrays under unique random names, in a random graph order."""
    names = draw(st.lists(archive_names, min_size=0, max_size=6, unique=True))
    orders = draw(st.permutations(range(len(names))))
    out = []
    for name, order in zip(names, orders):
        dtype = draw(dtypes)
        array = draw(hnp.arrays(np.dtype(dtype), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)))
        layer = draw(st.none() | h5_segment)
        out.append((TensorInfo(name, f"model_1/{name}", "Op", dtype, None, layer, order), array))
    return out


@SLOW
@given(
    tensor_sets(),
    st.dictionaries(input_names, hnp.arrays(np.float32, hnp.array_shapes(max_dims=2)), max_size=2),
    st.integers(0, 2**31),
)
def test_archive_round_trip(
    tensors: list[tuple[TensorInfo, np.ndarray]], inputs: dict[str, np.ndarray], seed: int
) -> None:
    feeds = [Feed(name, array, "random") for name, array in inputs.items()]
    with tempfile.TemporaryDirectory() as tmp:
        path = write_archive(
            Path(tmp) / "a.h5", tensors, feeds, {"probe_version": "0", "seed": seed, "command": "probe"}, seed=seed
        )
        assert sorted(p.name for p in Path(tmp).iterdir()) == ["a.h5"]
        with h5py.File(path, "r") as f:  # plain h5py: no probe needed to read it
            for tensor, value in tensors:
                ds = f[dataset_path(tensor.name)]
                assert ds.dtype == value.dtype and ds.shape == value.shape
                np.testing.assert_array_equal(ds[()], value)
                assert ds.attrs["name"] == tensor.name and ds.attrs["graph_name"] == tensor.graph_name
                assert ds.attrs["layer"] == (tensor.layer or "") and ds.attrs["dtype"] == tensor.dtype
        with open_archive(path) as f:
            stored = list_tensors(f)
            assert [t.name for t in stored] == [t.name for t, _ in sorted(tensors, key=lambda p: p[0].order)]
            assert read_attrs(f)["seed"] == seed
            back = read_inputs(f)
        assert set(back) == set(inputs)
        for name, array in inputs.items():
            np.testing.assert_array_equal(back[name][0], array)
            assert back[name][1]["seed"] == seed
