"""Gateway and mailer contracts: the fakes behave as the simulator and a real SMTP exchange."""

import asyncio
import email
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiohttp import web

from alur.runtime.errors import InfrastructureError
from alur.simulators.smtp import read_messages
from schemas import Money
from services.notifications.mailer import InMemoryMailer, SmtpMailer
from services.payments import qris
from services.payments.gateway import VA_PREFIXES, HttpGateway, InMemoryGateway
from tests.loopback import serving

EUR = Money(amount=1999, currency="EUR")


@pytest.fixture(params=["memory", "http"])
async def gateway(request, infra):  # noqa: ANN001, ANN201
    if request.param == "memory":
        yield InMemoryGateway()
        return
    real = HttpGateway(infra.gateway_url)
    yield real
    await real.close()


async def test_a_charge_succeeds_once_per_idempotency_key(gateway) -> None:
    ref = f"o-{uuid.uuid4().hex}"
    first = await gateway.charge(f"{ref}:capture", ref, EUR, "tok_visa")
    again = await gateway.charge(f"{ref}:capture", ref, EUR, "tok_visa")
    assert first.succeeded and again == first


@pytest.mark.parametrize("token, reason", [("tok_decline", "card_declined"),
                                           ("tok_insufficient_funds", "insufficient_funds")])
async def test_test_tokens_decline_deterministically(gateway, token: str, reason: str) -> None:
    ref = f"o-{uuid.uuid4().hex}"
    result = await gateway.charge(f"{ref}:capture", ref, EUR, token)
    assert (result.succeeded, result.reason) == (False, reason)


async def test_a_reused_key_with_another_request_is_refused(gateway) -> None:
    ref = f"o-{uuid.uuid4().hex}"
    await gateway.charge(f"{ref}:capture", ref, EUR, "tok_visa")
    with pytest.raises(InfrastructureError) as caught:
        await gateway.charge(f"{ref}:capture", ref, Money(amount=1, currency="EUR"), "tok_visa")
    assert caught.value.retriable is False


async def test_a_transfer_account_is_opened_once_per_key_and_request(gateway) -> None:
    ref = f"o-{uuid.uuid4().hex}"
    due = datetime.now(UTC) + timedelta(hours=1)
    callback = "http://127.0.0.1:9/v1/gateway/callbacks"
    account = await gateway.open_transfer(f"{ref}:transfer", ref, EUR, due, callback)
    assert await gateway.open_transfer(f"{ref}:transfer", ref, EUR, due, callback) == account
    with pytest.raises(InfrastructureError) as caught:  # another expiry under the same key
        await gateway.open_transfer(f"{ref}:transfer", ref, EUR, due + timedelta(seconds=1),
                                    callback)
    assert caught.value.retriable is False


async def pay_into(gateway, infra, account: str, amount: Money) -> None:  # noqa: ANN001
    """The customer's bank pays into the account (no callback reaches anyone here)."""
    if isinstance(gateway, InMemoryGateway):
        gateway.pay_into(account, amount)
        return
    async with httpx.AsyncClient(base_url=infra.gateway_url) as client:
        paid = await client.post(f"/v1/virtual-accounts/{account}/transfers",
                                 json={"amount": amount.amount, "currency": amount.currency})
        assert paid.status_code == 201


async def test_what_was_paid_into_an_account_can_be_asked(gateway, infra) -> None:
    ref = f"o-{uuid.uuid4().hex}"
    due = datetime.now(UTC) + timedelta(hours=1)
    account = await gateway.open_transfer(f"{ref}:transfer", ref, EUR, due,
                                          "http://127.0.0.1:9/v1/gateway/callbacks")
    assert await gateway.transfers(account) == []
    await pay_into(gateway, infra, account, EUR)
    [transfer] = await gateway.transfers(account)
    assert transfer.amount == EUR and transfer.transfer_id.startswith("tr_")
    assert await gateway.transfers("VA-no-such-account") == []


