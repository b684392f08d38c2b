"""Bodies the JSON parser or the types refuse: every one a 4xx problem, never a 500, on every
route that takes a body, and nothing written. Duplicate keys are refused, not last-one-wins."""

from __future__ import annotations

import json

import pytest

from tests.api.conftest import Api, bearer, mug_order
from tests.api.test_auth import assert_problem

UNPARSABLE = {
    "nested 8,000 deep": b'{"a": ' + b"[" * 8_000 + b"]" * 8_000 + b"}",  # within 16 KiB
    "nested 40 deep": b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}",
    "a 5,000-digit integer": b'{"rating": ' + b"9" * 5000 + b"}",
    "invalid UTF-8": b'{"reason": "\xff\xfe"}',
    "NaN": b'{"rating": NaN}',
    "Infinity by exponent": b'{"rating": 1e999}',
    "duplicate keys": b'{"rating": 5, "rating": 1}',
    "truncated": b'{"rating": ',
}


def routes(order_id: str) -> list[str]:
    return ["/v1/orders", "/v1/pos/sales", "/v1/webhooks", f"/v1/orders/{order_id}/reviews",
            f"/v1/orders/{order_id}/returns"]


@pytest.mark.parametrize("what", sorted(UNPARSABLE))
async def test_a_body_the_parser_refuses_is_a_422_problem_on_every_route(
        api: Api, what: str) -> None:
    key, _ = await api.shop("shop-a")
    placed = await api.client.post("/v1/orders", json=mug_order(), headers=bearer(key))
    before = await api.counts()
    for path in routes(placed.json()["order_id"]):
        response = await api.client.post(path, content=UNPARSABLE[what], headers={
            **bearer(key), "Content-Type": "application/json"})
        assert_problem(response, 422, "validation-error")
        assert "not valid JSON" in response.json()["detail"], (path, response.text)
    assert await api.counts() == before


async def test_duplicate_keys_in_an_order_are_refused_not_last_one_wins(api: Api) -> None:
    key, _ = await api.shop("shop-a")
    raw = json.dumps(mug_order()).replace(
        '"payment": {"method": "card"', '"payment": {"method": "card", "method": "cod"')
    assert '"method": "cod"' in raw
    response = await api.client.post("/v1/orders", content=raw.encode(), headers={
        **bearer(key), "Content-Type": "application/json"})
    assert_problem(response, 422, "validation-error")
    assert "duplicate key 'method'" in response.json()["detail"]
    assert await api.pool.fetchval("SELECT count(*) FROM events") == 0


def with_line(**changes: object) -> dict[str, object]:
    body = mug_order()
    lines = body["lines"]
    assert isinstance(lines, list)
    line = dict(lines[0])
    unit_price = dict(line["unit_price"])
    for name, value in changes.items():
        if name == "amount":
            unit_price["amount"] = value
        else:
            line[name] = value
    line["unit_price"] = unit_price
    body["lines"] = [line]
    return body


@pytest.mark.parametrize("field, value", [
    ("quantity", True), ("quantity", "1"), ("quantity", 1.0), ("quantity", 1.5),
    ("amount", "1250"), ("amount", 1250.0), ("amount", True), ("amount", None),
])
async def test_quantities_and_money_must_be_json_integers(api: Api, field: str,
                                                          value: object) -> None:
    key, _ = await api.shop("shop-a")
    response = await api.client.post("/v1/orders", json=with_line(**{field: value}),
                                     headers=bearer(key))
    assert_problem(response, 422, "validation-error")
    where = "lines.0.quantity" if field == "quantity" else "lines.0.unit_price.amount"
    assert where in {e["field"] for e in response.json()["errors"]}, response.text
    assert await api.pool.fetchval("SELECT count(*) FROM events") == 0


async def test_a_review_rating_must_be_an_integer(api: Api) -> None:
    key, _ = await api.shop("shop-a")
    order_id = (await api.client.post("/v1/orders", json=mug_order(), headers=bearer(key))
                ).json()["order_id"]
    for rating in (True, "5", 5.0):
        response = await api.client.post(f"/v1/orders/{order_id}/reviews",
                                         json={"rating": rating}, headers=bearer(key))
        assert_problem(response, 422, "validation-error")
