"""The partner-facing endpoints (gateway callbacks, carrier webhooks) answer every error as
RFC 9457 problem details, and a 401 names the signature scheme it wants."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from alur.runtime.memory import InMemoryUnitOfWork, MemoryState
from services.payments import bootstrap as payments
from services.payments import callbacks
from services.payments.gateway import InMemoryGateway
from services.shipping import bootstrap as shipping
from services.shipping import webhooks


def gateway_callbacks() -> FastAPI:
    state = MemoryState()
    wired = payments.wiring(InMemoryGateway(), "http://127.0.0.1:1", 60.0, 60.0)
    return callbacks.create_app(lambda: InMemoryUnitOfWork(state), wired, secret="s",
                                tolerance=300.0)


def carrier_webhooks() -> FastAPI:
    state = MemoryState()
    return webhooks.create_app(lambda: InMemoryUnitOfWork(state), shipping.DECIDER,
                               source=shipping.SOURCE, secrets={"kilat": "s"}, tolerance=300.0)


def is_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "about:blank" and body["status"] == status and body["detail"]
    assert body["title"]  # the status's phrase
    return body


@pytest.mark.parametrize(("app", "path", "prefix"), [
    (gateway_callbacks, callbacks.CALLBACK_PATH, "Gateway"),
    (carrier_webhooks, "/v1/carriers/kilat/events", "Carrier")])
async def test_unsigned_unknown_and_wrong_method_requests_get_problem_details(
        app, path: str, prefix: str) -> None:  # noqa: ANN001
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app()),
                                 base_url="http://partner") as client:
        unsigned = await client.post(path, content=b"{}")
        is_problem(unsigned, 401)
        assert unsigned.headers["WWW-Authenticate"].startswith(f"{prefix}-Signature realm=")
        assert f"{prefix}-Timestamp" in unsigned.headers["WWW-Authenticate"]
        is_problem(await client.get("/v1/nowhere"), 404)
        is_problem(await client.get(path), 405)
