"""A service declares its decider and a {command: handler} table; the runtime refuses a table
that does not carry out exactly the commands the decider may return, when it is wired."""

from collections.abc import Sequence
from dataclasses import replace

import pytest

from alur.runtime.aggregate import Wiring
from alur.runtime.ports import UnitOfWork
from schemas import Event, Model
from services.payments import domain
from services.payments.bootstrap import DECIDER, SOURCE, commands
from services.payments.gateway import InMemoryGateway


async def nothing(uow: UnitOfWork, command: object, event: Event) -> Sequence[Model]:
    return []


def table() -> dict[type, object]:
    return dict(commands(InMemoryGateway(), "http://payments.test", 60.0))


def test_a_command_the_decider_may_return_without_a_handler_is_refused() -> None:
    handlers = table()
    del handlers[domain.Refund]
    with pytest.raises(TypeError, match=r"without a handler: \['Refund'\]"):
        Wiring(DECIDER, SOURCE, handlers)  # type: ignore[arg-type]


def test_a_handler_of_a_command_the_decider_never_returns_is_refused() -> None:
    class Teleport:
        pass

    with pytest.raises(TypeError, match=r"never returns: \['Teleport'\]"):
        Wiring(DECIDER, SOURCE, table() | {Teleport: nothing})  # type: ignore[arg-type]
    # ...unless the decider says what carrying it out records.
    outcomes = {**DECIDER.outcomes, Teleport: frozenset({"PaymentFailed"})}
    Wiring(replace(DECIDER, outcomes=outcomes), SOURCE,
           table() | {Teleport: nothing})  # type: ignore[arg-type]


async def test_a_command_goes_to_its_own_handler() -> None:
    seen: list[object] = []

    async def withdraw(uow: UnitOfWork, command: object, event: Event) -> Sequence[Model]:
        seen.append(command)
        return []

    wired = Wiring(DECIDER, SOURCE, table() | {domain.WithdrawRequest: withdraw})  # type: ignore[arg-type]
    assert wired.perform is not None
    command = domain.WithdrawRequest("o1", "pay_o1", "req_1")
    assert await wired.perform(None, command, None) == []  # type: ignore[arg-type]
    assert seen == [command]
