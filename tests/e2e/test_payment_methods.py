"""Indonesian payment methods end to end, over HTTP, with real Kafka, PostgreSQL, the gateway
simulator and the five services as processes: each method paid, expired (where it can
expire) and paid back, and each test ends with the invariant checker on its orders."""

from __future__ import annotations

import json

import httpx
import pytest

from services.payments import qris
from services.payments.gateway import VA_PREFIXES
from tests.e2e.helpers import auth, key_for, new_sku, order_body, place, set_stock, wait_until
from tests.e2e.test_branches import events_of, no_violations, reach
from tests.e2e.test_engineer_tools import alur

SHOP = "shop-e2e-idr"
PRICE = 75_000  # rupiah, whole


async def rupiah_order(services, api, method: str, quantity: int = 1,  # noqa: ANN001
                       shop: str = SHOP, **payment: object) -> tuple[str, str]:
    """A stocked SKU and an order of it from an IDR shop, paid by `method`."""
    sku = new_sku()
    await set_stock(services, [("WH-1", sku, 10)])
    body = order_body(sku, quantity, shop=shop, method=method, postal_code="10110")
    body["lines"][0]["unit_price"] = {"amount": PRICE, "currency": "IDR"}  # type: ignore[index]
    body["payment"] = {"method": method, **payment}
    return sku, await place(api, body)


async def view(api: httpx.AsyncClient, order_id: str) -> dict:
    response = await api.get(f"/v1/orders/{order_id}", headers=await auth(SHOP, "IDR"))
    assert response.status_code == 200, response.text
    return response.json()


async def pay_request(services, request_id: str) -> httpx.Response:  # noqa: ANN001
    """The customer scans the code, or approves the push in the wallet app."""
    async with httpx.AsyncClient(base_url=services.gateway_url, timeout=10) as gateway:
        return await gateway.post(f"/v1/payment-requests/{request_id}/pay")


async def return_all(api: httpx.AsyncClient, order_id: str, sku: str, quantity: int) -> None:
    returned = await api.post(f"/v1/orders/{order_id}/returns", headers=await auth(SHOP, "IDR"),
                              json={"lines": [{"sku": sku, "quantity": quantity}],
                                    "reason": "changed my mind"})
    assert returned.status_code == 202, returned.text


async def stock_released(db, order_id: str) -> None:  # noqa: ANN001
    """Wait until inventory put the order's reserved units back on sale."""
    async def released() -> bool:
        return any(e["type"] == "StockReleased" for e in await events_of(db, "inventory",
                                                                           order_id))

    await wait_until(released, 30, "the stock to be released")


async def gateway_refunds(db, order_id: str) -> list[int]:  # noqa: ANN001
    return [r["amount"] for r in await db.fetch(
        "SELECT amount FROM gateway_sim.refunds WHERE reference = $1", order_id)]


@pytest.mark.parametrize("method, payment", [
    ("qris", {}), ("ewallet", {"token": "tok_ovo", "wallet": "ovo"})])
async def test_an_app_payment_is_paid_delivered_and_paid_back_through_the_gateway(
        services, api, db, method: str, payment: dict) -> None:
    sku, order_id = await rupiah_order(services, api, method, 2, **payment)
    await reach(db, order_id, "PaymentRequested")
    shown = await view(api, order_id)
    assert shown["status"] == "awaiting_payment"
    asked = shown["app_payment"]
    assert (asked["method"], asked["amount"], asked["currency"]) == (method, 2 * PRICE, "IDR")
    if method == "qris":  # the code the shop renders pays this order's amount
        code = qris.read(asked["qr_string"])
        assert (code.dynamic, code.amount, code.bill_number) == (
            True, 2 * PRICE, asked["request_id"])
    else:
        assert (asked["wallet"], asked["qr_string"]) == ("ovo", None)
    paid = await pay_request(services, asked["request_id"])
    assert paid.status_code == 201 and paid.json()["callback_status"] == 200, paid.text
    assert (await pay_request(services, asked["request_id"])).status_code == 409  # paid once
    await reach(db, order_id, "Delivered")
    [confirmed] = [e for e in await events_of(db, "payments", order_id)
                   if e["type"] == "PaymentConfirmed"]
    assert (confirmed["method"], confirmed["gateway_reference"]) == (
        method, paid.json()["id"])
    await return_all(api, order_id, sku, 2)
    await reach(db, order_id, "OrderReturned")
    assert await gateway_refunds(db, order_id) == [2 * PRICE]
    await no_violations(services, db, [order_id])


