"""QRIS, e-wallet push, virtual accounts per bank and cash on delivery's manual payout, on the
in-memory platform (the same services, the in-memory gateway)."""

from datetime import timedelta
from functools import reduce

import pytest
from pydantic import ValidationError

from alur.runtime.errors import InfrastructureError
from schemas import Event, Money, OrderLine, PaymentInstruction, ReturnLine
from services.orders import domain as orders
from services.payments import domain, qris
from services.payments.gateway import VA_PREFIXES
from tests.unit.builders import event
from tests.unit.fakebus import FakePlatform

PRICE = Money(amount=75_000, currency="IDR")  # Rp75.000 a mug; two of them: Rp150.000


def rupiah(order_id: str, method: str, **payment: object) -> Event:
    lines = [OrderLine(sku="MUG", quantity=2, unit_price=PRICE)]
    return event("OrderPlaced", order_id, lines=lines,
                 total=Money(amount=150_000, currency="IDR"),
                 payment=PaymentInstruction(method=method, **payment))  # type: ignore[arg-type]


async def placed(order: Event) -> FakePlatform:
    platform = FakePlatform()
    await platform.set_stock("WH-1", "MUG", 10)
    await platform.place(order)
    await platform.run()
    return platform


def only(platform: FakePlatform, type_: str) -> Event:
    [found] = [e for e in platform.events("payments") if e.type == type_]
    return found


def on_hand(platform: FakePlatform) -> dict[str, int]:
    return platform.states["inventory"].extra["stock"][("WH-1", "MUG")]


async def test_a_qris_code_paid_in_time_is_shipped_and_its_customer_was_shown_the_code() -> None:
    platform = await placed(rupiah("o1", "qris"))
    assert platform.stream("orders", "o1")[-1] == "PaymentRequested"
    asked = only(platform, "PaymentRequested").data
    code = qris.read(asked.qr_string)
    assert (asked.method, code.dynamic, code.amount, code.bill_number) == (
        "qris", True, 150_000, asked.request_id)
    [mail] = [m for m in platform.mailer.sent if "in your app" in m["subject"]]
    assert asked.qr_string in mail["body"] and "150,000" in mail["body"]
    await platform.transfer_arrives("o1")
    await platform.run()
    assert platform.stream("orders", "o1")[-1] == "Delivered"
    confirmed = only(platform, "PaymentConfirmed").data
    assert (confirmed.method, confirmed.amount.amount) == ("qris", 150_000)
    assert platform.gateway.charged("o1") == 0 and on_hand(platform) == {"on_hand": 8,
                                                                         "reserved": 0}


async def test_an_e_wallet_push_not_approved_expires_and_the_stock_goes_back() -> None:
    platform = await placed(rupiah("o1", "ewallet", token="tok_ovo", wallet="ovo"))
    asked = only(platform, "PaymentRequested").data
    assert (asked.wallet, asked.qr_string) == ("ovo", None)
    assert any("Open your OVO app" in m["body"] for m in platform.mailer.sent)
    await platform.run(timedelta(hours=1))
    assert platform.stream("payments", "o1")[-2:] == ["PaymentExpired", "OrderCancelled"]
    assert on_hand(platform) == {"on_hand": 10, "reserved": 0}


async def test_an_e_wallet_push_declined_in_the_app_fails_the_payment_at_once() -> None:
    platform = await placed(rupiah("o1", "ewallet", token="tok_gopay", wallet="gopay"))
    asked = only(platform, "PaymentRequested").data
    await platform.push_declined("o1")
    await platform.run()
    failed = only(platform, "PaymentFailed").data
    assert (failed.reason, failed.amount.amount) == ("declined", 150_000)
    assert platform.stream("payments", "o1")[-1] == "OrderCancelled"
    assert on_hand(platform) == {"on_hand": 10, "reserved": 0}  # not held till the deadline
    with pytest.raises(LookupError):
        platform.gateway.pay_into(asked.request_id, asked.amount)
    state = reduce(domain.evolve, [s.event for s in platform.states["payments"].streams["o1"]],
                   domain.PaymentState())
    with pytest.raises(domain.TransferMismatch):  # a push the order never made
        domain.request_declined(state, "o1", "pr_other")


async def test_an_app_payment_whose_callback_was_lost_is_found_at_its_deadline() -> None:
    platform = await placed(rupiah("o1", "ewallet", token="tok_dana", wallet="dana"))
    asked = only(platform, "PaymentRequested").data
    platform.gateway.pay_into(asked.request_id, asked.amount)  # approved; no callback came
    await platform.run(timedelta(hours=1))
    assert "PaymentExpired" not in platform.stream("payments", "o1")
    assert only(platform, "PaymentConfirmed").data.method == "ewallet"


async def test_the_code_of_a_cancelled_order_is_withdrawn_and_cannot_be_paid() -> None:
    platform = await placed(rupiah("o1", "qris"))
    asked = only(platform, "PaymentRequested").data
    await platform.customer("o1", lambda s: orders.cancel(s, "o1"))
    await platform.run()
    withdrawn = only(platform, "PaymentRequestWithdrawn").data
    assert withdrawn.request_id == asked.request_id
    with pytest.raises(LookupError):  # the code still on the customer's screen is refused
        platform.gateway.pay_into(asked.request_id, asked.amount)
    assert "RefundIssued" not in platform.stream("payments", "o1")
    assert on_hand(platform) == {"on_hand": 10, "reserved": 0}


