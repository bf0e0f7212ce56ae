"""Regenerates the bundled sample models (``make models``).

Every model is small (well under 2 MB) and built from fixed seeds, so the
weights are the same on every run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from map_fn_layers import MapFnProposals  # noqa: E402
from mini_rcnn_layers import ProposalLayer  # noqa: E402
from subclassed_model import TinyClassifier  # noqa: E402

IMAGES_PER_BATCH = 2


def cnn() -> keras.Model:
    """A small Sequential CNN classifier."""
    return keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1), name="image"),
            keras.layers.Conv2D(8, 3, activation="relu", name="conv1"),
            keras.layers.MaxPooling2D(name="pool1"),
            keras.layers.Conv2D(16, 3, activation="relu", name="conv2"),
            keras.layers.BatchNormalization(name="bn2"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(10, activation="softmax", name="probs"),
        ],
        name="cnn",
    )


def multi_io() -> keras.Model:
    """Two inputs (an image and integer token ids feeding an Embedding), two outputs."""
    image = keras.Input(shape=(32, 32, 3), name="image")
    tokens = keras.Input(shape=(12,), dtype="int32", name="tokens")
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="img_conv")(image)
    x = keras.layers.GlobalAveragePooling2D(name="img_pool")(x)
    t = keras.layers.Embedding(input_dim=50, output_dim=8, name="embed")(tokens)
    t = keras.layers.GlobalAveragePooling1D(name="tok_pool")(t)
    joint = keras.layers.Concatenate(name="joint")([x, t])
    joint = keras.layers.Dense(16, activation="relu", name="fuse")(joint)
    label = keras.layers.Dense(3, activation="softmax", name="label")(joint)
    score = keras.layers.Dense(1, name="score")(joint)
    return keras.Model([image, tokens], [label, score], name="multi_io")


def mini_rcnn() -> keras.Model:
    """A Mask-R-CNN-like detector: backbone, box and score heads, NMS in a custom layer."""
    image = keras.Input(shape=(32, 32, 3), batch_size=IMAGES_PER_BATCH, name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(image)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv3")(x)
    # 8x8 feature map, one anchor per cell: 64 candidate boxes per image.
    boxes = keras.layers.Conv2D(4, 1, activation="sigmoid", name="rpn_bbox_conv")(x)
    boxes = keras.layers.Reshape((64, 4), name="rpn_bbox")(boxes)
    scores = keras.layers.Conv2D(1, 1, activation="sigmoid", name="rpn_class_conv")(x)
    scores = keras.layers.Reshape((64,), name="rpn_class")(scores)
    rois = ProposalLayer(proposal_count=10, nms_threshold=0.5, images_per_batch=IMAGES_PER_BATCH, name="ROI")(
        [boxes, scores]
    )
    return keras.Model(image, [rois, scores], name="mini_rcnn")


def map_fn_nms() -> keras.Model:
    """Box and score heads on any batch size, NMS per image inside ``tf.map_fn`` in a custom layer."""
    image = keras.Input(shape=(16, 16, 3), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv1")(image)
    # 8x8 feature map, one anchor per cell: 64 candidate boxes per image.
    boxes = keras.layers.Conv2D(4, 1, activation="sigmoid", name="bbox_conv")(x)
    boxes = keras.layers.Reshape((64, 4), name="bbox")(boxes)
    scores = keras.layers.Conv2D(1, 1, activation="sigmoid", name="class_conv")(x)
    scores = keras.layers.Reshape((64,), name="class")(scores)
    rois = MapFnProposals(proposal_count=6, nms_threshold=0.5, name="proposals")([boxes, scores])
    return keras.Model(image, [rois, scores], name="map_fn_nms")


def lstm() -> keras.Model:
    """Integer token ids -> Embedding -> LSTM -> softmax (the LSTM's step ops live in a while loop)."""
    tokens = keras.Input(shape=(12,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(input_dim=30, output_dim=8, name="embed")(tokens)
    x = keras.layers.LSTM(6, name="lstm")(x)
    probs = keras.layers.Dense(3, activation="softmax", name="probs")(x)
    return keras.Model(tokens, probs, name="lstm_model")


def nested_shared() -> keras.Model:
    """A Sequential ``inner`` used as a layer; a Dense ``shared`` called on ``inner``'s output and on ``b``."""
    inner = keras.Sequential(
        [
            keras.Input(shape=(6,)),
            keras.layers.Dense(5, activation="relu", name="d1"),
            keras.layers.Dense(4, name="d2"),
        ],
        name="inner",
    )
    shared = keras.layers.Dense(4, activation="tanh", name="shared")
    a = keras.Input(shape=(6,), name="a")
    b = keras.Input(shape=(4,), name="b")
    merged = keras.layers.Add(name="merge")([shared(inner(a)), shared(b)])
    head = keras.layers.Dense(2, name="head")(merged)
    return keras.Model([a, b], head, name="outer")


def subclassed() -> keras.Model:
    """A subclassed model (see ``subclassed_model.py``), built by calling it once so its input shape is saved."""
    model = TinyClassifier(width=8, classes=3, name="tiny")
    model(np.zeros((2, 5), dtype="float32"))
    return model


MODELS = {
    "cnn.h5": cnn,
    "multi_io.h5": multi_io,
    "mini_rcnn.h5": mini_rcnn,
    "map_fn_nms.keras": map_fn_nms,
    "lstm.h5": lstm,
    "nested_shared.h5": nested_shared,
    "subclassed.keras": subclassed,
}


def export_tf_formats(model: keras.Model, out_dir: Path) -> None:
    """The Mask-R-CNN-like sample as a SavedModel directory and as a frozen TF1-style GraphDef."""
    import shutil

    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    saved = out_dir / "mini_rcnn_savedmodel"
    shutil.rmtree(saved, ignore_errors=True)
    model.export(str(saved), verbose=False)
    print(f"wrote {saved}")
    spec = tf.TensorSpec(model.inputs[0].shape, model.inputs[0].dtype, name="image")
    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(function)
    (out_dir / "mini_rcnn_frozen.pb").write_bytes(frozen.graph.as_graph_def().SerializeToString())
    print(f"wrote {out_dir / 'mini_rcnn_frozen.pb'}")


#: The layer ``cnn_perturbed_savedmodel`` changes, and by how much (its kernel scaled).
PERTURBED_LAYER, PERTURBATION = "conv2", 1.01


def scaled_copy(model: keras.Model, factor: float) -> keras.Model:
    """A copy of ``model`` with :data:`PERTURBED_LAYER`'s kernel scaled by ``factor``."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    layer = copy.get_layer(PERTURBED_LAYER)
    kernel, *rest = layer.get_weights()
    layer.set_weights([kernel * factor, *rest])
    return copy


def export_cnn_forms(model: keras.Model, out_dir: Path) -> None:
    """The CNN as a SavedModel, and a copy with one layer's kernel changed by 1% as another: what
    ``probe compare`` is for (the README's example finds the changed layer)."""
    import shutil

    for name, factor in (("cnn_savedmodel", 1.0), ("cnn_perturbed_savedmodel", PERTURBATION)):
        copy = scaled_copy(model, factor)
        target = out_dir / name
        shutil.rmtree(target, ignore_errors=True)
        copy.export(str(target), verbose=False)
        print(f"wrote {target}")


def export_onnx(model: keras.Model, out_dir: Path) -> None:
    """The CNN as ONNX through Keras' own export (tf2onnx, the ``dev`` extra): ``cnn.onnx``, and
    ``cnn_perturbed.onnx`` with the same kernel change as ``cnn_perturbed_savedmodel``, which
    ``probe compare sample_models/cnn.h5 sample_models/cnn_perturbed.onnx`` finds."""
    for name, factor in (("cnn.onnx", 1.0), ("cnn_perturbed.onnx", PERTURBATION)):
        copy = scaled_copy(model, factor)
        copy(np.zeros((1, *copy.input_shape[1:]), dtype="float32"))  # export refuses a model never called
        copy.export(str(out_dir / name), format="onnx", verbose=False)
        print(f"wrote {out_dir / name}")


#: Samples the int8 conversion calibrates on, and their seed.
CALIBRATION_SAMPLES, CALIBRATION_SEED = 32, 1234


def export_tflite(out_dir: Path) -> None:
    """The CNN's SavedModel converted to TensorFlow Lite: ``cnn_float.tflite`` (float32, as is) and
    ``cnn_int8.tflite`` (full-integer int8: weights and activations, calibrated on seeded uniform
    images; float input and output, with QUANTIZE and DEQUANTIZE ops at the ends)."""
    import tensorflow as tf

    saved = str(out_dir / "cnn_savedmodel")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved)
    (out_dir / "cnn_float.tflite").write_bytes(converter.convert())
    print(f"wrote {out_dir / 'cnn_float.tflite'}")

    rng = np.random.default_rng(CALIBRATION_SEED)
    images = rng.random((CALIBRATION_SAMPLES, 1, 28, 28, 1), dtype=np.float32)

    def representative_dataset() -> Iterator[list[np.ndarray]]:
        for image in images:
            yield [image]

    converter = tf.lite.TFLiteConverter.from_saved_model(saved)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    (out_dir / "cnn_int8.tflite").write_bytes(converter.convert())
    print(f"wrote {out_dir / 'cnn_int8.tflite'}")


def main(out_dir: Path = HERE) -> None:
    for index, (filename, build) in enumerate(MODELS.items()):
        keras.utils.set_random_seed(1234 + index)
        model = build()
        model.save(out_dir / filename)
        if filename == "cnn.h5":
            model.save(out_dir / "cnn.keras")
            export_cnn_forms(model, out_dir)
            export_tflite(out_dir)
            export_onnx(model, out_dir)
        if filename == "mini_rcnn.h5":
            export_tf_formats(model, out_dir)
        print(f"wrote {out_dir / filename}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
