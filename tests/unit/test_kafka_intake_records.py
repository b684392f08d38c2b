"""Reading a shop's intake record: what is refused, and why the shop is told."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord

from examples.kafka_shop import example_order, submission
from services.orders.api.problems import ApiError
from services.orders.kafka_intake import STATUS_EVENTS, _Read, parse
from services.orders.shops import Shop

SHOP = Shop("kopi-kenangan", "Kopi", "IDR", None, None, None)
MIGRATION = (Path(__file__).resolve().parents[2]
             / "services/orders/migrations/110_intake_payment_requested.sql")


def record(value: bytes | None, key: bytes | None = b"REF-1") -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(topic="order-intake.kopi-kenangan", partition=0, offset=7,
                          timestamp=0, timestamp_type=0, key=key, value=value, checksum=None,
                          serialized_key_size=0, serialized_value_size=0, headers=())


def refusal(value: bytes | None, key: bytes | None = b"REF-1") -> ApiError:
    with pytest.raises(ApiError) as refused:
        parse(record(value, key), SHOP, 262_144, _Read())
    return refused.value


def test_a_good_record_is_the_order_of_post_v1_orders() -> None:
    order = parse(record(submission(example_order("REF-1", "SKU-KOPI", "IDR"))), SHOP,
                  262_144, _Read())
    assert order.reference == "REF-1" and order.channel == "marketplace"
    assert order.lines[0].unit_price.amount == 25000


@pytest.mark.parametrize(("value", "key", "kind", "field"), [
    (None, b"REF-1", "bad-request", None),
    (b"\xff\xfe", b"REF-1", "validation-error", "value"),
    (b'{"a": 1, "a": 2}', b"REF-1", "validation-error", "value"),
    (b"[1]", b"REF-1", "validation-error", "body"),
    (json.dumps({"specversion": "1.0"}).encode(), b"REF-1", "validation-error", "id"),
    (submission(example_order("REF-1", "SKU-KOPI", "IDR")), b"REF-2", "validation-error",
     "key"),
    (submission(example_order("REF-1", "SKU-KOPI", "IDR") | {"shop_id": "other"}), b"REF-1",
     "validation-error", "data.shop_id"),
    (submission(example_order("REF-1", "SKU-KOPI", "IDR") | {"channel": "pos"}), b"REF-1",
     "validation-error", "data.channel"),
    (b"x" * 262_145, b"REF-1", "body-too-large", None),
])
def test_refused_records_say_why(value: bytes | None, key: bytes, kind: str,
                                 field: str | None) -> None:
    error = refusal(value, key)
    assert error.kind == kind and error.detail
    if field is not None:
        assert error.errors and field in {e["field"] for e in error.errors}, error.errors


def test_the_migration_republishes_exactly_the_status_events() -> None:
    sql = MIGRATION.read_text()
    listed = re.search(r"NEW\.type IN \((.*?)\)\)", sql, re.S)
    assert listed is not None
    assert tuple(re.findall(r"'(\w+)'", listed.group(1))) == STATUS_EVENTS


def test_binary_mode_takes_the_attributes_from_ce_headers() -> None:
    order = example_order("REF-1", "SKU-KOPI", "IDR")
    headers = (("ce_specversion", b"1.0"), ("ce_type", b"OrderSubmitted"),
               ("ce_id", b"sub-1"), ("ce_source", b"urn:erp"),
               ("content-type", b"application/json"))
    good = replace(record(json.dumps(order).encode()), headers=headers)
    read = _Read()
    assert parse(good, SHOP, 262_144, read).reference == "REF-1"
    assert read.submission_id == "sub-1"
    wrong = replace(record(json.dumps(order).encode()), headers=(
        ("ce_specversion", b"1.0"), ("ce_type", b"OrderPlaced"), ("ce_id", b"x"),
        ("ce_source", b"urn:erp")))
    with pytest.raises(ApiError) as refused:
        parse(wrong, SHOP, 262_144, _Read())
    assert refused.value.errors and refused.value.errors[0]["field"] == "type"
