"""Unit tests of ``probe_cli.resolve`` on hand-built indexes (no TensorFlow)."""

from __future__ import annotations

import pytest

from probe_cli.core.errors import USAGE, PatternError, UsageProblem, python_call
from probe_cli.core.resolve import compile_pattern, match_layers, resolve, tensor_matches
from probe_cli.core.types import InputSpec, LayerInfo, ModelIndex, TensorInfo

#: (name, op type, layer) in graph order: a Mask-R-CNN-like model with a skip connection,
#: a custom ``ROI`` layer holding NMS ops, a two-output op, a nested model and an op outside layers.
TENSORS: list[tuple[str, str, str | None]] = [
    ("image:0", "Placeholder", "image"),
    ("conv1/Conv2D:0", "Conv2D", "conv1"),
    ("conv1/Relu:0", "Relu", "conv1"),
    ("conv2/Relu:0", "Relu", "conv2"),
    ("skip/add:0", "AddV2", "skip"),
    ("ROI/unstack:0", "Unpack", "ROI"),
    ("ROI/unstack:1", "Unpack", "ROI"),
    ("ROI/map/while/NonMaxSuppressionV3:0", "NonMaxSuppressionV3", "ROI"),
    ("ROI/NonMaxSuppressionV3_1:0", "NonMaxSuppressionV3", "ROI"),
    ("ROI/stack:0", "Pack", "ROI"),
    ("head/dense/MatMul:0", "MatMul", "head/dense"),
    ("head/dense/BiasAdd:0", "BiasAdd", "head/dense"),
    ("Identity:0", "Identity", None),
]

#: Layers in index order; their outputs deliberately listed out of graph order for ``skip``.
LAYERS: list[tuple[str, str, tuple[str, ...]]] = [
    ("image", "InputLayer", ("image:0",)),
    ("conv1", "Conv2D", ("conv1/Relu:0",)),
    ("conv2", "Conv2D", ("conv2/Relu:0",)),
    ("skip", "Add", ("skip/add:0",)),
    ("ROI", "ProposalLayer", ("ROI/stack:0", "ROI/unstack:1")),
    ("head", "Functional", ("head/dense/BiasAdd:0",)),
    ("head/dense", "Dense", ("head/dense/BiasAdd:0",)),
    ("ghost", "Dense", ("not/in/index:0",)),
]


def make_index(
    tensors: list[tuple[str, str, str | None]] = TENSORS, layers: list[tuple[str, str, tuple[str, ...]]] = LAYERS
) -> ModelIndex:
    """A ModelIndex built by hand, tensors numbered in list order."""
    infos = tuple(
        TensorInfo(
            name=name,
            graph_name=f"model_1/{name}",
            op_type=op,
            dtype="float32",
            shape=(None, 4),
            layer=layer,
            order=i,
        )
        for i, (name, op, layer) in enumerate(tensors)
    )
    return ModelIndex(
        model_format="keras",
        inputs=(InputSpec("image", "float32", (None, 4), "image:0"),),
        outputs=("Identity:0",),
        layers=tuple(LayerInfo(n, c, 0, outs) for n, c, outs in layers),
        tensors=infos,
    )


@pytest.fixture
def index() -> ModelIndex:
    """The sample index."""
    return make_index()


def names(tensors: list[TensorInfo]) -> list[str]:
    """Names of resolved tensors."""
    return [t.name for t in tensors]


def no_match(index: ModelIndex, tensors: tuple[str, ...] = (), layers: tuple[str, ...] = ()) -> PatternError:
    """The PatternError a resolve call raises."""
    with pytest.raises(PatternError) as info:
        resolve(index, tensors, layers)
    return info.value


# --- --tensor semantics -------------------------------------------------------------------------


def test_full_name_selects_one_tensor(index: ModelIndex) -> None:
    assert names(resolve(index, ["conv1/Relu:0"])) == ["conv1/Relu:0"]


def test_op_name_selects_every_output_of_the_op(index: ModelIndex) -> None:
    assert names(resolve(index, ["ROI/unstack"])) == ["ROI/unstack:0", "ROI/unstack:1"]


def test_output_index_selects_one_output(index: ModelIndex) -> None:
    assert names(resolve(index, ["ROI/unstack:1"])) == ["ROI/unstack:1"]


def test_pattern_must_match_whole_name_not_a_substring(index: ModelIndex) -> None:
    error = no_match(index, ("Relu",))
    assert error.message == "--tensor 'Relu' matches no tensor"


def test_prefix_of_a_name_does_not_match(index: ModelIndex) -> None:
    no_match(index, ("conv1/Rel",))


def test_wildcard_pattern_in_graph_order(index: ModelIndex) -> None:
    assert names(resolve(index, [".*NonMax.*"])) == [
        "ROI/map/while/NonMaxSuppressionV3:0",
        "ROI/NonMaxSuppressionV3_1:0",
    ]