@pytest.mark.parametrize("method, payment", [
    ("qris", {}), ("ewallet", {"token": "tok_dana", "wallet": "dana"})])
async def test_an_app_payment_left_unpaid_expires_and_cannot_be_paid_after(
        services, api, db, method: str, payment: dict) -> None:
    _, order_id = await rupiah_order(services, api, method, **payment)
    await reach(db, order_id, "PaymentRequested")
    request_id = (await view(api, order_id))["app_payment"]["request_id"]
    types = await reach(db, order_id, "OrderCancelled", timeout=120)
    assert types[-2:] == ["PaymentExpired", "OrderCancelled"]
    assert (await pay_request(services, request_id)).status_code == 410
    await stock_released(db, order_id)
    await no_violations(services, db, [order_id])


@pytest.mark.parametrize("method, payment", [
    ("qris", {}), ("ewallet", {"token": "tok_dana", "wallet": "dana"})])
async def test_the_request_of_an_order_cancelled_unpaid_is_withdrawn_and_cannot_be_paid(
        services, api, db, method: str, payment: dict) -> None:
    _, order_id = await rupiah_order(services, api, method, **payment)
    await reach(db, order_id, "PaymentRequested")
    request_id = (await view(api, order_id))["app_payment"]["request_id"]
    cancelled = await api.post(f"/v1/orders/{order_id}/cancel", headers=await auth(SHOP, "IDR"))
    assert cancelled.status_code == 200, cancelled.text

    async def withdrawn() -> bool:
        return any(e["type"] == "PaymentRequestWithdrawn" and e["request_id"] == request_id
                   for e in await events_of(db, "payments", order_id))

    await wait_until(withdrawn, 30, "the payment request to be withdrawn")
    refused = await pay_request(services, request_id)
    assert refused.status_code == 410 and "withdrew" in refused.text
    assert await gateway_refunds(db, order_id) == []  # no money moved either way
    await no_violations(services, db, [order_id])


async def test_an_e_wallet_push_declined_in_the_app_cancels_the_order_at_once(
        services, api, db) -> None:
    _, order_id = await rupiah_order(services, api, "ewallet", token="tok_ovo", wallet="ovo")
    await reach(db, order_id, "PaymentRequested")
    request_id = (await view(api, order_id))["app_payment"]["request_id"]
    async with httpx.AsyncClient(base_url=services.gateway_url, timeout=10) as gateway:
        declined = await gateway.post(f"/v1/payment-requests/{request_id}/decline")
        assert declined.status_code == 201, declined.text
        assert (await gateway.post(f"/v1/payment-requests/{request_id}/decline")
                ).status_code == 409  # once
    types = await reach(db, order_id, "OrderCancelled", timeout=30)  # not at the deadline
    assert types[-2:] == ["PaymentFailed", "OrderCancelled"]
    [failed] = [e for e in await events_of(db, "payments", order_id)
                if e["type"] == "PaymentFailed"]
    assert failed["reason"] == "declined"
    [cancelled] = [e for e in await events_of(db, "orders", order_id)
                   if e["type"] == "OrderCancelled"]
    assert cancelled["reason"] == "payment_failed"
    assert (await pay_request(services, request_id)).status_code == 410
    await stock_released(db, order_id)
    await no_violations(services, db, [order_id])


