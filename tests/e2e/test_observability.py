"""A real Prometheus (started by the infra fixture, scraping every second with deploy/prometheus's
rules loaded) watches the running stack while orders go through it: the key series exist and
move, the alert rules evaluate, and every Grafana panel's query answers with series."""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from alur.infra import grafana, prometheus
from alur.settings import SERVICES, Settings
from tests.e2e.helpers import all_delivered, new_sku, order_body, place, set_stock, wait_until
from tests.e2e.test_kafka_intake import kafka_shop
from tests.e2e.test_kafka_intake import order as kafka_order

STAGES = ("reserved", "paid", "shipment_created", "shipped", "delivered")


class Prometheus:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def query(self, expr: str) -> list[dict[str, Any]]:
        response = await self.client.get("/api/v1/query", params={"query": expr})
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", (expr, body)
        return list(body["data"]["result"])

    async def value(self, expr: str) -> float:
        """The single value of a scalar-like query; 0 when it has no series yet."""
        result = await self.query(expr)
        assert len(result) <= 1, (expr, result)
        return float(result[0]["value"][1]) if result else 0.0


@pytest.fixture
async def prom(services: Settings) -> Prometheus:
    async with httpx.AsyncClient(base_url=prometheus.url(services), timeout=10) as client:
        yield Prometheus(client)


async def test_prometheus_watches_orders_flow_and_lag_drain(services, api, db, prom) -> None:
    async def every_service_scraped() -> bool:
        up = await prom.query('up{job="alur"} == 1')
        return {r["metric"]["alur_service"] for r in up} == set(SERVICES)

    await wait_until(every_service_scraped, 60, "Prometheus to scrape all five services")
    delivered = 'sum(alur_order_transitions_total{state="delivered"})'
    declined = 'sum(alur_payment_declines_total{reason="card_declined"})'
    cancelled = 'sum(alur_compensations_total{type="OrderCancelled"})'
    before = {q: await prom.value(q) for q in (delivered, declined, cancelled)}

    sku = new_sku()
    await set_stock(services, [("WH-1", sku, 200)])
    good = [await place(api, order_body(sku)) for _ in range(40)]
    for _ in range(2):
        await place(api, order_body(sku, token="tok_decline"))
    await place(api, order_body(sku, quantity=500))  # more than there is: rejected
    await _send_poison(services)

    await wait_until(lambda: all_delivered(db, good), 90, "the orders to be delivered")

    async def funnel_counted() -> bool:
        expected = {delivered: len(good), declined: 2, cancelled: 3}  # 2 declines + 1 rejected
        values = {q: await prom.value(q) for q in expected}
        return all(values[q] >= before[q] + n for q, n in expected.items())

    await wait_until(funnel_counted, 60, "Prometheus to count deliveries, declines, cancels")

    quantiles = await prom.query(
        "histogram_quantile(0.99, sum by (stage, le) "
        "(rate(alur_order_since_placed_seconds_bucket[5m])))")
    by_stage = {r["metric"]["stage"]: float(r["value"][1]) for r in quantiles}
    for stage in STAGES:
        assert stage in by_stage and math.isfinite(by_stage[stage]) and by_stage[stage] > 0, \
            by_stage
    assert by_stage["delivered"] >= by_stage["reserved"]

    lag = "sum(alur_consumer_lag_messages)"
    assert await prom.value(f"max_over_time({lag}[5m:1s])") > 0, "lag never moved"

    async def lag_drained() -> bool:
        return await prom.value(lag) == 0

    await wait_until(lag_drained, 60, "consumer lag to drain back to zero")
    lagging = await prom.query("count by (service) (alur_consumer_lag_messages)")
    assert {r["metric"]["service"] for r in lagging} == set(SERVICES)


async def test_every_service_is_alive_and_ready(services) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for name in SERVICES:
            base = f"http://127.0.0.1:{services.metrics_port(name)}"
            assert (await client.get(f"{base}/healthz")).json()["status"] == "alive"
            ready = await client.get(f"{base}/readyz")
            body = ready.json()
            assert ready.status_code == 200 and body["status"] == "ready", body
            assert body["checks"]["database"]["status"] == "ok"
            assert body["checks"]["broker"]["status"] == "ok"
            if name != "orders":  # the API serves without partitions
                assert body["checks"]["partitions"]["status"] == "ok"


async def test_the_alert_rules_evaluate_and_a_dead_letter_fires_its_alert(services, prom) -> None:
    await _send_poison(services)

    async def dead_letter_alert() -> bool:
        response = await prom.client.get("/api/v1/alerts")
        alerts = response.json()["data"]["alerts"]
        return any(a["labels"]["alertname"] == "AlurDeadLettersGrowing"
                   and a["state"] == "firing" for a in alerts)

    await wait_until(dead_letter_alert, 60, "AlurDeadLettersGrowing to fire")
    groups = (await prom.client.get("/api/v1/rules")).json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) >= 20
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []


async def test_every_dashboard_query_returns_series(services, api, db, prom) -> None:
    """Each panel's PromQL parses and answers with at least one series, for every service on
    the service board, once an order over HTTP, an order and an unreadable record on a shop's
    Kafka intake topic, and a poison message went through (whatever other tests ran
    before)."""
    await _send_poison(services)
    sku = new_sku()
    await set_stock(services, [("WH-1", sku, 10)])
    order = await place(api, order_body(sku))
    shop = await kafka_shop(services, f"kshop-obs-{uuid.uuid4().hex[:6]}")
    try:
        await shop.place(kafka_order("OBS-1", sku))
        await shop.publish(b"{not json", "OBS-2")  # refused, with its reason
        await shop.about("OBS-1", "OrderAccepted")
        await shop.about("OBS-2", "OrderRejected")
    finally:
        await shop.producer.stop()
        await shop.outcomes.stop()
    await wait_until(lambda: all_delivered(db, [order]), 60, "an order to be delivered")
    empty = []
    for board in grafana.DASHBOARDS:
        for panel in board.panels():
            for query in panel.queries:
                for service in (SERVICES if "$service" in query.expr else ("-",)):
                    expr = grafana.concrete(query.expr, service=service, rate="5m", range_="1h")
                    if not await prom.query(expr):
                        empty.append((board.uid, panel.title, expr))
    assert empty == []


async def _send_poison(settings: Settings) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            "orders", json.dumps({"type": "OrderPlaced", "poison": uuid.uuid4().hex}).encode(),
            key=b"poison")
    finally:
        await producer.stop()
