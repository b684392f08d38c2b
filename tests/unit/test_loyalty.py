"""The loyalty ledger's fold (services/orders/customers.py) and the orders domain's
redemption rules: held on placement, spent when paid, given back on cancel or return."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from schemas import Money
from services.orders import domain
from services.orders.customers import ledger

T0 = datetime(2026, 1, 1, tzinfo=UTC)
YEAR = timedelta(days=365)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def test_points_expire_a_year_after_they_were_earned() -> None:
    rows = [("accrued", "o1", 30, day(0)), ("accrued", "o2", 20, day(100))]
    assert ledger(rows, day(364), YEAR).balance == 50
    later = ledger(rows, day(366), YEAR)
    assert (later.balance, later.expired) == (20, 30)
    assert [(e.kind, e.order_id, e.change, e.balance) for e in later.entries] == [
        ("accrued", "o1", 30, 30), ("accrued", "o2", 20, 50), ("expired", "o1", -30, 20)]


def test_a_hold_takes_the_points_that_expire_first_and_a_release_gives_them_back() -> None:
    rows = [("accrued", "o1", 30, day(0)), ("accrued", "o2", 20, day(100)),
            ("held", "o3", 40, day(200))]
    held = ledger(rows, day(201), YEAR)
    assert (held.balance, held.held) == (10, 40)
    # Cancelled after o1's points expired: its 30 come back expired, o2's 10 come back.
    released = ledger([*rows, ("released", "o3", 40, day(400))], day(401), YEAR)
    assert (released.balance, released.held, released.expired) == (20, 0, 30)
    spent = ledger([*rows, ("redeemed", "o3", 40, day(201))], day(300), YEAR)
    assert (spent.balance, spent.held, spent.redeemed) == (10, 0, 40)


def test_a_reversal_takes_back_at_most_what_is_left_of_its_orders_points() -> None:
    rows = [("accrued", "o1", 30, day(0)), ("held", "o2", 25, day(1)),
            ("redeemed", "o2", 25, day(2)), ("reversed", "o1", 30, day(3))]
    out = ledger(rows, day(4), YEAR)
    assert (out.balance, out.reversed) == (0, 5)
    assert out.overdrawn == []


def test_a_hold_beyond_the_balance_is_reported_as_overdrawn() -> None:
    out = ledger([("accrued", "o1", 10, day(0)), ("held", "o2", 15, day(1))], day(2), YEAR)
    assert out.overdrawn == [("o2", 5)] and out.balance == 0


@pytest.mark.parametrize("seed", range(25))
def test_the_balance_is_never_negative_whatever_the_history(seed: int) -> None:
    rng = random.Random(seed)
    rows: list[tuple[str, str, int, datetime]] = []
    for i in range(40):
        order = f"o{rng.randrange(12)}"
        kind = rng.choice(["accrued", "reversed", "held", "redeemed", "released"])
        rows.append((kind, order, rng.randint(1, 50), day(i * rng.uniform(1, 30))))
    out = ledger(rows, day(2000), YEAR)
    assert all(e.balance >= 0 for e in out.entries)
    assert out.balance == sum(e.change for e in out.entries) >= 0


def test_points_pay_part_of_an_order_never_all_of_it() -> None:
    total = Money(amount=2500, currency="EUR")
    assert domain.redeem(24, total).value == Money(amount=2400, currency="EUR")
    with pytest.raises(domain.InvalidOrder, match="at most 24 points"):
        domain.redeem(25, total)
