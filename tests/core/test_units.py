"""Byte sizes as people write them (no TensorFlow)."""

from __future__ import annotations

import pytest

from probe_cli.core.units import human_bytes, parse_bytes


@pytest.mark.parametrize(
    ("text", "expected"), [("1000", 1000), ("500M", 500 * 1024**2), ("2G", 2 * 1024**3), ("1.5GiB", 3 * 1024**3 // 2)]
)
def test_parse_bytes(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected


def test_parse_bytes_refuses_what_is_not_a_size() -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_bytes("lots")


@pytest.mark.parametrize(("n", "expected"), [(None, "?"), (512, "512 B"), (1536, "1.5 KiB"), (3 * 1024**3, "3.0 GiB")])
def test_human_bytes(n: int | None, expected: str) -> None:
    assert human_bytes(n) == expected
