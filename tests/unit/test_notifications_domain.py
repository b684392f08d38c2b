from services.notifications import domain
from services.notifications.domain import NotificationState
from tests.unit.builders import event


def test_order_placed_is_mailed_to_the_customer() -> None:
    [send] = domain.decide(NotificationState(), event("OrderPlaced", "o1"))
    assert send.to.email == "ada@example.com" and send.template == "OrderPlaced.email"


def test_an_event_that_overtakes_the_order_is_held_then_sent() -> None:
    paid = event("PaymentConfirmed", "o1")
    assert domain.decide(NotificationState(), paid) == []
    held = domain.evolve(NotificationState(), paid)
    sends = domain.decide(held, event("OrderPlaced", "o1"))
    assert [s.about.type for s in sends] == ["PaymentConfirmed", "OrderPlaced"]


def test_an_event_already_notified_is_not_sent_again() -> None:
    placed = event("OrderPlaced", "o1")
    state = domain.evolve(NotificationState(), placed)
    sent = event("NotificationSent", "o1", about_event_id=placed.id)
    state = domain.evolve(state, sent)
    assert domain.decide(state, placed) == []


def test_internal_events_are_not_mailed() -> None:
    state = domain.evolve(NotificationState(), event("OrderPlaced", "o1"))
    assert domain.decide(state, event("StockReserved", "o1")) == []
