"""Every way a request can fail to prove who sent it, and the one way it succeeds."""

from __future__ import annotations

import json
import time

import pytest

from alur.runtime.signing import sign
from services.orders.api.problems import PROBLEM_BASE
from tests.api.conftest import Api, bearer, mug_order


def signed(secret: str, body: dict[str, object] | None, path: str = "/v1/orders",
           at: float | None = None, method: str = "POST") -> tuple[bytes, dict[str, str]]:
    raw = b"" if body is None else json.dumps(body).encode()
    timestamp = str(int(at if at is not None else time.time()))
    return raw, {"Alur-Timestamp": timestamp, "Content-Type": "application/json",
                 "Alur-Signature": sign(secret, timestamp, method, path, raw)}


async def orders_in_store(api: Api) -> int:
    return int(await api.pool.fetchval("SELECT count(DISTINCT stream_id) FROM events"))


def assert_problem(response, status: int, kind: str) -> None:  # noqa: ANN001
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == PROBLEM_BASE + kind
    if status == 401:  # RFC 9110: a 401 names how to authenticate
        scheme = "Alur-Signature " if "signature" in kind else "Bearer "
        assert response.headers["WWW-Authenticate"].startswith(scheme), response.headers


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer"}, {"Authorization": "Basic YWxhZGRpbjpvcGVuc2VzYW1l"},
    {"Authorization": "Bearer alur_sk_not-a-key-we-made"}, {"Authorization": "Bearer x" * 50},
])
async def test_a_missing_or_wrong_key_is_401(api: Api, headers: dict[str, str]) -> None:
    for response in (await api.client.post("/v1/orders", json=mug_order(), headers=headers),
                     await api.client.get("/v1/orders", headers=headers),
                     await api.client.get("/v1/webhooks", headers=headers)):
        assert_problem(response, 401, "unauthenticated")
        assert "WWW-Authenticate" in response.headers
    assert await orders_in_store(api) == 0


async def test_a_revoked_key_stops_working_at_once(api: Api) -> None:
    key, _ = await api.shop("shop-a")
    assert (await api.client.get("/v1/orders", headers=bearer(key))).status_code == 200
    [listed] = await api.registry.keys("shop-a")
    await api.registry.revoke_key(listed.key_id)
    assert_problem(await api.client.get("/v1/orders", headers=bearer(key)), 401,
                   "unauthenticated")


async def test_a_signing_shop_s_correctly_signed_request_is_accepted(api: Api) -> None:
    key, secret = await api.shop("shop-s", signing=True)
    assert secret is not None
    raw, headers = signed(secret, mug_order())
    response = await api.client.post("/v1/orders", content=raw, headers=bearer(key) | headers)
    assert response.status_code == 202, response.text
    path = f"/v1/orders/{response.json()['order_id']}"
    _, get_headers = signed(secret, None, path=path, method="GET")
    got = await api.client.get(path, headers=bearer(key) | get_headers)
    assert got.status_code == 200, got.text


async def test_bad_expired_and_replayed_signatures_are_refused(api: Api) -> None:
    key, secret = await api.shop("shop-s", signing=True)
    assert secret is not None
    raw, headers = signed(secret, mug_order())
    unsigned = await api.client.post("/v1/orders", content=raw,
                                     headers=bearer(key) | {"Content-Type": "application/json"})
    assert_problem(unsigned, 401, "invalid-signature")
    tampered = raw.replace(b'"quantity": 1', b'"quantity": 9')
    assert_problem(await api.client.post("/v1/orders", content=tampered,
                                         headers=bearer(key) | headers), 401, "invalid-signature")
    wrong_secret = signed("alur_ss_guess", mug_order())
    assert_problem(await api.client.post("/v1/orders", content=wrong_secret[0],
                                         headers=bearer(key) | wrong_secret[1]),
                   401, "invalid-signature")
    other_path = signed(secret, mug_order(), path="/v1/webhooks")
    assert_problem(await api.client.post("/v1/orders", content=other_path[0],
                                         headers=bearer(key) | other_path[1]),
                   401, "invalid-signature")
    for skew in (-301, 301):
        old = signed(secret, mug_order(), at=time.time() + skew)
        assert_problem(await api.client.post("/v1/orders", content=old[0],
                                             headers=bearer(key) | old[1]),
                       401, "signature-expired")
    assert await orders_in_store(api) == 0

    first = await api.client.post("/v1/orders", content=raw, headers=bearer(key) | headers)
    assert first.status_code == 202
    replayed = await api.client.post("/v1/orders", content=raw, headers=bearer(key) | headers)
    assert_problem(replayed, 401, "signature-replayed")
    assert await orders_in_store(api) == 1