async def test_a_code_paid_the_moment_before_its_order_was_cancelled_is_paid_back() -> None:
    platform = await placed(rupiah("o1", "qris"))
    asked = only(platform, "PaymentRequested").data
    platform.gateway.pay_into(asked.request_id, asked.amount)  # paid; the callback is late
    await platform.customer("o1", lambda s: orders.cancel(s, "o1"))
    await platform.run()
    assert "PaymentRequestWithdrawn" not in platform.stream("payments", "o1")  # too late
    await platform.transfer_arrives("o1")
    await platform.run()
    refund = only(platform, "RefundIssued").data
    assert (refund.reason, refund.amount.amount, refund.manual_payout) == (
        "late_payment", 150_000, False)
    assert platform.gateway.refunded("o1") == 1


async def test_an_e_wallet_payment_is_paid_back_through_the_gateway_on_return() -> None:
    platform = await placed(rupiah("o1", "ewallet", token="tok_gopay"))
    await platform.transfer_arrives("o1")
    await platform.run()
    await platform.customer("o1", lambda s: [orders.request_return(
        s, "o1", "ret_1", [ReturnLine(sku="MUG", quantity=2)], "too big", platform.clock, 30)])
    await platform.run()
    refund = only(platform, "RefundIssued").data
    assert (refund.amount.amount, refund.manual_payout) == (150_000, False)
    assert refund.refund_id.startswith("re_fake_") and platform.gateway.refunded("o1") == 1


async def test_cash_on_delivery_is_paid_back_by_hand_and_never_through_the_gateway() -> None:
    platform = await placed(rupiah("o1", "cod"))
    assert only(platform, "PaymentConfirmed").data.method == "cod"
    await platform.customer("o1", lambda s: orders.goodwill_refund(
        s, "o1", "gw_1", Money(amount=10_000, currency="IDR"), "late"))
    await platform.run()
    await platform.customer("o1", lambda s: [orders.request_return(
        s, "o1", "ret_1", [ReturnLine(sku="MUG", quantity=1)], "broken", platform.clock, 30)])
    await platform.run()
    refunds = [e.data for e in platform.events("payments") if e.type == "RefundIssued"]
    assert [(r.reason, r.amount.amount, r.refund_id, r.manual_payout) for r in refunds] == [
        ("goodwill", 10_000, "manual:o1:goodwill:gw_1", True),
        ("returned", 75_000, "manual:o1:return:ret_1", True)]
    assert platform.gateway.refunded("o1") == 0
    assert any("pay it back by hand" in m["body"] for m in platform.mailer.sent)


@pytest.mark.parametrize("bank", ["bca", "mandiri", "bni", "bri"])
async def test_a_virtual_account_is_opened_at_the_customer_s_bank(bank: str) -> None:
    platform = await placed(rupiah("o1", "bank_transfer", bank=bank))
    pending = only(platform, "PaymentPending").data
    assert pending.bank == bank and pending.virtual_account.startswith(VA_PREFIXES[bank])
    await platform.transfer_arrives("o1")
    await platform.run()
    assert only(platform, "PaymentConfirmed").data.method == "bank_transfer"


async def test_a_virtual_account_without_a_bank_is_opened_at_bca() -> None:
    platform = await placed(rupiah("o1", "bank_transfer"))
    pending = only(platform, "PaymentPending").data
    assert pending.bank == "bca"
    [mail] = [m for m in platform.mailer.sent if "by bank transfer" in m["subject"]]
    assert f"BCA virtual account {pending.virtual_account}" in mail["body"]


def test_a_bank_or_wallet_is_named_only_for_its_method() -> None:
    with pytest.raises(ValidationError, match="bank is for bank_transfer only"):
        PaymentInstruction(method="card", token="tok_visa", bank="bca")
    with pytest.raises(ValidationError, match="wallet is for ewallet only"):
        PaymentInstruction(method="qris", wallet="ovo")
    with pytest.raises(ValidationError):
        PaymentInstruction(method="bank_transfer", bank="citibank")  # type: ignore[arg-type]


def test_qris_is_for_rupiah_orders_only() -> None:
    order = event("OrderPlaced").data
    with pytest.raises(orders.InvalidOrder, match="QRIS pays rupiah only"):
        orders.place_order("o1", order.customer, order.lines,
                           PaymentInstruction(method="qris"), order.delivery)


def test_a_qris_payload_has_the_crc_of_its_text() -> None:
    assert qris.crc16("123456789") == "29B1"  # CRC-16/CCITT-FALSE's check value
    text = qris.payload(merchant_id="ID1", merchant_name="TOKO", city="BANDUNG",
                        postal_code="40111", amount=25_000, bill_number="ord_9")
    assert qris.read(text).amount == 25_000
    tampered = text.replace("540525000", "540515000")
    with pytest.raises(qris.InvalidPayload, match="CRC"):
        qris.read(tampered)
    with pytest.raises(qris.InvalidPayload):
        qris.read(text[:-12] + qris.crc16(text[:-12]))


def test_a_gateway_code_for_another_amount_is_refused_before_a_customer_sees_it() -> None:
    command = domain.RequestPayment("o1", "pay_o1", Money(amount=150_000, currency="IDR"),
                                    "qris", idempotency_key="o1:request")
    wrong = qris.payload(merchant_id="ID1", merchant_name="TOKO", city="BANDUNG",
                         postal_code="40111", amount=15_000, bill_number="o1")
    at = event("OrderPlaced").time
    with pytest.raises(InfrastructureError) as refused:
        domain.requested(command, "pr_1", at, wrong, None)
    assert refused.value.retriable is False
    right = qris.payload(merchant_id="ID1", merchant_name="TOKO", city="BANDUNG",
                         postal_code="40111", amount=150_000, bill_number="o1")
    assert domain.requested(command, "pr_1", at, right, None).qr_string == right
