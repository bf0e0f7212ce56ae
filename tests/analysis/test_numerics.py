"""``--check-numerics``' ordering of loop regions (no TensorFlow)."""

from __future__ import annotations

from probe_cli.analysis.numerics import region_starts
from probe_cli.core.types import Region, TensorInfo


def tensor(name: str, order: int, context: str | None = None, op_type: str = "Relu") -> TensorInfo:
    region = Region.TOP if context is None else Region.LOWERED_LOOP if context.startswith("lowered") else Region.BODY
    return TensorInfo(name, name, op_type, "float32", (), None, order, context, region)


def test_region_starts_are_not_fooled_by_scopes_named_like_region_parts() -> None:
    """Layers named ``body`` and ``then``: each loop still starts at its own first body tensor, a
    nested loop's tensors belong to the outermost loop, and lowered loops keep their own position."""
    tensors = [
        tensor("outer/body/map/while/body/x:0", 0, "loop outer/body/map/while/body"),
        tensor("outer/body/map/while:0", 1, op_type="While"),
        tensor("outer/then/while/body/y:0", 2, "loop outer/then/while/body"),
        tensor("outer/then/while/body/inner/while/body/z:0", 3, "loop outer/then/while/body/inner/while/body"),
        tensor("outer/then/while/body/inner/while:0", 4, "loop outer/then/while/body"),
        tensor("outer/then/while:0", 5, op_type="While"),
        tensor("gate/cond/then/w:0", 6, "branch gate/cond/then"),
        tensor("gate/cond:0", 7, op_type="StatelessIf"),
        tensor("frozen/while/body/v:0", 8, "lowered loop frozen/while/while_context"),
    ]
    assert region_starts(tensors) == {
        "outer/body/map/while/body/x:0": 0,
        "outer/then/while/body/y:0": 2,
        "outer/then/while/body/inner/while/body/z:0": 2,
        "outer/then/while/body/inner/while:0": 2,
        "gate/cond/then/w:0": 6,
    }
