"""The strict JSON parser: what it refuses, and that it refuses it as a JSONDecodeError."""

from __future__ import annotations

import json

import pytest

from alur.runtime import strict_json


@pytest.mark.parametrize("raw, why", [
    (b"[" * 100_000 + b"]" * 100_000, "nested deeper"),
    (b"[" * 33 + b"]" * 33, "nested deeper"),
    (b"9" * 5000, "digits is out of range"),
    (b"1e999", "out of range"),
    (b"-Infinity", "is not JSON"),
    (b'{"a": NaN}', "is not JSON"),
    (b'{"a": 1, "b": {"c": 1, "c": 2}}', "duplicate key 'c'"),
    (b'"\xc3\x28"', "not UTF-8"),
    (b"\xef\xbb\xbf{}", "Unexpected UTF-8 BOM"),
    (b'{"a": 1', "Expecting"),
])
def test_refused_with_a_reason(raw: bytes, why: str) -> None:
    with pytest.raises(json.JSONDecodeError, match=why):
        strict_json.loads(raw)


def test_ordinary_json_is_read_as_json_reads_it() -> None:
    raw = b'{"a": [1, 2.5, "x", null, true, {"b": -3}], "c": "\\u00e9"}'
    assert strict_json.loads(raw) == json.loads(raw)
    assert strict_json.loads(b"[" * 32 + b"]" * 32) == json.loads(b"[" * 32 + b"]" * 32)
