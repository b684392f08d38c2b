"""Every kind of rejected request, one after another: afterwards every table of the service's
schema holds exactly what it held before. Events reach Kafka only through the outbox table, so
an unchanged outbox means no event on any topic (the e2e test checks the topic itself)."""

from __future__ import annotations

import json
import time

from alur.runtime.db import advisory_key
from alur.runtime.signing import sign
from tests.api.conftest import CONFIG, Api, bearer, mug_order
from tests.api.test_limits import line, with_lines


async def test_no_rejected_request_leaves_a_row(api: Api) -> None:
    key, _ = await api.shop("shop-a")
    signing_key, secret = await api.shop("shop-s", signing=True)
    other, _ = await api.shop("shop-b")
    revoked, _ = await api.shop("shop-r")
    [k] = await api.registry.keys("shop-r")
    await api.registry.revoke_key(k.key_id)
    slow, _ = await api.shop("shop-slow", rate=0.01, burst=1)
    kept = {"Idempotency-Key": "used"}
    first = await api.client.post("/v1/orders", json=mug_order(), headers=bearer(key) | kept)
    order_id = first.json()["order_id"]
    await api.client.get("/v1/orders", headers=bearer(slow))  # spends the burst
    assert secret is not None
    raw = json.dumps(mug_order()).encode()
    ts = str(int(time.time()))
    good_sig = {"Alur-Timestamp": ts, "Alur-Signature": sign(secret, ts, "POST", "/v1/orders",
                                                             raw)}
    json_type = {"Content-Type": "application/json"}
    replay = await api.client.post("/v1/orders", content=raw, headers=bearer(signing_key)
                                   | good_sig | json_type)
    assert replay.status_code == 202
    before = await api.counts()

    rejected = [
        (401, "POST", "/v1/orders", {}, mug_order()),
        (401, "POST", "/v1/orders", bearer(revoked), mug_order()),
        (429, "POST", "/v1/orders", bearer(slow), mug_order()),
        (401, "POST", "/v1/orders", bearer(signing_key), mug_order()),
        (401, "POST", "/v1/orders", bearer(signing_key) | good_sig, raw),
        (413, "POST", "/v1/orders", bearer(key), b"x" * (CONFIG.body_limit + 1)),
        (422, "POST", "/v1/orders", bearer(key), b"{broken"),
        (422, "POST", "/v1/orders", bearer(key), with_lines(line("SKU-NOPE"))),
        (422, "POST", "/v1/orders", bearer(key), with_lines(line(currency="USD"))),
        (422, "POST", "/v1/orders", bearer(key), with_lines(line(amount=0))),
        (422, "POST", "/v1/orders", bearer(key), with_lines(line(quantity=0))),
        (422, "POST", "/v1/orders", bearer(key) | kept, mug_order(3)),
        (409, "POST", f"/v1/orders/{order_id}/reviews", bearer(key), {"rating": 5}),
        (422, "POST", f"/v1/orders/{order_id}/reviews", bearer(key), {"rating": 9}),
        (409, "POST", f"/v1/orders/{order_id}/returns", bearer(key),
         {"lines": [{"sku": "SKU-MUG", "quantity": 1}], "reason": "early"}),
        (409, "POST", f"/v1/orders/{order_id}/receipt", bearer(key), None),
        (404, "POST", f"/v1/orders/{order_id}/cancel", bearer(other), None),
        (404, "POST", "/v1/orders/ord_missing/cancel", bearer(key), None),
        (422, "POST", "/v1/webhooks", bearer(key),
         {"url": "not a url", "events": ["OrderPlaced"]}),
        (404, "POST", "/v1/webhooks/wh_missing/rotate-secret", bearer(key), None),
        (404, "DELETE", "/v1/webhooks/wh_missing", bearer(key), None),
    ]
    for status, method, path, headers, body in rejected:
        content = body if isinstance(body, bytes) else (
            None if body is None else json.dumps(body).encode())
        response = await api.client.request(method, path, content=content,
                                            headers=headers | json_type)
        assert response.status_code == status, (path, response.text)
    async with api.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", advisory_key("idem:shop-a:busy"))
        busy = await api.client.post("/v1/orders", json=mug_order(),
                                     headers=bearer(key) | {"Idempotency-Key": "busy"})
        assert busy.status_code == 409
    assert await api.counts() == before
