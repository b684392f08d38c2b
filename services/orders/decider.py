"""The orders service's decisions under its policy: the one Decider that the consumer, the
timers and the API fold an order's stream with and decide on."""

from __future__ import annotations

from alur.runtime.aggregate import Decider, compensations
from services.orders import domain

DEFAULT_POLICY = domain.Policy()


def decider(policy: domain.Policy = DEFAULT_POLICY) -> Decider[domain.OrderState]:
    return Decider(domain.OrderState(), domain.evolve, domain.decide_under(policy),
                   domain.RELEVANT,
                   deadlines=domain.deadlines_under(policy), on_timer=domain.on_timer,
                   opens=domain.OPENS, refuse=domain.refuse,
                   count=compensations("orders", frozenset({"OrderCancelled"})))
