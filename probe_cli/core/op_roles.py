"""What an op does to the values flowing through it, in the terms structural pairing needs, for the op
types of every format probe reads (TensorFlow, TensorFlow Lite, ONNX).

A converter fuses an *anchor* (a convolution, a matrix product, a pooling, an addition of two tensors)
with the *epilogue* after it (a bias or batch-norm offset, an activation) and drops *copies* (identities,
casts, quantize/dequantize pairs, reshapes, transposes). Constants and weights are folded into the ops
that read them. A new format adds its op types here, not a pairing rule of its own. Pure Python.
"""

from __future__ import annotations

import re

CONST = "const"
COPY = "copy"
ACTIVATION = "activation"
AFFINE = "affine"
ANCHOR = "anchor"

#: Ops whose output is a constant or a weight, whatever they read.
CONST_OPS = frozenset(
    {
        "Const",
        "VarHandleOp",
        "ReadVariableOp",
        "VariableV2",
        "Variable",
        "Constant",
        "ConstantOfShape",
        "Shape",
        "SHAPE",
        "Size",
        "Rank",
        "arith.constant",
    }
)
#: Ops that hold their input's values (maybe quantized, cast, reshaped or transposed): one data input.
COPY_OPS = frozenset(
    {
        "Identity",
        "IdentityN",
        "Snapshot",
        "StopGradient",
        "PreventGradient",
        "Cast",
        "CAST",
        "QUANTIZE",
        "DEQUANTIZE",
        "QuantizeLinear",
        "DequantizeLinear",
        "QuantizeV2",
        "Dequantize",
        "FakeQuantWithMinMaxVars",
        "Reshape",
        "RESHAPE",
        "Squeeze",
        "SQUEEZE",
        "ExpandDims",
        "EXPAND_DIMS",
        "Flatten",
        "Unsqueeze",
        "Transpose",
        "TRANSPOSE",
        "EnsureShape",
        "Dropout",
    }
)
#: Ops whose k-th output passes on their k-th input.
PER_OUTPUT_OPS = frozenset({"IdentityN"})
#: Ops between a tensor and the anchor that reads it, which a converter folds into the anchor (its padding).
PROLOGUE_OPS = frozenset({"Pad", "PadV2", "MirrorPad", "PAD", "PADV2", "MIRROR_PAD"}) | COPY_OPS
ACTIVATION_OPS = frozenset(
    {
        "Relu",
        "Relu6",
        "RELU",
        "RELU6",
        "RELU_N1_TO_1",
        "RELU_0_TO_1",
        "Elu",
        "ELU",
        "Selu",
        "Sigmoid",
        "LOGISTIC",
        "Tanh",
        "TANH",
        "LeakyRelu",
        "LEAKY_RELU",
        "PRelu",
        "PRELU",
        "Gelu",
        "GELU",
        "HardSwish",
        "HARD_SWISH",
        "HardSigmoid",
        "Softplus",
        "Softsign",
        "Clip",
        "Mish",
        "Swish",
    }
)
#: Ops that apply an offset or a scale: an epilogue when one operand is constant (a bias, batch norm).
AFFINE_OPS = frozenset(
    {
        "BiasAdd",
        "Add",
        "AddV2",
        "ADD",
        "Sub",
        "SUB",
        "Mul",
        "MUL",
        "RealDiv",
        "Div",
        "DIV",
        "FusedBatchNorm",
        "FusedBatchNormV3",
        "BatchNormalization",
    }
)
#: Anchor ops by family, so a TensorFlow ``Conv2D`` meets a TensorFlow Lite ``CONV_2D`` and an ONNX ``Conv``.
FAMILIES = {
    "conv": (
        "Conv2D",
        "Conv3D",
        "Conv1D",
        "DepthwiseConv2dNative",
        "CONV_2D",
        "CONV_3D",
        "DEPTHWISE_CONV_2D",
        "Conv",
        "ConvInteger",
        "QLinearConv",
    ),
    "deconv": ("Conv2DBackpropInput", "Conv3DBackpropInputV2", "TRANSPOSE_CONV", "ConvTranspose"),
    "matmul": (
        "MatMul",
        "BatchMatMul",
        "BatchMatMulV2",
        "BatchMatMulV3",
        "FULLY_CONNECTED",
        "BATCH_MATMUL",
        "Gemm",
        "MatMulInteger",
        "QLinearMatMul",
        "Einsum",
    ),
    "add": ("Add", "AddV2", "ADD", "QLinearAdd", "Sum", "AddN", "ADD_N"),
    "mul": ("Mul", "MUL", "QLinearMul"),
    "sub": ("Sub", "SUB"),
    "maxpool": ("MaxPool", "MaxPoolV2", "MAX_POOL_2D", "MaxPool3D"),
    "avgpool": ("AvgPool", "AVERAGE_POOL_2D", "AveragePool", "AvgPool3D", "QLinearAveragePool"),
    "mean": ("Mean", "MEAN", "ReduceMean", "GlobalAveragePool", "QLinearGlobalAveragePool"),
    "concat": ("ConcatV2", "Concat", "CONCATENATION", "QLinearConcat"),
    "softmax": ("Softmax", "SOFTMAX"),
    "resize": ("ResizeBilinear", "ResizeNearestNeighbor", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "Resize"),
}
_FAMILY = {op: family for family, ops in FAMILIES.items() for op in ops}


def family(op_type: str) -> str:
    """The family of an anchor op, the same in every format; an unknown op type is its own family."""
    return _FAMILY.get(op_type) or re.sub(r"[^a-z0-9]", "", op_type.lower())


def role(op_type: str, data_inputs: int, reads: int) -> str:
    """The role of an op reading ``reads`` listed tensors, ``data_inputs`` of them not constant (see the
    module docstring). An op that reads only constants is one; an op that reads nothing listed is a
    constant only if its type says so (a weight, a captured variable), since a backend may list no
    inputs for it (loop bodies). A model's inputs are the caller's to tell apart."""
    if op_type in CONST_OPS or op_type == "Placeholder" or (data_inputs == 0 and reads > 0):
        return CONST
    if data_inputs == 1:
        if op_type in COPY_OPS:
            return COPY
        if op_type in ACTIVATION_OPS:
            return ACTIVATION
        if op_type in AFFINE_OPS:
            return AFFINE
    return ANCHOR
