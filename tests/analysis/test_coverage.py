"""Which reference layers a comparison checks: by their own output, downstream (a Conv an ONNX export
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
        layers=("x", "pad", "conv", "bn", "relu", "aux", "gap"), downstream=("pad", "conv"), not_compared=("aux",)
    )
    assert coverage.compared == 6
    assert coverage.record() == {
        "layers": 7,
        "compared": 6,
        "downstream": ["pad", "conv"],
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


#: TensorFlow Lite's conversion: one CONV_2D for the Conv, the BatchNorm and the ReLU, named after the ReLU
TFLITE = [
    ("x:0", "Placeholder", (), None),
    ("pad/Pad:0", "PAD", ("x:0",), "pad"),
    ("relu/Relu:0", "CONV_2D", ("pad/Pad:0",), "relu"),
    ("gap/Mean:0", "MEAN", ("relu/Relu:0",), "gap"),
]


def test_a_fused_op_named_after_the_activation_it_fused_computes_the_chain_before_it() -> None:
    keras = graph(KERAS, LAYER_OUTPUTS)
    result = pair(keras, graph(TFLITE))
    relu = next(p for p in result.pairs if p.reference == "relu/Relu:0")
    assert (relu.candidate, relu.how) == ("relu/Relu:0", "name")
    chain = ("conv/convolution:0", "conv/BiasAdd:0", "bn/batchnorm/mul_1:0", "bn/batchnorm/add_1:0")
    assert relu.covers == (*chain, "relu/Relu:0")
    assert {t: result.fused_into_reference[t] for t in chain} == dict.fromkeys(chain, "relu/Relu:0")
    assert pair_layers(keras, relu) == ("conv", "bn", "relu")
    coverage = layer_coverage(keras, result)
    assert coverage is not None and coverage.downstream == ("conv", "bn") and coverage.not_compared == ("aux",)


def test_an_op_of_another_family_named_after_the_activation_covers_nothing() -> None:
    """A MAX_POOL_2D named ``relu/Relu`` does not compute a convolution: the Conv stays uncompared."""
    pooled = [(n, "MAX_POOL_2D" if op == "CONV_2D" else op, ins, layer) for n, op, ins, layer in TFLITE]
    keras = graph(KERAS, LAYER_OUTPUTS)
    result = pair(keras, graph(pooled))
    assert "conv/BiasAdd:0" not in result.fused_into_reference
    coverage = layer_coverage(keras, result)
    assert coverage is not None and coverage.not_compared == ("conv", "bn", "aux")


#: tf2onnx's export of a freshly initialized depthwise block: the BatchNorm's add of a zero offset is gone
DROPPED = [
    ("x:0", "Placeholder", (), None),
    ("pad/Pad:0", "Pad", ("x:0",), "pad"),
    ("conv/BiasAdd:0", "Conv", ("pad/Pad:0",), "conv"),
    ("bn/batchnorm/mul_1:0", "Mul", ("conv/BiasAdd:0",), "bn"),
    ("relu/Relu:0", "Relu", ("bn/batchnorm/mul_1:0",), "relu"),
    ("gap/Mean:0", "ReduceMean", ("relu/Relu:0",), "gap"),
]


def test_an_offset_the_converter_dropped_is_checked_by_the_pairs_reading_it() -> None:
    keras = graph(KERAS, LAYER_OUTPUTS)
    result = pair(keras, graph(DROPPED))
    assert result.fused_into_reference["bn/batchnorm/add_1:0"] == "bn/batchnorm/mul_1:0"
    coverage = layer_coverage(keras, result)
    assert coverage is not None and coverage.downstream == ("bn",) and coverage.not_compared == ("aux",)


def test_an_offset_whose_readers_read_something_else_is_not_compared() -> None:
    """The candidate's ReLU reads an op of its own, not the partner of what the add read: no claim."""
    other = [*DROPPED[:4], ("extra:0", "Neg", ("bn/batchnorm/mul_1:0",), None), *DROPPED[4:]]
    other[5] = ("relu/Relu:0", "Relu", ("extra:0",), "relu")
    keras = graph(KERAS, LAYER_OUTPUTS)
    result = pair(keras, graph(other))
    assert "bn/batchnorm/add_1:0" not in result.fused_into_reference
    coverage = layer_coverage(keras, result)
    assert coverage is not None and coverage.not_compared == ("bn", "aux")


def test_a_multi_output_batch_norm_s_other_outputs_do_not_hide_the_conv_before_it() -> None:
    """A TF1 frozen graph's FusedBatchNormV3 has six outputs reading the Conv2D; tf2onnx makes one Conv named
    after output 0."""
    tf1 = [
        ("x:0", "Placeholder", (), "x"),
        ("k:0", "Const", (), None),
        ("m/conv/Conv2D:0", "Conv2D", ("x:0", "k:0"), "m"),
        *((f"m/conv/FusedBatchNormV3:{i}", "FusedBatchNormV3", ("m/conv/Conv2D:0", "k:0"), "m") for i in range(3)),
        ("gap/Mean:0", "Mean", ("m/conv/FusedBatchNormV3:0",), "gap"),
    ]
    onnx = [
        ("x:0", "Placeholder", (), None),
        ("m/conv/FusedBatchNormV3:0", "Conv", ("x:0",), "m"),
        ("gap/Mean:0", "ReduceMean", ("m/conv/FusedBatchNormV3:0",), "gap"),
    ]
    result = pair(graph(tf1), graph(onnx))
    assert result.fused_into_reference == {"m/conv/Conv2D:0": "m/conv/FusedBatchNormV3:0"}


