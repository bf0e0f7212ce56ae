"""Computing a selection of a TensorFlow Lite model's tensors for one batch.

One ``invoke()`` per batch when the batch fits the model's inputs: their batch is the batch's size,
or is dynamic (``shape_signature`` -1) and the inputs are resized to it. Otherwise (most TFLite
models have a batch of 1) the batch runs sample by sample, one ``invoke()`` each, and each tensor's
values are joined along axis 0: tensors whose axis 0 is the batch are concatenated, any other is
stacked (one row per sample). After each ``invoke()`` every selected tensor is read with
``get_tensor(index)``, which copies it out of the interpreter's buffers.

Quantized tensors are returned as the integers the interpreter holds; their quantization goes to
the archive with them. A real-valued (float) array fed to a quantized integer input is quantized
first, ``round(x / scale) + zero_point`` clipped to the dtype's range, as the model's own QUANTIZE
op would (``probe compare`` feeds a float model's inputs to an int8-input conversion this way).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from probe_cli.backends.base import TracedModel
from probe_cli.backends.tflite.loader import one_line, quiet
from probe_cli.backends.tflite.tracer import InputBinding, TFLiteGraph
from probe_cli.core.errors import FeedError, RunError
from probe_cli.core.types import Feed, TensorInfo


def quantize(binding: InputBinding, array: np.ndarray) -> np.ndarray:
    """``array`` as ``binding``'s dtype; real values fed to a quantized integer input are quantized."""
    if array.dtype == binding.dtype:
        return array
    if binding.quantization is not None and array.dtype.kind == "f" and binding.dtype.kind in "iu":
        scale, zero_point = binding.quantization
        scaled = array.astype(np.float64) / scale
        rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)  # half away from zero, as TFLite rounds
        info = np.iinfo(binding.dtype)
        return np.clip(rounded + zero_point, info.min, info.max).astype(binding.dtype)
    try:
        return array.astype(binding.dtype)
    except (TypeError, ValueError):
        raise FeedError(f"input {binding.name!r}: dtype {array.dtype} cannot feed {binding.dtype}") from None


class TFLiteRunner:
    """The interpreter run for ``fetches``; call it with the feeds of one batch."""

    def __init__(self, traced: TracedModel, fetches: Sequence[TensorInfo]) -> None:
        self.graph: TFLiteGraph = traced.function
        self.fetches = [(info.name, int(traced.graph_tensors[info.name])) for info in fetches]

    @property
    def interpreter(self) -> Any:
        return self.graph.interpreter

    def __call__(self, feeds: Sequence[Feed]) -> dict[str, Any]:
        given = {feed.name: feed.array for feed in feeds}
        arrays: dict[int, np.ndarray] = {}
        for binding in self.graph.inputs:
            if binding.name not in given:
                raise FeedError(f"input {binding.name!r} is not fed")
            arrays[binding.index] = quantize(binding, np.asarray(given[binding.name]))
        rows = next((arrays[b.index].shape[0] for b in self.graph.inputs if b.batched and arrays[b.index].ndim), None)
        if rows is None or self._whole_batch_fits(arrays, rows):
            try:
                return self._invoke(arrays)
            except RunError:
                if rows is None or rows == 1 or not self._resizable():
                    raise
                self.graph.resize_failed = True  # e.g. a Reshape with the converted batch of 1 built in
        return self._sample_by_sample(arrays, rows)

    def _resizable(self) -> bool:
        return all(b.signature[0] == -1 for b in self.graph.inputs if b.batched)

    def _whole_batch_fits(self, arrays: dict[int, np.ndarray], rows: int) -> bool:
        """Whether one invoke takes the batch: the inputs' batch is its size, or can be resized to it."""
        if all(b.shape[0] == rows for b in self.graph.inputs if b.batched):
            return True
        return self._resizable() and not self.graph.resize_failed

    def _shape_inputs(self, shapes: dict[int, tuple[int, ...]]) -> None:
        """Resizes the inputs whose current shape differs, and allocates once if any did."""
        current = self.graph.current
        changed = {index: shape for index, shape in shapes.items() if current.get(index) != shape}
        if not changed:
            return
        try:
            with quiet():
                for index, shape in changed.items():
                    self.interpreter.resize_tensor_input(index, list(shape), strict=False)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            current.clear()  # unknown now: the next call resizes every input again
            raise RunError(f"cannot resize the model's inputs to {list(changed.values())}: {one_line(exc)}") from None
        current.update(changed)

    def _invoke(self, arrays: dict[int, np.ndarray]) -> dict[str, Any]:
        self._shape_inputs({index: tuple(array.shape) for index, array in arrays.items()})
        interpreter = self.interpreter
        try:
            for index, array in arrays.items():
                interpreter.set_tensor(index, array)
            interpreter.invoke()
            return {name: interpreter.get_tensor(index) for name, index in self.fetches}  # get_tensor copies
        except (ValueError, RuntimeError) as exc:
            raise RunError(f"running the model failed: {one_line(exc)}") from None

    def _sample_by_sample(self, arrays: dict[int, np.ndarray], rows: int) -> dict[str, Any]:
        batched = {b.index for b in self.graph.inputs if b.batched}
        parts: dict[str, list[np.ndarray]] = {name: [] for name, _ in self.fetches}
        for row in range(rows):
            sample = {i: a[row : row + 1] if i in batched and a.ndim else a for i, a in arrays.items()}
            for name, value in self._invoke(sample).items():
                parts[name].append(value)
        joined = self.graph.batched
        return {
            name: np.concatenate(values, axis=0) if name in joined else np.stack(values)
            for name, values in parts.items()
        }
