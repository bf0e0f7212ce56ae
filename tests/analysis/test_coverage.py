"""Which reference layers a comparison checks: by their own output, inside a fused op (a Conv an ONNX export
folded with its BatchNorm), or not at all; and the layers a first divergence on a fused op names (no
TensorFlow)."""

from __future__ import annotations

from dataclasses import replace

from probe_cli.analysis.coverage import LayerCoverage, layer_coverage, pair_layers
from probe_cli.analysis.diff import DIFFERS, TensorDiff
from probe_cli.analysis.pairing import BY_FUSED, pair
from probe_cli.core.graph import GraphNode, ModelGraph

#: name, op type, op inputs, layer; the last tensor of each layer (but the weight's) is its output
KERAS = [
    ("x:0", "Placeholder", (), "x"),
    ("k:0", "Const", (), None),
    ("pad/Pad:0", "Pad", ("x:0",), "pad"),
    ("conv/convolution:0", "Conv2D", ("pad/Pad:0", "k:0"), "conv"),
    ("conv/BiasAdd:0", "BiasAdd", ("conv/convolution:0", "k:0"), "conv"),
    ("bn/batchnorm/mul_1:0", "Mul", ("conv/BiasAdd:0", "k:0"), "bn"),
    ("bn/batchnorm/add_1:0", "AddV2", ("bn/batchnorm/mul_1:0", "k:0"), "bn"),
    ("relu/Relu:0", "Relu", ("bn/batchnorm/add_1:0",), "relu"),
    ("aux/Sigmoid:0", "Sigmoid", ("relu/Relu:0",), "aux"),  # a side branch the export dropped
    ("gap/Mean:0", "Mean", ("relu/Relu:0",), "gap"),
]
LAYER_OUTPUTS = ("x:0", "pad/Pad:0", "conv/BiasAdd:0", "bn/batchnorm/add_1:0", "relu/Relu:0", "aux/Sigmoid:0")
#: tf2onnx's export: one Conv for the Pad, the Conv and the BatchNorm, named after the BatchNorm's mul_1
ONNX = [
    ("x:0", "Placeholder", (), None),
    ("bn/batchnorm/mul_1__6:0", "Transpose", ("x:0",), None),
    ("bn/batchnorm/mul_1:0", "Conv", ("bn/batchnorm/mul_1__6:0",), "bn"),
    ("relu/Relu:0", "Relu", ("bn/batchnorm/mul_1:0",), "relu"),
    ("gap/Mean:0", "ReduceMean", ("relu/Relu:0",), "gap"),
]


def graph(spec: list[tuple[str, str, tuple[str, ...], str | None]], layer_outputs: tuple[str, ...] = ()) -> ModelGraph:
    nodes = tuple(GraphNode(n, n, op, ins, layer=layer) for n, op, ins, layer in spec)
    return ModelGraph(nodes, ("x:0",), ("gap/Mean:0",), layer_outputs=layer_outputs + ("gap/Mean:0",))


def test_a_conv_folded_with_its_batch_norm_is_compared_inside_the_fused_op() -> None:
    keras = graph(KERAS, LAYER_OUTPUTS)
    result = pair(keras, graph(ONNX))
    fused = next(p for p in result.pairs if p.how == BY_FUSED)
    assert (fused.reference, fused.candidate) == ("bn/batchnorm/add_1:0", "bn/batchnorm/mul_1:0")
    # the chain starts at the Conv the fused op is, not at the Mul it is named after
    assert fused.chain == ("Conv2D", "BiasAdd", "Mul", "AddV2")
    assert fused.covers == (
        "pad/Pad:0",
        "conv/convolution:0",
        "conv/BiasAdd:0",
        "bn/batchnorm/mul_1:0",
        "bn/batchnorm/add_1:0",
    )
    assert result.fused_into_reference["conv/BiasAdd:0"] == result.fused_into_reference["pad/Pad:0"] == fused.candidate
    assert pair_layers(keras, fused) == ("pad", "conv", "bn")
    coverage = layer_coverage(keras, result)
    assert coverage == LayerCoverage(
        layers=("x", "pad", "conv", "bn", "relu", "aux", "gap"), fused=("pad", "conv"), not_compared=("aux",)
    )
    assert coverage.compared == 6
    assert coverage.record() == {
        "layers": 7,
        "compared": 6,
        "inside_fused_op": ["pad", "conv"],
        "not_compared": ["aux"],
    }


def test_only_the_tensors_compared_or_left_unpaired_count() -> None:
    """A selection (``--tensor``, what an archive stores) leaves the other layers out of the count."""
    keras = graph(KERAS, LAYER_OUTPUTS)
    selected = pair(keras, graph(ONNX)).restricted({"x:0", "relu/Relu:0", "aux/Sigmoid:0"}, {"x:0", "relu/Relu:0"})
    assert layer_coverage(keras, selected) == LayerCoverage(("x", "relu", "aux"), (), ("aux",))


def test_a_graph_without_layers_has_no_coverage() -> None:
    bare = ModelGraph(tuple(GraphNode(n, n, op, ins) for n, op, ins, _ in KERAS), ("x:0",), ("gap/Mean:0",))
    assert layer_coverage(bare, pair(bare, graph(ONNX))) is None


def test_a_first_divergence_on_a_fused_op_names_every_layer_of_its_chain() -> None:
    def at(paired_by: str, layers: tuple[str, ...]) -> str:
        found = TensorDiff("bn/batchnorm/mul_1:0", "Conv", "bn", DIFFERS, (1,), (1,), "f", "f", 1)
        return replace(found, paired_by=paired_by, layers=layers).place()

    assert at(BY_FUSED, ("pad", "conv", "bn")) == "layers pad + conv + bn, fused into one Conv"
    assert at(BY_FUSED, ("bn",)) == "op Conv, layer bn"
    assert at("name", ("bn",)) == "op Conv, layer bn"