async def test_a_transfer_s_callback_is_retried_until_it_is_acknowledged(infra) -> None:
    """The merchant is down for the first attempts (503, then nothing listening): the gateway
    keeps the report and delivers it once the merchant answers 2xx."""
    answers = [503, 503]
    received: list[dict[str, object]] = []

    async def callback(request: web.Request) -> web.Response:
        if answers:
            return web.Response(status=answers.pop(0))
        received.append(await request.json())
        return web.json_response({"status": "recorded"})

    app = web.Application()
    app.router.add_post("/v1/gateway/callbacks", callback)
    async with serving(app) as port:
        ref = f"o-{uuid.uuid4().hex}"
        gateway = HttpGateway(infra.gateway_url)
        account = await gateway.open_transfer(
            f"{ref}:transfer", ref, EUR, datetime.now(UTC) + timedelta(hours=1),
            f"http://127.0.0.1:{port}/v1/gateway/callbacks")
        await gateway.close()
        await pay_into(gateway, infra, account, EUR)
        deadline = asyncio.get_running_loop().time() + 30
        while not received and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.2)
    assert [r["reference"] for r in received] == [ref] and answers == []


async def test_an_unreachable_gateway_is_a_retriable_error() -> None:
    gateway = HttpGateway("http://127.0.0.1:9", timeout=1.0)
    with pytest.raises(InfrastructureError) as caught:
        await gateway.charge("k", "o1", EUR, "tok_visa")
    assert caught.value.retriable is True
    await gateway.close()


@pytest.fixture(params=["memory", "smtp"])
async def mailer(request, infra):  # noqa: ANN001, ANN201
    if request.param == "memory":
        fake = InMemoryMailer()
        yield fake, lambda: [m["message_id"] for m in fake.sent]
        return
    real = SmtpMailer("127.0.0.1", infra.smtp_port)
    yield real, lambda: [
        email.message_from_bytes(raw)["Message-ID"] for raw in read_messages(infra.mail_dir)]
    await real.close()


async def test_sent_messages_arrive_with_their_message_ids(mailer) -> None:
    sender, received = mailer
    ids = [f"<{uuid.uuid4().hex}@alur.local>" for _ in range(3)]
    for message_id in ids:  # one session carries several messages
        await sender.send("ada@example.com", "Your order", "Hello Ada\n", message_id)
    assert set(ids) <= set(received())


async def test_an_unreachable_smtp_server_is_a_retriable_error() -> None:
    mailer = SmtpMailer("127.0.0.1", 9)
    with pytest.raises(InfrastructureError) as caught:
        await mailer.send("a@example.com", "s", "b", "<x@y>")
    assert caught.value.retriable is True
    await mailer.close()


IDR = Money(amount=150000, currency="IDR")


@pytest.mark.parametrize("bank", ["bca", "mandiri", "bni", "bri"])
async def test_a_virtual_account_is_opened_at_the_bank_asked(gateway, bank: str) -> None:
    ref = f"o-{uuid.uuid4().hex}"
    account = await gateway.open_transfer(f"{ref}:transfer", ref, IDR,
                                          datetime.now(UTC) + timedelta(hours=1),
                                          "http://127.0.0.1:9/v1/gateway/callbacks", bank)
    assert account.startswith(VA_PREFIXES[bank]) and len(account) == 16


async def test_a_qris_request_carries_a_dynamic_code_for_the_amount_once_per_key(gateway) -> None:
    ref = f"ord_{uuid.uuid4().hex}"
    due, callback = datetime.now(UTC) + timedelta(hours=1), "http://127.0.0.1:9/cb"
    request = await gateway.request_payment(f"{ref}:request", ref, IDR, "qris", due, callback)
    assert await gateway.request_payment(f"{ref}:request", ref, IDR, "qris", due,
                                         callback) == request
    code = qris.read(request.qr_string)
    assert (code.dynamic, code.amount, code.bill_number) == (True, 150000, request.request_id)
    assert request.wallet is None
    with pytest.raises(InfrastructureError) as caught:  # QRIS carries rupiah only
        await gateway.request_payment(f"{ref}:eur", ref, EUR, "qris", due, callback)
    assert caught.value.retriable is False


