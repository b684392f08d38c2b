"""The simulated customers behave like careful clients: a request that got no answer is sent
again in a later round with the same Idempotency-Key, and a bank transfer is not paid twice."""

import httpx

from alur.simulators.customers import Customers, Plan


def customers(answers: list[int | None], seen: list[httpx.Request]) -> Customers:
    """Customers whose API and gateway answer with `answers` in turn; None drops the
    connection before an answer, as a server closing a keep-alive connection does."""
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status = answers.pop(0)
        if status is None:
            raise httpx.ReadError("the server closed the connection", request=request)
        return httpx.Response(status, json={})

    transport = httpx.MockTransport(answer)
    return Customers(httpx.AsyncClient(transport=transport, base_url="http://api"),
                     httpx.AsyncClient(transport=transport, base_url="http://gateway"),
                     {"shop-1": "key-1"})


async def test_a_cancel_without_an_answer_is_sent_again_with_the_same_key() -> None:
    seen: list[httpx.Request] = []
    c = customers([None, 202], seen)
    p = Plan(method="card", cancel="before_payment")
    c.orders["ord-1"] = ("shop-1", p)
    placed = {"OrderPlaced"}

    first = c._next("ord-1", p, placed, None, None)
    assert first is not None
    await first
    assert "cancel" not in p.done and c.unanswered["cancel"] == 1

    again = c._next("ord-1", p, placed, None, None)
    assert again is not None
    await again
    assert "cancel" in p.done and c.refused["cancel"] == 0
    assert [r.url.path for r in seen] == ["/v1/orders/ord-1/cancel"] * 2
    assert seen[0].headers["Idempotency-Key"] == seen[1].headers["Idempotency-Key"]


async def test_an_unanswered_transfer_is_not_paid_again_once_the_order_is_paid() -> None:
    seen: list[httpx.Request] = []
    c = customers([None, 201], seen)
    p = Plan(method="bank_transfer")
    c.orders["ord-2"] = ("shop-1", p)
    pending = {"OrderPlaced", "StockReserved", "PaymentPending"}

    step = c._next("ord-2", p, pending, "VA1", 1250)
    assert step is not None
    await step
    assert c.unanswered["transfer"] == 1 and "transfer" not in p.done
    # The transfer did arrive: the order is paid, so the customer does not pay again ...
    assert c._next("ord-2", p, pending | {"PaymentConfirmed"}, "VA1", 1250) is None
    # ... but while it still waits for the money, it pays (once) next round.
    again = c._next("ord-2", p, pending, "VA1", 1250)
    assert again is not None
    await again
    assert "transfer" in p.done and len(seen) == 2
    assert c._next("ord-2", p, pending, "VA1", 1250) is None
