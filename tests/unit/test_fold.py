"""Decider.fold_stored: a stream's state, carried forward from the process's last fold of it."""

from __future__ import annotations

from dataclasses import dataclass, field

from alur.runtime.aggregate import Decider
from alur.runtime.ports import StoredEvent
from schemas import Event
from tests.unit.builders import event


@dataclass
class Counting:
    calls: list[str] = field(default_factory=list)

    def evolve(self, state: tuple[str, ...], e: Event) -> tuple[str, ...]:
        self.calls.append(e.type)
        return (*state, e.type)


def stored(*events: Event) -> list[StoredEvent]:
    return [StoredEvent(i + 1, "observed", e) for i, e in enumerate(events)]


def decider(counting: Counting) -> Decider[tuple[str, ...]]:
    return Decider((), counting.evolve, lambda s, e: [], frozenset())


def test_a_longer_history_folds_only_its_new_events() -> None:
    counting = Counting()
    d = decider(counting)
    placed, reserved, paid = event("OrderPlaced"), event("StockReserved"), event("PaymentConfirmed")
    assert d.fold_stored(stored(placed, reserved)) == ("OrderPlaced", "StockReserved")
    counting.calls.clear()
    assert d.fold_stored(stored(placed, reserved, paid)) == (
        "OrderPlaced", "StockReserved", "PaymentConfirmed")
    assert counting.calls == ["PaymentConfirmed"]
    counting.calls.clear()
    assert d.fold_stored(stored(placed, reserved)) == ("OrderPlaced", "StockReserved")
    assert counting.calls == ["OrderPlaced", "StockReserved"]  # shorter: folded afresh


def test_a_history_that_differs_anywhere_is_folded_afresh() -> None:
    counting = Counting()
    d = decider(counting)
    placed, planned, paid = event("OrderPlaced"), event("StockReserved"), event("PaymentConfirmed")
    d.fold_stored(stored(placed, planned, paid))  # e.g. a plan that was never recorded
    counting.calls.clear()
    other = event("StockRejected")
    assert d.fold_stored(stored(placed, other, paid, event("OrderCancelled"))) == (
        "OrderPlaced", "StockRejected", "PaymentConfirmed", "OrderCancelled")
    assert counting.calls == ["OrderPlaced", "StockRejected", "PaymentConfirmed",
                              "OrderCancelled"]


def test_it_agrees_with_fold() -> None:
    d = decider(Counting())
    history = stored(event("OrderPlaced"), event("StockReserved"), event("PaymentConfirmed"))
    for n in (0, 3, 1, 2, 3):
        assert d.fold_stored(history[:n]) == d.fold([s.event for s in history[:n]])
