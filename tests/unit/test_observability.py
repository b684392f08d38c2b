"""Metrics counted once per committed effect, JSON log lines, and the operations endpoint."""

from __future__ import annotations

import io
import json
import logging

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from alur.runtime import metrics
from alur.runtime.health import operations_app
from alur.runtime.logs import JsonFormatter, message_context
from alur.runtime.memory import InMemoryUnitOfWork, MemoryState
from alur.runtime.processing import BatchProcessor, Message
from schemas import encode
from tests.unit.builders import event


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class CountingHandler:
    """Counts on commit; raises (after counting) for the event ids in `fail`."""

    def __init__(self, fail: set[object]) -> None:
        self.fail = fail

    async def __call__(self, uow, ev):  # noqa: ANN001, ANN204
        metrics.on_commit(lambda: metrics.ORDER_TRANSITIONS.labels("unit-test", ev.type).inc())
        if ev.id in self.fail:
            raise ValueError("not retriable: a bug")
        return "processed"


class FailingUow(InMemoryUnitOfWork):
    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        await super().__aexit__(RuntimeError, RuntimeError("commit failed"), None)
        raise RuntimeError("commit failed")


async def test_effects_count_after_commit_and_not_for_a_rolled_back_message() -> None:
    good, bad = event("OrderPlaced", "o1"), event("OrderCancelled", "o2")
    before = {t: sample("alur_order_transitions_total", channel="unit-test", state=t)
              for t in ("OrderPlaced", "OrderCancelled")}
    processor = BatchProcessor("orders", CountingHandler({bad.id}),
                               lambda: InMemoryUnitOfWork(MemoryState()), attempts=1)
    batch = [Message("orders", 0, i, b"k", encode(e)) for i, e in enumerate((good, bad))]
    await processor.process(batch)
    after = {t: sample("alur_order_transitions_total", channel="unit-test", state=t)
             for t in before}
    assert after["OrderPlaced"] == before["OrderPlaced"] + 1
    assert after["OrderCancelled"] == before["OrderCancelled"]  # its savepoint rolled back


async def test_nothing_counts_when_the_batch_transaction_fails() -> None:
    ev = event("OrderPlaced", "o3")
    before = sample("alur_order_transitions_total", channel="unit-test", state="OrderPlaced")
    processor = BatchProcessor("orders", CountingHandler(set()),
                               lambda: FailingUow(MemoryState()), attempts=1)
    try:
        await processor.process([Message("orders", 0, 0, b"k", encode(ev))])
    except RuntimeError:
        pass
    else:
        raise AssertionError("the commit failure must propagate")
    assert sample("alur_order_transitions_total", channel="unit-test",
                  state="OrderPlaced") == before


def log_line(logger: logging.Logger, *args: object, exc: BaseException | None = None) -> dict:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("payments"))
    logger.addHandler(handler)
    try:
        if exc is None:
            logger.warning(*args)
        else:
            try:
                raise exc
            except type(exc):
                logger.exception(*args)
    finally:
        logger.removeHandler(handler)
    [line] = stream.getvalue().splitlines()
    return json.loads(line)


def test_a_log_line_is_json_with_service_level_and_the_message_ids() -> None:
    logger = logging.getLogger("alur.test.json")
    with message_context("ord_1", "evt-1", "corr-1"):
        line = log_line(logger, "retrying %s", "StockReserved")
    assert line["service"] == "payments" and line["level"] == "warning"
    assert line["message"] == "retrying StockReserved"
    assert (line["order_id"], line["event_id"], line["correlation_id"]) == \
        ("ord_1", "evt-1", "corr-1")
    assert "order_id" not in log_line(logger, "outside any message")


def test_customer_contact_data_never_reaches_a_log_line() -> None:
    logger = logging.getLogger("alur.test.pii")
    line = log_line(logger, "send to %s failed", "ada.lovelace+shop@example.co.uk",
                    exc=ValueError("input_value='+44 20 7946 0958' rejected"))
    text = json.dumps(line)
    assert "ada.lovelace" not in text and "7946" not in text
    assert "[email]" in line["message"] and "[phone]" in line["error"]
    kept = log_line(logger, "offset 123456789 at 2026-11-22 10:00:00")
    assert kept["message"] == "offset 123456789 at 2026-11-22 10:00:00"


async def test_readyz_reports_each_check_and_answers_503_when_one_fails() -> None:
    healthy = True

    async def database() -> str:
        return "answers"

    async def broker() -> str:
        if not healthy:
            raise ConnectionError("broker unreachable")
        return "1 broker(s)"

    app = operations_app("payments", {"database": database, "broker": broker})
    async with TestClient(TestServer(app)) as client:
        ready = await client.get("/readyz")
        assert ready.status == 200
        assert (await ready.json())["checks"]["broker"] == {"status": "ok",
                                                           "detail": "1 broker(s)"}
        healthy = False
        not_ready = await client.get("/readyz")
        body = await not_ready.json()
        assert not_ready.status == 503 and body["status"] == "not_ready"
        assert body["checks"]["broker"]["status"] == "failing"
        assert body["checks"]["database"]["status"] == "ok"
        assert (await client.get("/healthz")).status == 200
        exposition = await (await client.get("/metrics")).text()
        assert "alur_events_consumed_total" in exposition


def test_the_order_funnel_times_each_stage_from_the_events_own_times() -> None:
    from datetime import timedelta

    from services.orders import domain
    from services.orders.bootstrap import DECIDER, observe_order

    placed = event("OrderPlaced", "o-funnel")
    reserved = event("StockReserved", "o-funnel").model_copy(
        update={"time": placed.time + timedelta(seconds=2)})
    paid = event("PaymentConfirmed", "o-funnel").model_copy(
        update={"time": placed.time + timedelta(seconds=5)})
    s0 = DECIDER.fold([placed])
    s1 = domain.evolve(s0, reserved)
    s2 = domain.evolve(s1, paid)
    stage_sum = {s: sample("alur_order_stage_seconds_sum", stage=s) for s in ("reserved", "paid")}
    since_paid = sample("alur_order_since_placed_seconds_sum", stage="paid")
    observe_order(s0, s1, reserved)
    observe_order(s1, s2, paid)
    observe_order(s2, s2, paid)  # no state change: nothing observed
    assert sample("alur_order_stage_seconds_sum", stage="reserved") == stage_sum["reserved"] + 2
    assert sample("alur_order_stage_seconds_sum", stage="paid") == stage_sum["paid"] + 3
    assert sample("alur_order_since_placed_seconds_sum", stage="paid") == since_paid + 5