def test_a_rescaling_folded_into_the_first_convolution_is_compared_there() -> None:
    """TFLite folds a Rescaling layer's multiply into the next convolution's weights: the CONV_2D reads the
    input itself, and the Rescaling layer is checked where the convolution ends."""
    keras = [
        ("x:0", "Placeholder", (), "x"),
        ("k:0", "Const", (), None),
        ("rescaling/mul:0", "Mul", ("x:0", "k:0"), "rescaling"),
        ("conv/convolution:0", "Conv2D", ("rescaling/mul:0", "k:0"), "conv"),
        ("conv/BiasAdd:0", "BiasAdd", ("conv/convolution:0", "k:0"), "conv"),
        ("gap/Mean:0", "Mean", ("conv/BiasAdd:0",), "gap"),
    ]
    tflite = [
        ("x:0", "Placeholder", (), None),
        ("conv/BiasAdd:0", "CONV_2D", ("x:0",), "conv"),
        ("gap/Mean:0", "MEAN", ("conv/BiasAdd:0",), "gap"),
    ]
    outputs = ("x:0", "rescaling/mul:0", "conv/BiasAdd:0")
    result = pair(graph(keras, outputs), graph(tflite))
    assert result.fused_into_reference["rescaling/mul:0"] == "conv/BiasAdd:0"
    coverage = layer_coverage(graph(keras, outputs), result)
    assert coverage is not None and coverage.not_compared == () and "rescaling" in coverage.downstream


def test_a_reference_output_pairs_with_the_candidate_output_already_paired_by_name() -> None:
    """tf2onnx drops a zero bias, so ONNX's output is the MatMul, paired by name: the Keras output (the
    BiasAdd) pairs with it too, as the output, and the two outputs are compared."""
    keras = [
        ("x:0", "Placeholder", (), "x"),
        ("k:0", "Const", (), None),
        ("head/MatMul:0", "MatMul", ("x:0", "k:0"), "head"),
        ("head/BiasAdd:0", "BiasAdd", ("head/MatMul:0", "k:0"), "head"),
    ]
    onnx = [("x:0", "Placeholder", (), None), ("head/MatMul:0", "MatMul", ("x:0",), "head")]
    result = pair(
        ModelGraph(
            tuple(GraphNode(n, n, op, ins, layer=la) for n, op, ins, la in keras), ("x:0",), ("head/BiasAdd:0",)
        ),
        ModelGraph(tuple(GraphNode(n, n, op, ins, layer=la) for n, op, ins, la in onnx), ("x:0",), ("head/MatMul:0",)),
    )
    assert {(p.reference, p.candidate, p.how) for p in result.pairs} == {
        ("x:0", "x:0", "name"),
        ("head/MatMul:0", "head/MatMul:0", "name"),
        ("head/BiasAdd:0", "head/MatMul:0", "output"),
    }


def test_reordered_signature_outputs_pair_as_copies_of_what_they_return() -> None:
    """A SavedModel lists its outputs by key (head_b's Identity first); the Keras model returns head_a first.
    Both heads look alike, so only the copies tell which output is which."""

    def alike(spec: list[tuple[str, str, tuple[str, ...]]], outputs: tuple[str, ...]) -> ModelGraph:
        nodes = tuple(GraphNode(n, n, op, ins, dtype="float32", shape=(None, 10)) for n, op, ins in spec)
        return ModelGraph(nodes, ("x:0",), outputs)

    heads = [
        ("x:0", "Placeholder", ()),
        ("w:0", "Const", ()),
        ("head_a/MatMul:0", "MatMul", ("x:0", "w:0")),
        ("head_b/MatMul:0", "MatMul", ("x:0", "w:0")),
    ]
    saved = alike(
        [*heads, ("Identity:0", "Identity", ("head_b/MatMul:0",)), ("Identity_1:0", "Identity", ("head_a/MatMul:0",))],
        ("Identity:0", "Identity_1:0"),
    )
    result = pair(saved, alike(heads, ("head_a/MatMul:0", "head_b/MatMul:0")))
    found = {(p.reference, p.candidate) for p in result.pairs}
    assert {("Identity:0", "head_b/MatMul:0"), ("Identity_1:0", "head_a/MatMul:0")} <= found
    assert ("Identity:0", "head_a/MatMul:0") not in found


def test_a_scale_the_candidate_still_computes_is_not_taken_for_a_dropped_one() -> None:
    """Both sides scale, activate and convolve before a residual add; only the input and the add pair. The
    reference's scale is not 'dropped': the candidate's input feeds an unpaired MUL of its own."""
    keras = [
        ("x:0", "Placeholder", (), "x"),
        ("k:0", "Const", (), None),
        ("scale/mul:0", "Mul", ("x:0", "k:0"), "scale"),
        ("act/Relu:0", "Relu", ("scale/mul:0",), "act"),
        ("conv/Conv2D:0", "Conv2D", ("act/Relu:0", "k:0"), "conv"),
        ("gap/Mean:0", "AddV2", ("x:0", "conv/Conv2D:0"), "gap"),
    ]
    tflite = [
        ("x:0", "Placeholder", (), None),
        ("k:0", "Const", (), None),
        ("m2", "MUL", ("x:0", "k:0"), None),
        ("r2", "RELU", ("m2",), None),
        ("k2", "CONV_2D", ("r2", "k:0"), None),
        ("gap/Mean:0", "ADD", ("x:0", "k2"), None),
    ]
    outputs = ("x:0", "scale/mul:0", "act/Relu:0", "conv/Conv2D:0")
    result = pair(graph(keras, outputs), graph(tflite))
    assert "scale/mul:0" not in result.fused_into_reference