async def test_a_qris_code_cannot_be_declined_only_left_to_lapse(services, api, db) -> None:
    _, order_id = await rupiah_order(services, api, "qris")
    await reach(db, order_id, "PaymentRequested")
    request_id = (await view(api, order_id))["app_payment"]["request_id"]
    async with httpx.AsyncClient(base_url=services.gateway_url, timeout=10) as gateway:
        refused = await gateway.post(f"/v1/payment-requests/{request_id}/decline")
    assert refused.status_code == 409 and "e-wallet" in refused.text
    assert (await pay_request(services, request_id)).status_code == 201
    await reach(db, order_id, "PaymentConfirmed")


async def test_a_virtual_account_at_the_customer_s_bank_is_paid_and_paid_back(
        services, api, db) -> None:
    sku, order_id = await rupiah_order(services, api, "bank_transfer", bank="bni")
    await reach(db, order_id, "PaymentPending")
    transfer = (await view(api, order_id))["bank_transfer"]
    assert transfer["bank"] == "bni" and transfer["virtual_account"].startswith(
        VA_PREFIXES["bni"])
    async with httpx.AsyncClient(base_url=services.gateway_url, timeout=10) as gateway:
        paid = await gateway.post(f"/v1/virtual-accounts/{transfer['virtual_account']}/transfers",
                                  json={"amount": PRICE, "currency": "IDR"})
    assert paid.status_code == 201, paid.text
    await reach(db, order_id, "Delivered")
    await return_all(api, order_id, sku, 1)
    await reach(db, order_id, "OrderReturned")
    assert await gateway_refunds(db, order_id) == [PRICE]
    await no_violations(services, db, [order_id])


async def test_cash_on_delivery_is_paid_back_by_the_shop_by_hand(services, api, db) -> None:
    sku, order_id = await rupiah_order(services, api, "cod", 2)
    await reach(db, order_id, "PaymentConfirmed")
    await return_all(api, order_id, sku, 2)
    await reach(db, order_id, "OrderReturned")
    [refund] = [e for e in await events_of(db, "payments", order_id)
                if e["type"] == "RefundIssued"]
    assert (refund["manual_payout"], refund["amount"]["amount"]) == (True, 2 * PRICE)
    assert refund["refund_id"].startswith("manual:")
    assert await gateway_refunds(db, order_id) == []  # the gateway never held cash
    await no_violations(services, db, [order_id])


async def test_the_courier_collects_the_shop_s_cash_on_delivery_fee_with_the_order(
        services, api, db) -> None:
    shop = "shop-e2e-cod-fee"
    await key_for(shop, "IDR")
    terms = alur(services, "shops", "terms", shop, "--cod-fee", "5000")
    assert terms.returncode == 0 and "COD fee Rp5.000" in terms.stdout, terms.stderr
    listed = alur(services, "shops", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [mine] = [s for s in json.loads(listed.stdout) if s["shop_id"] == shop]
    assert (mine["currency"], mine["terms"]["cod_fee"], mine["terms"]["tax_rate_bp"]) == (
        "IDR", 5_000, 1100)
    keys = alur(services, "keys", "list", shop, "--json")
    assert keys.returncode == 0, keys.stderr
    listed_keys = json.loads(keys.stdout)
    assert listed_keys and all(k["shop_id"] == shop and k["revoked_at"] is None
                               for k in listed_keys), listed_keys
    _, order_id = await rupiah_order(services, api, "cod", 2, shop=shop)
    await reach(db, order_id, "PaymentConfirmed")
    placed, *_ = await events_of(db, "orders", order_id)
    assert placed["cod_fee"] == {"amount": 5_000, "currency": "IDR"}
    assert placed["total"]["amount"] == 2 * PRICE + 5_000
    [collected] = [e for e in await events_of(db, "payments", order_id)
                   if e["type"] == "PaymentConfirmed"]
    assert collected["amount"]["amount"] == 2 * PRICE + 5_000
    await no_violations(services, db, [order_id])