def test_dot_star_selects_everything_in_graph_order(index: ModelIndex) -> None:
    assert names(resolve(index, [".*"])) == [name for name, _, _ in TENSORS]


def test_results_follow_graph_order_not_pattern_order(index: ModelIndex) -> None:
    got = names(resolve(index, ["Identity:0", "ROI/stack:0", "image:0", "conv2/Relu:0"]))
    assert got == ["image:0", "conv2/Relu:0", "ROI/stack:0", "Identity:0"]


def test_overlapping_patterns_give_no_duplicates(index: ModelIndex) -> None:
    got = names(resolve(index, ["conv.*", "conv1/Relu:0", "conv1/Relu", ".*Relu:0"]))
    assert got == ["conv1/Conv2D:0", "conv1/Relu:0", "conv2/Relu:0"]


def test_regex_metacharacters_and_alternation(index: ModelIndex) -> None:
    assert names(resolve(index, [r"conv[12]/Relu:0|skip/add"])) == ["conv1/Relu:0", "conv2/Relu:0", "skip/add:0"]


def test_op_outside_layers_is_resolvable(index: ModelIndex) -> None:
    assert names(resolve(index, ["Identity"])) == ["Identity:0"]


def test_no_patterns_selects_nothing(index: ModelIndex) -> None:
    assert resolve(index) == []
    assert resolve(index, [], []) == []


def test_resolved_objects_are_the_index_entries(index: ModelIndex) -> None:
    (got,) = resolve(index, ["skip/add:0"])
    assert got is index.tensor("skip/add:0")
    assert got.order == 4 and got.layer == "skip" and got.op_type == "AddV2"


def test_tensor_matches_uses_name_or_op_name(index: ModelIndex) -> None:
    tensor = index.tensor("ROI/unstack:1")
    assert tensor_matches(compile_pattern("ROI/unstack"), tensor)
    assert tensor_matches(compile_pattern("ROI/unstack:1"), tensor)
    assert not tensor_matches(compile_pattern("ROI/unstack:0"), tensor)
    assert not tensor_matches(compile_pattern("unstack"), tensor)


# --- --layer semantics --------------------------------------------------------------------------


def test_layer_selects_its_outputs(index: ModelIndex) -> None:
    assert names(resolve(index, layer_patterns=["conv1"])) == ["conv1/Relu:0"]


def test_layer_pattern_in_graph_order(index: ModelIndex) -> None:
    assert names(resolve(index, layer_patterns=["ROI", "conv.*"])) == [
        "conv1/Relu:0",
        "conv2/Relu:0",
        "ROI/unstack:1",
        "ROI/stack:0",
    ]


def test_layer_pattern_is_fullmatch(index: ModelIndex) -> None:
    error = no_match(index, layers=("conv",))
    assert error.message == "--layer 'conv' matches no layer"
    assert error.hint is not None and "patterns must match the whole name; try '.*conv.*'" in error.hint


@pytest.mark.parametrize(
    ("pattern", "suggested"),
    [
        ("NonMax.*", ".*NonMax.*"),
        (".*NonMax", ".*NonMax.*"),
        ("NonMax", ".*NonMax.*"),
        ("Foo|NonMax", ".*(Foo|NonMax).*"),
    ],
)
def test_the_widened_pattern_reads_as_written_by_hand(index: ModelIndex, pattern: str, suggested: str) -> None:
    """'conv.*' drew the suggestion '.*conv.*.*'; an alternation widened without a group means something else."""
    hint = no_match(index, (pattern,)).hint
    example = "ROI/map/while/NonMaxSuppressionV3:0"
    assert hint == f"patterns must match the whole name; try {suggested!r} (it would match e.g. {example})"


def test_python_callers_read_their_own_arguments(index: ModelIndex) -> None:
    """Errors raised under the Python API name ``tensors=``/``layers=``, not the CLI's flags."""
    with python_call():
        assert no_match(index, ("conv1/Relu:0", "NonMax")).message == "tensors='NonMax' matches no tensor"
        assert no_match(index, layers=("Conv1",)).message == "layers='Conv1' matches no layer"
        assert no_match(index, ("qqqqqqqqqqqqqqqqqqqqqqqqq",)).hint == "Model.tensors lists the names"
        with pytest.raises(PatternError, match=r"^tensors='\(' is not a valid regular expression"):
            resolve(index, ["("])
    assert no_match(index, ("NonMax",)).message == "--tensor 'NonMax' matches no tensor"


def test_nested_layer_names(index: ModelIndex) -> None:
    assert [layer.name for layer in match_layers(index, ["head/.*"])] == ["head/dense"]
    assert names(resolve(index, layer_patterns=["head.*"])) == ["head/dense/BiasAdd:0"]


def test_layer_outputs_missing_from_index_are_skipped(index: ModelIndex) -> None:
    assert resolve(index, layer_patterns=["ghost"]) == []