async def test_an_e_wallet_push_goes_to_the_wallet_asked_and_needs_an_account(gateway) -> None:
    ref = f"ord_{uuid.uuid4().hex}"
    due, callback = datetime.now(UTC) + timedelta(hours=1), "http://127.0.0.1:9/cb"
    pushed = await gateway.request_payment(f"{ref}:a", ref, IDR, "ewallet", due, callback,
                                           "tok_ovo", "ovo")
    assert (pushed.wallet, pushed.qr_string) == ("ovo", None)
    default = await gateway.request_payment(f"{ref}:b", ref, IDR, "ewallet", due, callback,
                                            "tok_gopay")
    assert default.wallet == "gopay" and default.request_id != pushed.request_id
    with pytest.raises(InfrastructureError) as caught:
        await gateway.request_payment(f"{ref}:c", ref, IDR, "ewallet", due, callback)
    assert caught.value.retriable is False


async def test_what_was_paid_on_a_request_can_be_asked(gateway, infra) -> None:
    ref = f"ord_{uuid.uuid4().hex}"
    request = await gateway.request_payment(f"{ref}:request", ref, IDR, "qris",
                                            datetime.now(UTC) + timedelta(hours=1),
                                            "http://127.0.0.1:9/v1/gateway/callbacks")
    assert await gateway.paid(request.request_id) == []
    if isinstance(gateway, InMemoryGateway):
        gateway.pay_into(request.request_id, IDR)
    else:
        async with httpx.AsyncClient(base_url=infra.gateway_url) as client:
            assert (await client.post(f"/v1/payment-requests/{request.request_id}/pay")
                    ).status_code == 201
            # A dynamic code is paid once.
            assert (await client.post(f"/v1/payment-requests/{request.request_id}/pay")
                    ).status_code == 409
    [payment] = await gateway.paid(request.request_id)
    assert payment.amount == IDR
    assert await gateway.paid("pr-no-such-request") == []


async def test_a_withdrawn_request_cannot_be_paid_and_a_paid_one_cannot_be_withdrawn(
        gateway, infra) -> None:  # noqa: ANN001
    async def ask(ref: str):  # noqa: ANN202
        return await gateway.request_payment(f"{ref}:request", ref, IDR, "qris",
                                             datetime.now(UTC) + timedelta(hours=1),
                                             "http://127.0.0.1:9/v1/gateway/callbacks")

    async def pay(request_id: str) -> bool:
        """Whether the customer's payment went through."""
        if isinstance(gateway, InMemoryGateway):
            try:
                gateway.pay_into(request_id, IDR)
            except LookupError:
                return False
            return True
        async with httpx.AsyncClient(base_url=infra.gateway_url) as client:
            answer = await client.post(f"/v1/payment-requests/{request_id}/pay")
        assert answer.status_code in (201, 410), answer.text
        return answer.status_code == 201

    cancelled = await ask(f"ord_{uuid.uuid4().hex}")
    assert await gateway.withdraw(cancelled.request_id) is True
    assert await gateway.withdraw(cancelled.request_id) is True  # asked again: the same
    assert await pay(cancelled.request_id) is False
    assert await gateway.paid(cancelled.request_id) == []
    paid = await ask(f"ord_{uuid.uuid4().hex}")
    assert await pay(paid.request_id) is True
    assert await gateway.withdraw(paid.request_id) is False
    with pytest.raises(InfrastructureError) as unknown:
        await gateway.withdraw("pr-no-such-request")
    assert unknown.value.retriable is False
