"""SSRF through shop webhooks: internal targets are refused when a shop registers them, and
again when a delivery resolves the URL's name (a name re-pointed inward is caught then); the
request goes to the address that was checked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from alur.runtime.egress import EgressPolicy
from services.orders.webhook_delivery import DeliveryPolicy, deliver_due
from tests.api.conftest import Api, bearer, mug_order
from tests.loopback import serving
from tests.unit.test_egress import FakeResolver

# What a shop tried in the black-box review: all answered 201 before the policy.
INTERNAL = ["http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/h",
            "http://172.16.0.9/h", "http://192.168.0.1/h", "http://127.0.0.1:15432/",
            "http://127.0.0.1:8090/v1/charges", "http://localhost/h", "http://0.0.0.0/h",
            "http://[::1]/h", "http://2130706433/h", "http://0x7f000001/h",
            "http://[::ffff:169.254.169.254]/h", "http://user@127.0.0.1/h"]


async def test_a_shop_cannot_register_a_webhook_to_an_internal_address(api: Api) -> None:
    key, _ = await api.shop("shop-a")
    before = await api.counts()
    for url in INTERNAL:
        response = await api.client.post("/v1/webhooks", headers=bearer(key),
                                         json={"url": url, "events": ["OrderPlaced"]})
        assert response.status_code == 422, (url, response.text)
        problem = response.json()
        assert problem["type"].endswith("/validation-error")
        assert problem["errors"][0]["field"] == "url"
        assert "egress policy" in problem["errors"][0]["message"], url
    assert await api.counts() == before


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[int, list[str]]]:
    """A loopback endpoint that records the Host header of every request it gets."""
    seen: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        seen.append(request.headers["Host"])
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with serving(app) as port:
        yield port, seen


async def test_a_name_that_resolves_inward_at_delivery_is_refused_without_a_request(
        api: Api, receiver: tuple[int, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    port, seen = receiver
    resolver = FakeResolver({"hooks.shop-a.example": ["93.184.216.34"]})
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", resolver)
    key, _ = await api.shop("shop-a")
    created = await api.client.post("/v1/webhooks", headers=bearer(key), json={
        "url": f"http://hooks.shop-a.example:{port}/hook", "events": ["OrderPlaced"]})
    assert created.status_code == 201, created.text
    assert (await api.client.post("/v1/orders", json=mug_order(), headers=bearer(key))
            ).status_code == 202
    resolver.table["hooks.shop-a.example"] = ["127.0.0.1"]  # re-pointed at our own host
    async with httpx.AsyncClient(timeout=5) as client:
        assert await deliver_due(api.pool, client, DeliveryPolicy(), EgressPolicy()) == 1
    row = await api.pool.fetchrow("SELECT status, attempts, last_error FROM webhook_deliveries")
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert "refused by the egress policy" in row["last_error"]
    assert seen == []


async def an_order_for_a_loopback_webhook(api: Api, port: int,
                                          monkeypatch: pytest.MonkeyPatch) -> EgressPolicy:
    """shop-a subscribes `hooks.shop-a.example:{port}` (resolving to loopback, hence the
    returned development policy, the setting the tests run with) and places an order, so
    one delivery is due."""
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo",
                        FakeResolver({"hooks.shop-a.example": ["127.0.0.1"]}))
    key, _ = await api.shop("shop-a")
    await api.pool.execute(
        "INSERT INTO webhooks (webhook_id, shop_id, url, events, secret) "
        "VALUES ('wh_1', 'shop-a', $1, '{OrderPlaced}', 'whsec_x')",
        f"http://hooks.shop-a.example:{port}/hook")
    assert (await api.client.post("/v1/orders", json=mug_order(), headers=bearer(key))
            ).status_code == 202
    return EgressPolicy(allow_loopback=True)


async def test_a_delivery_goes_to_the_checked_address_with_the_registered_host(
        api: Api, receiver: tuple[int, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
    port, seen = receiver
    dev = await an_order_for_a_loopback_webhook(api, port, monkeypatch)
    async with httpx.AsyncClient(timeout=5) as client:
        assert await deliver_due(api.pool, client, DeliveryPolicy(), dev) == 1
    assert seen == [f"hooks.shop-a.example:{port}"]
    assert await api.pool.fetchval("SELECT status FROM webhook_deliveries") == "delivered"


async def test_a_slow_shop_endpoint_holds_no_lock_and_no_transaction_while_it_answers(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shop's endpoint answers only when the test lets it. Meanwhile the delivery row is
    free (another writer locks it without waiting) and leased: a second round, as another
    replica would run it, takes nothing. Then the outcome is recorded."""
    asked, answer = asyncio.Event(), asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        asked.set()
        await answer.wait()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with serving(app) as port:
        dev = await an_order_for_a_loopback_webhook(api, port, monkeypatch)
        async with httpx.AsyncClient(timeout=30) as client:
            round_ = asyncio.create_task(deliver_due(api.pool, client, DeliveryPolicy(), dev))
            await asyncio.wait_for(asked.wait(), 10)
            async with api.pool.acquire() as conn, conn.transaction():
                await conn.execute("SET LOCAL lock_timeout = '1s'")
                locked = await conn.fetchval(
                    "SELECT count(*) FROM (SELECT 1 FROM webhook_deliveries "
                    "FOR UPDATE NOWAIT) AS rows")
            assert locked == 1
            assert await api.pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()") == 0
            assert await deliver_due(api.pool, client, DeliveryPolicy(), dev) == 0  # leased
            answer.set()
            assert await round_ == 1
    row = await api.pool.fetchrow("SELECT status, attempts FROM webhook_deliveries")
    assert (row["status"], row["attempts"]) == ("delivered", 1)
