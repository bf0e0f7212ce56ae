"""Layouts (``NHWC``, ``NCHW``, ...) of one tensor in two forms of a model, and how to line them up.

A backend that tracks a tensor's layout says it (ONNX's channel-first ops); TensorFlow's formats track
none and are channels-last by default, so an untracked tensor of theirs facing a tracked channel-first
one is taken as channels-last. An untracked ONNX tensor is not guessed at. Pure Python.
"""

from __future__ import annotations

#: The channels-last counterpart of each channel-first layout.
CHANNELS_LAST = {"NCW": "NWC", "NCHW": "NHWC", "NCDHW": "NDHWC"}
#: Model formats whose untracked tensors are not taken as channels-last (ONNX: channel-first by default).
NOT_CHANNELS_LAST = frozenset({"onnx"})


def differing(a: str | None, b: str | None, format_a: str, format_b: str) -> tuple[str, str] | None:
    """A's and B's layouts when at least one is tracked and they differ, else None; an untracked side is
    taken as channels-last only when its model's format is TensorFlow's."""
    if a is None and b is None:
        return None
    if (a is None and format_a in NOT_CHANNELS_LAST) or (b is None and format_b in NOT_CHANNELS_LAST):
        return None
    a = a if a is not None else CHANNELS_LAST.get(str(b), b)
    b = b if b is not None else CHANNELS_LAST.get(str(a), a)
    return (str(a), str(b)) if a != b else None


def axes(source: str, target: str) -> tuple[int, ...] | None:
    """The ``numpy.transpose`` axes that bring a tensor laid out as ``source`` to ``target``; None when
    they are no permutation of each other."""
    if len(source) != len(target) or sorted(source) != sorted(target):
        return None
    return tuple(source.index(letter) for letter in target)
