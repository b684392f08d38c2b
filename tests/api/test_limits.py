"""Abuse and bad input: size and rate limits, bounds, the catalogue, currencies, amounts."""

from __future__ import annotations

import asyncio
import socket

import pytest

from alur.runtime.http import EmbeddedServer, server_config
from services.orders.api import create_app
from tests.api.conftest import CONFIG, Api, bearer, mug_order
from tests.api.test_auth import assert_problem, orders_in_store


def with_lines(*lines: dict[str, object]) -> dict[str, object]:
    body = mug_order()
    body["lines"] = list(lines)
    return body


def line(sku: str = "SKU-MUG", quantity: int = 1, amount: int = 1250,
         currency: str = "EUR") -> dict[str, object]:
    return {"sku": sku, "quantity": quantity,
            "unit_price": {"amount": amount, "currency": currency}}


async def test_a_body_over_the_limit_is_413_announced_or_streamed(api: Api) -> None:
    key, _ = await api.shop("shop-a")
    big = b'{"pad": "' + b"x" * CONFIG.body_limit + b'"}'
    announced = await api.client.post("/v1/orders", content=big, headers=bearer(key))
    assert_problem(announced, 413, "body-too-large")

    async def chunks():  # noqa: ANN202  (no Content-Length: sent chunked)
        for i in range(0, len(big), 4096):
            yield big[i:i + 4096]

    streamed = await api.client.post("/v1/orders", content=chunks(), headers=bearer(key))
    assert_problem(streamed, 413, "body-too-large")
    assert await orders_in_store(api) == 0


async def test_a_shop_over_its_rate_gets_429_with_retry_after(api: Api) -> None:
    key, _ = await api.shop("shop-slow", rate=0.5, burst=2)
    other, _ = await api.shop("shop-other")
    answers = [await api.client.get("/v1/orders", headers=bearer(key)) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert_problem(answers[2], 429, "rate-limited")
    assert int(answers[2].headers["Retry-After"]) >= 1
    assert (await api.client.get("/v1/orders", headers=bearer(other))).status_code == 200


@pytest.mark.parametrize("body, kind, field", [
    (with_lines(*(line(f"SKU-{i}") for i in range(101))), "validation-error", "lines"),
    (with_lines(), "validation-error", "lines"),
    (with_lines(line(quantity=0)), "validation-error", "lines.0.quantity"),
    (with_lines(line(quantity=1001)), "validation-error", "lines.0.quantity"),
    (with_lines(line(amount=-5)), "validation-error", "lines.0.unit_price.amount"),
    (with_lines(line(), line("SKU-NOPE")), "unknown-sku", "lines.1.sku"),
    (mug_order() | {"shop_id": "shop-b"}, "validation-error", "shop_id"),
    (mug_order() | {"surprise": 1}, "validation-error", "surprise"),
])
async def test_bad_orders_are_422_naming_the_field(api: Api, body: dict[str, object], kind: str,
                                                   field: str) -> None:
    key, _ = await api.shop("shop-a")
    response = await api.client.post("/v1/orders", json=body, headers=bearer(key))
    assert_problem(response, 422, kind)
    assert field in [e["field"] for e in response.json()["errors"]]
    assert await orders_in_store(api) == 0


@pytest.mark.parametrize("body, kind", [
    (with_lines(line(currency="USD")), "currency-mismatch"),
    (with_lines(line(), line("SKU-PLATE", currency="USD")), "currency-mismatch"),
    (with_lines(line(amount=0)), "invalid-order"),
    (with_lines(line(), line()), "invalid-order"),
    (mug_order() | {"payment": {"method": "card"}}, "invalid-order"),
])
async def test_orders_the_domain_refuses_are_422(api: Api, body: dict[str, object],
                                                 kind: str) -> None:
    key, _ = await api.shop("shop-a")
    assert_problem(await api.client.post("/v1/orders", json=body, headers=bearer(key)),
                   422, kind)
    assert await orders_in_store(api) == 0


async def test_errors_never_show_internals(api: Api) -> None:
    key, _ = await api.shop("shop-a")
    for response in (
        await api.client.post("/v1/orders", content=b"{not json", headers=bearer(key)),
        await api.client.get("/v1/orders?cursor=%00%01", headers=bearer(key)),
        await api.client.get("/v1/orders?limit=100000", headers=bearer(key)),
        await api.client.put("/v1/orders", headers=bearer(key)),
        await api.client.get("/v1/nothing-here", headers=bearer(key)),
    ):
        assert response.status_code in (404, 405, 422), response.text
        assert response.headers["content-type"] == "application/problem+json"
        for leak in ("Traceback", "asyncpg", "SELECT", 'File "'):
            assert leak not in response.text


async def test_a_database_outage_is_a_503_with_retry_after_and_no_internals(api: Api) -> None:
    key, _ = await api.shop("shop-a")
    await api.pool.close()
    for response in (await api.client.post("/v1/orders", json=mug_order(), headers=bearer(key)),
                     await api.client.get("/v1/orders", headers=bearer(key))):
        assert_problem(response, 503, "unavailable")
        assert response.headers["Retry-After"] == "5"
        assert "pool" not in response.text and "asyncpg" not in response.text


async def test_text_the_database_cannot_hold_is_422_naming_the_field(api: Api) -> None:
    key, _ = await api.shop("shop-a")
    body = mug_order()
    body["customer"]["name"] = "Ada\x00"  # type: ignore[index]
    response = await api.client.post("/v1/orders", json=body, headers=bearer(key))
    assert_problem(response, 422, "validation-error")
    assert response.json()["errors"][0]["field"] == "customer.name"
    assert_problem(await api.client.get("/v1/orders/ord_%00", headers=bearer(key)), 422,
                   "validation-error")


def _send_whole_body_then_read(port: int, size: int, chunked: bool) -> bytes:
    """A client that writes its whole request before reading a byte of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        head = ("POST /v1/orders HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                + ("Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {size}\r\n")
                + "\r\n").encode()
        body = b"x" * size
        if chunked:
            body = b"".join(f"{len(body[i:i + 65536]):x}\r\n".encode() + body[i:i + 65536]
                            + b"\r\n" for i in range(0, size, 65536)) + b"0\r\n\r\n"
        sock.sendall(head + body)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


@pytest.mark.parametrize("size", [1_000_000, 10_000_000])
@pytest.mark.parametrize("chunked", [False, True])
async def test_a_client_that_sends_its_whole_body_first_reads_its_413(
        api: Api, size: int, chunked: bool) -> None:
    app = create_app(api.pool, lambda: None, CONFIG)  # type: ignore[arg-type,return-value]
    server = EmbeddedServer(server_config(app, "127.0.0.1", 0, "warning", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        answer = await asyncio.to_thread(_send_whole_body_then_read, port, size, chunked)
    finally:
        server.should_exit = True
        await serving
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"body-too-large" in answer
