"""Simulated customers for the demo: each order gets a plan over every branch of the sales
flow (a share of them are till sales a store uploads late, in batches), and the customers act
on their orders as the orders move (pay a bank transfer, scan a QRIS code or approve an
e-wallet push, cancel,
confirm receipt, review, return), through the shop API and the gateway simulator.

One loop reads every order's progress from the orders event store per round (one query,
not a poll per order) and sends the few requests that are due.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, get_args

import asyncpg
import httpx

from alur.tools.trace import trace
from schemas.orders import Bank, Wallet

CURRENCY = "IDR"  # the simulated shops sell in rupiah, whole (schemas/money.py)
CATALOGUE = [("SKU-BATIK", 125_000), ("SKU-KOPI-GAYO", 89_000), ("SKU-SAMBAL", 35_000),
             ("SKU-TEH-MELATI", 27_500), ("SKU-SARUNG", 175_000), ("SKU-ANYAMAN", 64_000)]
STORE_CATALOGUE = CATALOGUE[:4]  # what the stores keep on their shelves and sell at the till
SCARCE = ("SKU-KERIS", 1_450_000)  # a handful in stock: some orders for it are rejected
STORES = ("ST-JAKARTA", "ST-BANDUNG")
FAILS_FIRST_ATTEMPT = "00000"  # the simulated carriers miss the first delivery here
# Home addresses: the postal region picks the carrier (services/shipping/carrier.py): kilat
# for 1-4 (Java west of Semarang), nusapost for 5-9.
TOWNS = (("Jakarta", "10110"), ("Bandung", "40115"), ("Surabaya", "60111"),
         ("Denpasar", "80113"), ("Yogyakarta", "55122"))
STREETS = ("Jl. Merdeka", "Jl. Sudirman", "Jl. Diponegoro", "Jl. Gajah Mada", "Jl. Asia Afrika")


@dataclass
class Plan:
    method: str
    token: str | None = None
    bank: str | None = None        # bank_transfer: the customer's bank
    wallet: str | None = None      # ewallet: the customer's wallet app
    pickup: bool = False
    store: str | None = None       # the pickup store
    pays_transfer: bool = True
    declines: bool = False         # ewallet: declines the push in the app instead of paying
    cancel: str | None = None      # "before_payment" | "after_payment"
    returns: bool = False
    partial: bool = False          # returns one unit first (broken: written off), then the rest
    complains: bool = False        # the shop answers the complaint with a goodwill refund
    reviews: bool = False
    confirms: bool = False
    till: bool = False             # a point-of-sale sale, uploaded by a store's till
    done: set[str] = field(default_factory=set)  # actions taken

    @property
    def branch(self) -> str:
        if self.till:
            return f"till {self.method}"
        declined = self.token == "tok_decline" or self.declines
        return f"{self.method}{' (declined)' if declined else ''}"


BANKS, WALLETS = get_args(Bank), get_args(Wallet)  # the ones an order may name
# What the customer pays in after the order asks: into a virtual account, or in an app.
PAYS_IN = frozenset({"bank_transfer", "qris", "ewallet"})


def plan(rng: random.Random) -> Plan:
    """An Indonesian shop's mix: QRIS and e-wallets most, then cards, virtual accounts and
    cash on delivery."""
    roll = rng.random()
    method = ("qris" if roll < 0.25 else "ewallet" if roll < 0.45 else "card" if roll < 0.65
              else "bank_transfer" if roll < 0.85 else "cod")
    p = Plan(method=method)
    if method == "card":
        p.token = "tok_decline" if rng.random() < 0.1 else "tok_visa"
    if method == "ewallet":
        p.wallet = rng.choice(WALLETS)
        p.token = f"tok_{p.wallet}"
    if method == "bank_transfer":
        p.bank = rng.choice(BANKS)
    p.pickup = method != "cod" and rng.random() < 0.15
    p.pays_transfer = rng.random() < 0.8
    p.declines = method == "ewallet" and not p.pays_transfer and rng.random() < 0.5
    cancel = rng.random()
    p.cancel = "before_payment" if cancel < 0.04 else "after_payment" if cancel < 0.08 else None
    after = rng.random()
    p.returns, p.confirms = after < 0.07, 0.07 <= after < 0.6
    p.partial = p.returns and rng.random() < 0.5
    p.complains = not p.returns and rng.random() < 0.06
    p.reviews = rng.random() < 0.3
    return p


# The run's shoppers: each of them buys online and at the tills, known by a different mix of
# identifiers in each place, which Alur resolves to one customer per shop.
PEOPLE = 150


def shopper(i: int, *, online: bool, rng: random.Random) -> dict[str, str] | None:
    """How person `i` names themselves: online their shop account (reference and e-mail,
    with a phone for half of them); at a till a phone number, a loyalty card for a third of
    them, an e-mail for a receipt now and then, or nothing at all (an anonymous sale)."""
    phone, card = f"0812{i:07d}", f"LC{i:08d}"
    email = f"customer{i}@example.com"
    if online:
        known = {"customer_id": f"cus-{i}", "email": email, "name": f"Customer {i}"}
        return known | ({"phone": phone} if i % 2 == 0 else {})
    if rng.random() < 0.15:
        return None
    known = {"phone": phone, "name": f"Customer {i}"} | (
        {"loyalty_card": card} if i % 3 == 0 else {})
    # Someone who gave no phone online is joined up through the e-mail on the receipt.
    return known | ({"email": email} if i % 2 or rng.random() < 0.5 else {})


def order_body(shop: str, p: Plan, rng: random.Random) -> dict[str, object]:
    sku, price = SCARCE if rng.random() < 0.04 else rng.choice(CATALOGUE)
    if p.pickup:
        p.store = rng.choice(STORES)
    city, postal = ("Jakarta", FAILS_FIRST_ATTEMPT) if rng.random() < 0.08 \
        else rng.choice(TOWNS)
    street = f"{rng.choice(STREETS)} No. {rng.randint(1, 200)}"
    delivery: dict[str, object] = (
        {"method": "click_and_collect", "store_id": p.store} if p.pickup else
        {"method": "home_delivery", "address": {
            "line1": street, "city": city, "postal_code": postal, "country": "ID"}})
    return {
        "shop_id": shop, "channel": "online",
        "customer": shopper(rng.randrange(PEOPLE), online=True, rng=rng),
        "lines": [{"sku": sku, "quantity": rng.randint(1, 3),
                   "unit_price": {"amount": price, "currency": CURRENCY}}],
        "payment": {"method": p.method, "token": p.token,
                    **({"bank": p.bank} if p.bank else {}),
                    **({"wallet": p.wallet} if p.wallet else {})},
        "delivery": delivery,
    }


def till_sale(p: Plan, rng: random.Random, sold_at: datetime) -> dict[str, object]:
    """A sale as a store's till recorded it, paid at the counter."""
    sku, price = rng.choice(STORE_CATALOGUE)
    customer = shopper(rng.randrange(PEOPLE), online=False, rng=rng)
    return {"sale_id": f"R-{uuid.uuid4().hex[:16]}", "sold_at": sold_at.isoformat(),
            **({"customer": customer} if customer else {}),
            "lines": [{"sku": sku, "quantity": rng.randint(1, 3),
                       "unit_price": {"amount": price, "currency": CURRENCY}}],
            "payment": {"method": p.method}}