def test_tensor_and_layer_patterns_combine_without_duplicates(index: ModelIndex) -> None:
    got = names(resolve(index, ["conv1/Relu:0", "Identity:0"], ["conv1", "skip"]))
    assert got == ["conv1/Relu:0", "skip/add:0", "Identity:0"]


def test_match_layers_in_index_order(index: ModelIndex) -> None:
    layers = match_layers(index, ["skip", "image", "conv2"])
    assert [layer.name for layer in layers] == ["image", "conv2", "skip"]


def test_match_layers_no_patterns(index: ModelIndex) -> None:
    assert match_layers(index, []) == []


# --- errors -------------------------------------------------------------------------------------


def test_no_match_error_message_and_hint(index: ModelIndex) -> None:
    error = no_match(index, ("NonMax",))
    assert isinstance(error, UsageProblem) and error.exit_code == USAGE == 2
    assert error.message == "--tensor 'NonMax' matches no tensor"
    assert error.hint == (
        "patterns must match the whole name; try '.*NonMax.*' (it would match e.g. ROI/map/while/NonMaxSuppressionV3:0)"
    )
    assert str(error) == f"{error.message} ({error.hint})"
    assert "\n" not in str(error)


def test_no_match_case_hint_names_the_existing_tensor(index: ModelIndex) -> None:
    error = no_match(index, ("CONV1/RELU:0",))
    assert error.hint == "names are case-sensitive; did you mean conv1/Relu:0?"


def test_no_match_names_closest_tensors(index: ModelIndex) -> None:
    error = no_match(index, ("conv9/Relu:0",))
    assert error.hint is not None and error.hint.startswith("closest: ")
    closest = error.hint.removeprefix("closest: ").split(", ")
    assert 1 <= len(closest) <= 3
    assert "conv1/Relu:0" in closest and "conv2/Relu:0" in closest
    assert all(name in {n for t in index.tensors for n in (t.name, t.op_name)} for name in closest)


def test_no_match_without_anything_close(index: ModelIndex) -> None:
    error = no_match(index, ("qqqqqqqqqqqqqqqqqqqqqqqqq",))
    assert error.hint == "run 'probe list MODEL' to see the names"


def test_every_pattern_must_match(index: ModelIndex) -> None:
    error = no_match(index, ("conv1/Relu:0", "NonMax"))
    assert error.message == "--tensor 'NonMax' matches no tensor"


def test_every_layer_pattern_must_match(index: ModelIndex) -> None:
    error = no_match(index, ("conv1/Relu:0",), ("conv1", "Conv1"))
    assert error.message == "--layer 'Conv1' matches no layer"
    assert error.hint == "names are case-sensitive; did you mean conv1?"


def test_empty_index_no_match(index: ModelIndex) -> None:
    empty = make_index([], [])
    error = no_match(empty, ("x",))
    assert error.hint == "run 'probe list MODEL' to see the names"


@pytest.mark.parametrize("pattern", ["(", "[a-", "a**", "(?P<x>a)(?P<x>b)", "\\", "a{2,1}"])
@pytest.mark.parametrize("option", ["--tensor", "--layer"])
def test_bad_regex_is_a_pattern_error(index: ModelIndex, pattern: str, option: str) -> None:
    with pytest.raises(PatternError) as info:
        if option == "--tensor":
            resolve(index, [pattern])
        else:
            resolve(index, layer_patterns=[pattern])
    assert info.value.exit_code == 2
    assert info.value.message.startswith(f"{option} {pattern!r} is not a valid regular expression: ")


@pytest.mark.parametrize("pattern", ["a{4294967296}", "(" * 5000 + ")" * 5000])
def test_pathological_regex_is_a_pattern_error(pattern: str) -> None:
    """Patterns that make ``re`` raise OverflowError/RecursionError are usage errors too."""
    with pytest.raises(PatternError, match="is not a valid regular expression"):
        compile_pattern(pattern)


def test_bad_regex_checked_before_matching(index: ModelIndex) -> None:
    """A bad pattern is reported even when another pattern matches nothing first."""
    with pytest.raises(PatternError, match="not a valid regular expression"):
        resolve(index, ["nothing", "("])


def test_large_linear_index_resolves() -> None:
    """A deep, long graph: no recursion limits, every tensor once, in order."""
    chain = [(f"block_{i}/op:0", "Relu", f"block_{i}") for i in range(20000)]
    big = make_index(chain, [(f"block_{i}", "Dense", (f"block_{i}/op:0",)) for i in range(20000)])
    got = resolve(big, [r"block_1\d*/op"], ["block_19999"])
    expected = [name for name, _, _ in chain if name.startswith("block_1")] + ["block_19999/op:0"]
    assert names(got) == sorted(set(expected), key=lambda n: int(n.split("_")[1].split("/")[0]))
