"""The pure parts of the engineers' tools: time and slice parsing, filters, dead-letter
records, trace and report rendering. (Against a running stack: tests/e2e/.)"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from alur.runtime.processing import Message, dead_letter_record
from alur.runtime.slice import Slice
from alur.tools.dlq import NotADeadLetter, parse
from alur.tools.events import Filter, parse_time
from alur.tools.trace import Hop, Trace, TracedEvent, render
from schemas import encode
from services.orders.reports import render_html, render_report
from tests.unit.builders import event

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_times_are_relative_or_iso_and_anything_else_is_refused() -> None:
    assert parse_time("10m", NOW) == NOW - timedelta(minutes=10)
    assert parse_time("2d", NOW) == NOW - timedelta(days=2)
    assert parse_time("2026-11-22T10:00:00") == datetime(2026, 11, 22, 10, tzinfo=UTC)
    assert parse_time("2026-11-22T10:00:00+02:00").utcoffset() == timedelta(hours=2)
    with pytest.raises(ValueError, match="not a time"):
        parse_time("yesterday")


def test_filters_keep_matching_events_and_undecodable_bytes_only_when_unfiltered() -> None:
    placed = event("OrderPlaced", "ord_1")
    assert Filter(types=frozenset({"OrderPlaced"}), order="ord_1").keeps(placed)
    assert not Filter(shop="another-shop").keeps(placed)
    assert not Filter(until=placed.time).keeps(placed)
    assert Filter().keeps_undecodable(b"ord_1")
    assert Filter(order="ord_1").keeps_undecodable(b"ord_1")
    assert not Filter(order="ord_2").keeps_undecodable(b"ord_1")
    assert not Filter(shop="s").keeps_undecodable(b"ord_1")


def test_a_slice_becomes_a_numbered_where_clause_and_survives_json() -> None:
    part = Slice(shop="s1", orders=("o1", "o2"), since=NOW)
    where, args = part.sql()
    assert where == "TRUE AND shop_id = $1 AND order_id = ANY($2::text[]) AND placed_at >= $3"
    assert args == ["s1", ["o1", "o2"], NOW]
    assert Slice.from_json(json.loads(json.dumps(part.as_json()))) == part
    assert Slice().everything and not part.everything


@pytest.mark.parametrize("value", [b'{"type": "OrderPlaced"}', b"\x00\xff not utf-8"])
def test_a_dead_letter_record_gives_back_the_original_bytes_and_its_origin(value: bytes) -> None:
    raw = dead_letter_record("payments", Message("orders", 2, 41, b"ord_9", value), "bad", 3)
    letter = parse("orders.dlq", 1, 7, b"ord_9", raw)
    assert (letter.id, letter.service, letter.attempts) == ("orders.dlq:1:7", "payments", 3)
    assert (letter.origin_topic, letter.origin_partition, letter.origin_offset) == ("orders", 2, 41)
    assert letter.value == value and letter.order_id == "ord_9" and letter.event_type is None
    shown = letter.detail()["original_message"]
    assert shown == (json.loads(value) if value.startswith(b"{")
                     else base64.b64encode(value).decode())


def test_a_decodable_dead_letter_names_its_event() -> None:
    reserved = event("StockReserved", "ord_3")
    raw = dead_letter_record("payments", Message("inventory", 0, 5, b"ord_3", encode(reserved)),
                             "InfrastructureError: gateway unreachable", 4)
    letter = parse("inventory.dlq", 0, 0, b"ord_3", raw)
    assert (letter.event_type, letter.event_id) == ("StockReserved", str(reserved.id))


def test_the_trace_marks_retries_dead_letters_and_missing_consumers() -> None:
    hop = Hop("payments", "in", NOW, "dead_lettered", "inventory", 1, 9, 4, "gateway down")
    traced = TracedEvent("e1", "StockReserved", "inventory", NOW, "OrderPlaced", "e0",
                         "inventory", 1, 9, hops=[hop], awaiting=["orders"])
    text = render(Trace("ord_1", False, "StockReserved", "not settled", [traced]))
    assert "!!" in text and "dead_lettered after 4 attempts" in text
    assert "orders        has not consumed it yet" in text and text.endswith("not settled")
    assert traced.problems == ["payments dead-lettered it after 4 attempt(s): gateway down",
                               "not consumed yet by orders"]


REPORT = {
    "by_day": [{"day": "2026-11-22", "shop_id": "s1", "channel": "online",
                "payment_method": "card", "currency": "EUR", "orders": 3, "paid_orders": 2,
                "gmv": 2500}],
    "top_products": [{"sku": "SKU-1", "units": 2, "revenue": 2500, "currency": "EUR"}],
    "funnel": [{"placed": 3, "paid": 2, "delivered": 2, "completed": 0, "cancelled": 1,
                "returned": 0, "avg_seconds_to_delivery": 1.5, "cancellation_rate": 0.3333,
                "return_rate": 0.0, "paid_rate": 0.6667, "delivered_rate": 0.6667}],
    "reviews": [{"reviews": 2, "average_rating": 4.5, "one_star": 0, "two_stars": 0,
                 "three_stars": 0, "four_stars": 1, "five_stars": 1}],
}


def test_the_report_renders_as_csv_json_table_and_html() -> None:
    lines: list[str] = []
    render_report(REPORT, "csv", lines.append)
    assert lines[:3] == ["# by_day", "day,shop_id,channel,payment_method,currency,orders,"
                         "paid_orders,gmv", "2026-11-22,s1,online,card,EUR,3,2,2500"]
    out: list[str] = []
    render_report(REPORT, "json", out.append)
    assert json.loads(out[0]) == REPORT
    table: list[str] = []
    render_report(REPORT, "table", table.append)
    assert any("SKU-1" in line for line in table)
    page = render_html(REPORT)
    assert page.count("<svg") == 5 and "€25.00" in page and "average 4.5" in page
    assert "<script" not in page


def test_offset_ranges_are_topic_partition_and_a_half_open_span() -> None:
    from alur.runtime.topics import parse_ranges

    assert parse_ranges(["orders:2:100-200", "orders.dlq:0:0-5"]) == {
        ("orders", 2): (100, 200), ("orders.dlq", 0): (0, 5)}
    for bad in ("orders:2:200-100", "orders:x:1-2", "orders:1"):
        with pytest.raises(ValueError, match="not an offset range"):
            parse_ranges([bad])


def test_a_changed_decision_is_reported_against_what_was_recorded() -> None:
    from dataclasses import replace

    from alur.runtime.ports import StoredEvent
    from alur.tools.redecide import differences
    from schemas import caused_by
    from services.inventory.bootstrap import DECIDER

    placed = event("OrderPlaced", "ord_7")
    reserved = caused_by(placed, event("StockReserved", "ord_7").data, source="alur/inventory")
    stream = [StoredEvent(1, "observed", placed), StoredEvent(2, "own", reserved)]
    assert differences(stream, DECIDER, frozenset({"orders", "shipping"})) == []
    lazy = replace(DECIDER, decide=lambda state, e: [])
    [diff] = differences(stream, lazy, frozenset({"orders", "shipping"}))
    assert (diff.event_type, diff.recorded, diff.would_decide) == (
        "OrderPlaced", ["StockReserved"], [])


def test_a_command_that_records_nothing_is_not_a_difference() -> None:
    from alur.runtime.ports import StoredEvent
    from alur.tools.redecide import differences
    from schemas import caused_by
    from services.shipping.bootstrap import DECIDER

    placed, paid = event("OrderPlaced", "ord_8"), event("OrderReadyToShip", "ord_8")
    booked = caused_by(paid, event("ShipmentCreated", "ord_8").data, source="alur/shipping")
    cancelled = event("OrderCancelled", "ord_8")
    stream = [StoredEvent(1, "observed", placed), StoredEvent(2, "observed", paid),
              StoredEvent(3, "own", booked), StoredEvent(4, "observed", cancelled)]
    # the cancellation cancels the carrier booking, which is not an event ...
    assert differences(stream, DECIDER, frozenset()) == []
    # ... or recalls the parcel, which is
    recalled = caused_by(cancelled, event("ShipmentRecalled", "ord_8").data,
                         source="alur/shipping")
    assert differences([*stream, StoredEvent(5, "own", recalled)], DECIDER, frozenset()) == []
    [diff] = differences(stream[:2] + stream[3:], DECIDER, frozenset())
    assert diff.would_decide == ["CreateShipment -> ShipmentCreated"] and diff.recorded == []


def test_what_a_timer_recorded_after_an_event_is_not_a_difference() -> None:
    from alur.runtime.ports import StoredEvent
    from alur.tools.redecide import differences
    from schemas import caused_by
    from services.orders.bootstrap import DECIDER

    placed = event("OrderPlaced", "ord_9")
    reserved, paid = event("StockReserved", "ord_9"), event("PaymentConfirmed", "ord_9")
    # the release timer fired after the payment: its event names the payment as its cause
    released = caused_by(paid, event("OrderReadyToShip", "ord_9").data, source="alur/orders")
    stream = [StoredEvent(1, "own", placed), StoredEvent(2, "observed", reserved),
              StoredEvent(3, "observed", paid), StoredEvent(4, "own", released)]
    assert differences(stream, DECIDER, frozenset()) == []
    # but not after an event that leaves no release due (the order is not paid yet)
    early = caused_by(reserved, event("OrderReadyToShip", "ord_9").data, source="alur/orders")
    [diff] = differences(stream[:2] + [StoredEvent(3, "own", early)], DECIDER, frozenset())
    assert diff.event_type == "StockReserved" and diff.recorded == ["OrderReadyToShip"]


@pytest.mark.parametrize("raw", [None, b"", b"not json", b"[1, 2]", b'{"value": "x"}',
                                 b'{"value": 5, "origin": {}}'])
def test_a_record_on_a_dlq_that_no_service_wrote_is_refused_with_where_it_lies(
        raw: bytes | None) -> None:
    with pytest.raises(NotADeadLetter, match=r"^orders\.dlq:1:7 is not a dead letter"):
        parse("orders.dlq", 1, 7, None, raw)