def till_plan(rng: random.Random) -> Plan:
    """A till sale; now and then its customer brings it back to the store."""
    return Plan(method="cash" if rng.random() < 0.6 else "card", till=True,
                returns=rng.random() < 0.08)


@dataclass
class Customers:
    """Acts for every order of the run; `refused` counts requests the order's state refused
    (a cancellation that came after the order was released to shipping), `unanswered`
    requests that got no answer at all (the connection failed) and were sent again in a later
    round."""

    api: httpx.AsyncClient
    gateway: httpx.AsyncClient
    keys: dict[str, str]                      # shop -> API key
    orders: dict[str, tuple[str, Plan]] = field(default_factory=dict)  # order -> (shop, plan)
    lines: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    totals: dict[str, dict[str, object]] = field(default_factory=dict)  # order -> Money
    refused: Counter[str] = field(default_factory=Counter)
    unanswered: Counter[str] = field(default_factory=Counter)

    def add(self, order_id: str, shop: str, p: Plan, body: dict[str, object]) -> None:
        self.orders[order_id] = (shop, p)
        lines: list[dict[str, Any]] = body["lines"]  # type: ignore[assignment]
        self.lines[order_id] = [{"sku": x["sku"], "quantity": x["quantity"]} for x in lines]
        self.totals[order_id] = {
            "amount": sum(x["unit_price"]["amount"] * x["quantity"] for x in lines),
            "currency": lines[0]["unit_price"]["currency"]}

    async def act_until_done(self, db: asyncpg.Pool, timeout: float,
                             show: Callable[[int], None]) -> set[str]:
        """Rounds until every order is cancelled, returned, or delivered with nothing left
        for its customer to do; returns the orders that were not by the timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        open_ = set(self.orders)
        while open_ and loop.time() < deadline:
            rows = await db.fetch(
                "SELECT stream_id, array_agg(type ORDER BY version) AS types,"
                " max(coalesce(body->'data'->>'virtual_account',"
                "   body->'data'->>'request_id')) AS account,"
                " max((body->'data'->'amount'->>'amount')::bigint) FILTER"
                "   (WHERE type IN ('PaymentPending', 'PaymentRequested')) AS due,"
                " max(body->'data'->>'location') FILTER (WHERE type = 'OrderReadyToShip')"
                "   AS held_at"
                " FROM orders.events WHERE stream_id = ANY($1::text[]) GROUP BY stream_id",
                list(open_))
            steps = []
            for r in rows:
                order_id, types = r["stream_id"], set(r["types"])
                p = self.orders[order_id][1]
                if self._finished(order_id, p, types):
                    open_.discard(order_id)
                elif (step := self._next(order_id, p, types, r["account"], r["due"],
                                         r["held_at"])):
                    steps.append(step)
            await asyncio.gather(*steps)
            show(len(self.orders) - len(open_))
            await asyncio.sleep(0.5)
        return open_

    async def explain(self, db: asyncpg.Pool, order_ids: set[str], most: int = 20) -> list[str]:
        """A line for each of (the first `most` of) these orders: its plan, what its customer
        did, and its trace (every service's events in time order, and the trouble the audit
        logs show: dead letters, retries, consumers that have not seen an event), so that an
        order that did not run its course says where it stopped."""
        lines = []
        for order_id in sorted(order_ids)[:most]:
            p = self.orders[order_id][1]
            wants = [w for w, on in (("pickup", p.pickup), ("cancel " + (p.cancel or ""),
                                     p.cancel), ("return a part", p.partial),
                                    ("return", p.returns), ("review", p.reviews),
                                    ("goodwill", p.complains), ("receipt", p.confirms)) if on]
            t = await trace(db, order_id)
            trouble = [f"{e.type}: {problem}" for e in t.events for problem in e.problems]
            lines.append(f"{order_id} {p.branch} wants [{', '.join(wants)}] did "
                         f"[{', '.join(sorted(p.done))}] | "
                         + " ".join(f"{e.emitted_by}:{e.type}" for e in t.events)
                         + (f" | {'; '.join(trouble)}" if trouble else ""))
        return lines

    def _pending(self, order_id: str, p: Plan, types: set[str]) -> list[str]:
        partial = p.partial and sum(int(str(x["quantity"])) for x in self.lines[order_id]) > 1
        wanted = [("review", p.reviews), ("return_part", partial),
                  # the rest once the part is closed: one return of an order at a time
                  ("return", p.returns and (not partial or "ReturnClosed" in types)),
                  ("goodwill", p.complains),
                  ("receipt", p.confirms and not p.returns and "OrderCompleted" not in types)]
        return [action for action, on in wanted if on and action not in p.done]

    def _finished(self, order_id: str, p: Plan, types: set[str]) -> bool:
        if p.till:  # complete, and back over the counter if its customer returns it
            return "OrderCompleted" in types and (not p.returns or "OrderReturned" in types)
        if types & {"OrderCancelled", "OrderReturned"}:
            return True
        if not types & {"Delivered", "PickedUp"}:
            return False
        return not self._pending(order_id, p, types) and not p.returns

    def _next(self, order_id: str, p: Plan, types: set[str], account: str | None,
              due: int | None, held_at: str | None = None) -> Coroutine[Any, Any, None] | None:
        if p.till and p.returns and "OrderCompleted" in types and "return" not in p.done:
            return self._post(order_id, p, "return", "returns",
                              {"lines": self.lines[order_id], "reason": "the wrong size"})
        if "OrderCancelled" in types or p.till:
            return None
        if p.cancel == "before_payment" and "cancel" not in p.done:
            return self._post(order_id, p, "cancel", "cancel")
        if p.declines and account and "decline" not in p.done \
                and not types & {"PaymentConfirmed", "PaymentExpired", "PaymentFailed"}:
            return self._decline(p, account)
        if (p.method in PAYS_IN and p.pays_transfer and account and due
                and "transfer" not in p.done
                and not types & {"PaymentConfirmed", "PaymentExpired"}):
            return self._pay(p, account, due)
        if p.cancel == "after_payment" and "PaymentConfirmed" in types and "cancel" not in p.done:
            return self._post(order_id, p, "cancel", "cancel")
        if p.store and held_at == p.store and "ReadyForPickup" in types \
                and "PickedUp" not in types and "pickup" not in p.done:
            # Set aside on the store's own shelf: the store hands it over when they come.
            return self._post(order_id, p, "pickup", "pickup")
        if not types & {"Delivered", "PickedUp"}:
            return None
        pending = self._pending(order_id, p, types)
        if not pending:
            return None
        action = pending[0]
        if action == "review":
            return self._post(order_id, p, "review", "reviews",
                              {"rating": 1 + int(order_id[-2:], 16) % 5, "text": "demo"})
        if action == "return_part":
            return self._post(order_id, p, "return_part", "returns",
                              {"lines": [self._first_unit(order_id)],
                               "reason": "it arrived broken"})
        if action == "return":
            return self._post(order_id, p, "return", "returns",
                              {"lines": self._kept(order_id, p), "reason": "changed my mind"})
        if action == "goodwill":
            return self._post(order_id, p, "goodwill", "refunds",
                              {"amount": self._goodwill(order_id),
                               "reason": "the parcel arrived late and the box was dented"})
        return self._post(order_id, p, "receipt", "receipt")

    def _first_unit(self, order_id: str) -> dict[str, object]:
        return {"sku": self.lines[order_id][0]["sku"], "quantity": 1, "restock": "write_off"}

    def _kept(self, order_id: str, p: Plan) -> list[dict[str, object]]:
        """The order's lines, less the unit returned first."""
        lines = [dict(x) for x in self.lines[order_id]]
        if "return_part" in p.done:
            lines[0]["quantity"] = int(str(lines[0]["quantity"])) - 1
        return [x for x in lines if int(str(x["quantity"])) > 0]

    def _goodwill(self, order_id: str) -> dict[str, object]:
        """A tenth of the order back, in round thousands of rupiah (a unit where that rounds
        to nothing), always less than what was paid."""
        total = self.totals[order_id]
        amount = int(str(total["amount"]))
        tenth = amount // 10 // 1000 * 1000 or max(1, amount // 10)
        return {"amount": tenth, "currency": total["currency"]}

    async def _post(self, order_id: str, p: Plan, action: str, path: str,
                    body: dict[str, object] | None = None) -> None:
        shop = self.orders[order_id][0]
        headers = {"Authorization": f"Bearer {self.keys[shop]}",
                   "Idempotency-Key": f"demo-{action}-{order_id}"}
        try:
            response = await self.api.post(f"/v1/orders/{order_id}/{path}", json=body,
                                           headers=headers)
        except httpx.TransportError:
            self.unanswered[action] += 1
            return  # next round, with the same Idempotency-Key: it cannot act twice
        if response.status_code in (409, 429) and "Retry-After" in response.headers:
            return  # busy or rate-limited: next round
        if response.status_code >= 400:
            self.refused[action] += 1
        p.done.add(action)

    async def _decline(self, p: Plan, request_id: str) -> None:
        """Decline the e-wallet push in the app (409 declined already, 410 gone: done too)."""
        try:
            response = await self.gateway.post(f"/v1/payment-requests/{request_id}/decline")
        except httpx.TransportError:
            self.unanswered["decline"] += 1
            return  # declined or not, nobody said: next round
        if response.status_code in (201, 409, 410):
            p.done.add("decline")

    async def _pay(self, p: Plan, account: str, amount: int) -> None:
        """Transfer into the virtual account, or pay the QRIS code / approve the push (the
        gateway refuses an expired request with 410 and a paid one with 409: done too)."""
        try:
            if p.method == "bank_transfer":
                response = await self.gateway.post(
                    f"/v1/virtual-accounts/{account}/transfers",
                    json={"amount": amount, "currency": CURRENCY})
            else:
                response = await self.gateway.post(f"/v1/payment-requests/{account}/pay")
        except httpx.TransportError:
            # Paid or not, nobody said: like a customer who checks their bank first, pay
            # again next round only if the order is still waiting for the money.
            self.unanswered["transfer"] += 1
            return
        if response.status_code in (201, 409, 410):
            p.done.add("transfer")
