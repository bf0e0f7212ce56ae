"""``probe_cli.render`` helpers that need no model."""

from __future__ import annotations

import io
import json

import pytest

from probe_cli.cli.render import Out


def strict(text: str) -> object:
    """What a strict JSON parser (JavaScript's, jq's) accepts: no NaN/Infinity tokens."""

    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_json_output_is_strict_json_with_non_finite_values_as_strings() -> None:
    stream = io.StringIO()
    Out(stream).json({"mean": float("inf"), "parts": [float("-inf"), float("nan"), 1.5, 2], "name": "x", "n": None})
    assert strict(stream.getvalue()) == {"mean": "inf", "parts": ["-inf", "nan", 1.5, 2], "name": "x", "n": None}


def test_strict_parser_refuses_what_json_dumps_writes_by_default() -> None:
    """The check above can fail: Python's own output is refused."""
    with pytest.raises(ValueError, match="not JSON"):
        strict(json.dumps({"mean": float("inf")}))
