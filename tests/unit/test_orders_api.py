"""The orders API over the in-memory unit of work: what a shop sees, and what is written."""

import httpx
import pytest

from alur.runtime.errors import InfrastructureError
from alur.runtime.memory import InMemoryOutbox, InMemoryUnitOfWork, MemoryState
from services.orders.api import create_app
from services.orders.bootstrap import order_view
from tests.e2e.helpers import order_body


def client(new_uow, state: MemoryState) -> httpx.AsyncClient:  # noqa: ANN001
    async def load(order_id: str):  # noqa: ANN202
        return order_view(state.streams.get(order_id, []))

    app = create_app(new_uow, load)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                             base_url="http://test")


async def test_an_accepted_order_is_recorded_and_in_the_outbox_before_the_202() -> None:
    state = MemoryState()
    async with client(lambda: InMemoryUnitOfWork(state), state) as api:
        response = await api.post("/v1/orders", json=order_body("MUG", quantity=2))
        assert response.status_code == 202
        order_id = response.json()["order_id"]
        assert response.json()["status_url"] == f"/v1/orders/{order_id}"
        [row] = await InMemoryOutbox(state).unpublished(10)
        assert (row.topic, row.key) == ("orders", order_id.encode())
        view = (await api.get(f"/v1/orders/{order_id}")).json()
        assert view["status"] == "placed" and view["total_amount"] == 2500


@pytest.mark.parametrize("change, field", [
    ({"lines": []}, "lines"),
    ({"customer": {"customer_id": "c", "email": "not-an-email", "name": "A"}}, "customer.email"),
    ({"channel": "carrier-pigeon"}, "channel"),
])
async def test_invalid_bodies_are_422_problems_naming_the_field(change, field: str) -> None:
    state = MemoryState()
    async with client(lambda: InMemoryUnitOfWork(state), state) as api:
        response = await api.post("/v1/orders", json={**order_body("MUG"), **change})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]
    assert state.outbox == [] and state.streams == {}


async def test_an_order_the_domain_refuses_is_a_422_and_nothing_is_written() -> None:
    state, body = MemoryState(), order_body("MUG")
    body["payment"] = {"method": "bank_transfer"}
    async with client(lambda: InMemoryUnitOfWork(state), state) as api:
        response = await api.post("/v1/orders", json=body)
    assert response.status_code == 422 and "not supported" in response.json()["detail"]
    assert state.outbox == [] and state.streams == {}


class DownUnitOfWork(InMemoryUnitOfWork):
    async def __aenter__(self):  # noqa: ANN204
        raise InfrastructureError("PostgreSQL unavailable: connection refused")


async def test_a_database_outage_is_a_503_with_retry_after_and_no_internals() -> None:
    state = MemoryState()
    async with client(lambda: DownUnitOfWork(state), state) as api:
        response = await api.post("/v1/orders", json=order_body("MUG"))
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert "PostgreSQL" not in response.text
