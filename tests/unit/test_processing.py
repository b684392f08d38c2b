"""The batch processor: inbox, savepoints, retries with backoff, dead letters."""

import asyncio
import json

import asyncpg
import pytest

from alur.runtime.errors import InfrastructureError
from alur.runtime.memory import InMemoryUnitOfWork, MemoryState
from alur.runtime.processing import MAX_RECORD_BYTES, POISON_AFTER, BatchProcessor, Message
from schemas import encode, first_event
from services.notifications import bootstrap as notifications
from services.notifications.mailer import InMemoryMailer
from services.notifications.sent_log import InMemorySentLog
from tests.unit.builders import event


def message(value: bytes | None, offset: int = 0, topic: str = "orders") -> Message:
    return Message(topic, 1, offset, b"o1", value)


class Flaky:
    """A handler that fails `failures` times with the given error, then records the event."""

    def __init__(self, failures: int, retriable: bool = True) -> None:
        self.failures, self.retriable, self.calls = failures, retriable, 0

    async def __call__(self, uow, ev):  # noqa: ANN001, ANN204
        self.calls += 1
        await uow.append(ev.subject, 0, [ev], ["observed"])
        if self.calls <= self.failures:
            raise InfrastructureError("gateway timed out", retriable=self.retriable)
        return "processed"


def processor(handler, state: MemoryState, sleeps: list[float] | None = None,
              patience: float = 0.0) -> BatchProcessor:
    async def sleep(seconds: float) -> None:
        (sleeps if sleeps is not None else []).append(seconds)

    return BatchProcessor("inventory", handler, lambda: InMemoryUnitOfWork(state), attempts=4,
                          backoff=0.1, sleep=sleep, patience=patience)


async def test_undecodable_bytes_go_to_the_dlq_with_error_and_origin() -> None:
    state = MemoryState()
    [result] = await processor(Flaky(0), state).process([message(b"{not json", offset=7)])
    assert result.outcome == "dead_lettered"
    [row] = state.outbox
    assert row["topic"] == "orders.dlq"
    record = json.loads(row["value"])
    assert record["origin"] == {"topic": "orders", "partition": 1, "offset": 7, "key": "o1"}
    assert record["value"] == "{not json" and record["service"] == "inventory"
    assert "undecodable" in record["error"]
    assert [a.outcome for a in state.audit] == ["dead_lettered"]


async def test_a_retriable_failure_is_retried_with_backoff_and_leaves_one_effect() -> None:
    state, sleeps, handler = MemoryState(), [], Flaky(2)
    ev = event("OrderPlaced", "o1")
    [result] = await processor(handler, state, sleeps).process([message(encode(ev))])
    assert (result.outcome, result.attempts) == ("processed", 3)
    assert sleeps == [0.1, 0.2]
    assert len(state.streams["o1"]) == 1 and state.inbox == {ev.id}
    assert state.audit[-1].attempts == 3


async def test_a_message_that_keeps_failing_is_dead_lettered_and_leaves_nothing_else() -> None:
    state, handler = MemoryState(), Flaky(99)
    ev = event("OrderPlaced", "o1")
    [result] = await processor(handler, state).process([message(encode(ev))])
    assert (result.outcome, result.attempts, handler.calls) == ("dead_lettered", 4, 4)
    assert state.streams.get("o1", []) == [] and state.inbox == set()
    assert json.loads(state.outbox[0]["value"])["attempts"] == 4


async def test_a_non_retriable_failure_is_not_retried() -> None:
    state, handler = MemoryState(), Flaky(1, retriable=False)
    [result] = await processor(handler, state).process([message(encode(event("OrderPlaced")))])
    assert (result.outcome, handler.calls) == ("dead_lettered", 1)


async def test_one_poisoned_message_does_not_undo_the_rest_of_its_batch() -> None:
    state = MemoryState()
    good = [event("OrderPlaced", f"o{i}") for i in range(3)]
    batch = [message(encode(good[0]), 0), message(b"\xff\xfe", 1),
             message(encode(good[1]), 2), message(encode(good[2]), 3)]
    results = await processor(Flaky(0), state).process(batch)
    assert [r.outcome for r in results] == ["processed", "dead_lettered", "processed",
                                            "processed"]
    assert sorted(state.streams) == ["o0", "o1", "o2"]
    assert json.loads(state.outbox[0]["value"])["value_encoding"] == "base64"


async def test_the_same_event_twice_is_a_duplicate() -> None:
    state, handler = MemoryState(), Flaky(0)
    ev = first_event(event("OrderPlaced").data, source="t", subject="o1", shop_id="s",
                     channel="online")
    results = await processor(handler, state).process(
        [message(encode(ev), 0), message(encode(ev), 1)])
    assert [r.outcome for r in results] == ["processed", "duplicate"] and handler.calls == 1


async def test_a_deadlock_victim_gives_up_the_whole_batch_instead_of_dead_lettering() -> None:
    """Retrying one message would wait again for the locks its batch took for earlier ones:
    the batch is rolled back (and retried whole by the worker), nothing is dead-lettered."""
    class Victim(Flaky):
        async def __call__(self, uow, ev):  # noqa: ANN001, ANN204
            if ev.subject == "o1":
                raise asyncpg.DeadlockDetectedError("deadlock detected")
            return await super().__call__(uow, ev)

    state, handler = MemoryState(), Victim(0)
    batch = [message(encode(event("OrderPlaced", f"o{i}")), i) for i in range(3)]
    with pytest.raises(asyncpg.DeadlockDetectedError):
        await processor(handler, state).process(batch)
    assert handler.calls == 1  # o0 only; o1 was not retried on its own
    assert state.streams == {} and state.outbox == [] and state.inbox == set()
    assert state.audit == []


async def test_a_tombstone_and_an_oversized_record_go_to_the_dlq_and_the_batch_moves_on(
        ) -> None:
    state = MemoryState()
    good = event("OrderPlaced", "o1")
    huge = b'{"pad": "' + b"x" * (MAX_RECORD_BYTES + 1) + b'"}'
    results = await processor(Flaky(0), state).process(
        [message(None, 0), message(huge, 1), message(encode(good), 2)])
    assert [r.outcome for r in results] == ["dead_lettered", "dead_lettered", "processed"]
    tombstone, oversized = (json.loads(row["value"]) for row in state.outbox)
    assert tombstone["value"] is None and "tombstone" in tombstone["error"]
    assert "over the" in oversized["error"] and oversized["value_truncated"] is True
    assert oversized["value_bytes"] == len(huge) and len(oversized["value"]) < 70_000
    assert list(state.streams) == ["o1"]


async def test_a_record_the_parser_gives_up_on_is_dead_lettered_not_raised() -> None:
    state = MemoryState()
    deep = b'{"a": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    [result] = await processor(Flaky(0), state).process([message(deep)])
    assert result.outcome == "dead_lettered"


class Unstorable(InMemoryUnitOfWork):
    """Refuses at commit what the database would refuse (say, a NUL in a stored text): the
    whole batch's transaction fails, not one message's savepoint."""

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None and any(s.startswith("bad") for s in self.state.streams):
            await super().__aexit__(ValueError, None, None)
            raise asyncpg.CharacterNotInRepertoireError("invalid byte sequence for UTF8: 0x00")
        await super().__aexit__(exc_type, exc, tb)


async def test_a_record_that_fails_its_batch_at_commit_is_found_and_dead_lettered_alone(
        ) -> None:
    state, failures = MemoryState(), []
    batch = [message(encode(event("OrderPlaced", s)), i)
             for i, s in enumerate(["o1", "bad1", "o2"])]
    bp = BatchProcessor("inventory", Flaky(0), lambda: Unstorable(state),
                        sleep=lambda _: asyncio.sleep(0))
    results = await bp.commit(batch, failures.append)
    assert [r.outcome for r in results] == ["processed", "dead_lettered", "processed"]
    assert sorted(state.streams) == ["o1", "o2"]
    [letter] = [json.loads(r["value"]) for r in state.outbox]
    assert letter["origin"]["offset"] == 1 and "CharacterNotInRepertoire" in letter["error"]
    assert [a.outcome for a in state.audit if a.offset == 1] == ["dead_lettered"]
    assert len(failures) == POISON_AFTER + 2  # the batch thrice, then the poison alone twice


async def test_a_database_outage_is_waited_out_without_dead_lettering_anything() -> None:
    state, failures, outage = MemoryState(), [], [3]

    class Down(InMemoryUnitOfWork):
        async def __aenter__(self) -> InMemoryUnitOfWork:
            if outage[0] > 0:
                outage[0] -= 1
                raise InfrastructureError("PostgreSQL unavailable: connection refused")
            return await super().__aenter__()

    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    bp = BatchProcessor("inventory", Flaky(0), lambda: Down(state), sleep=sleep)
    [result] = await bp.commit([message(encode(event("OrderPlaced", "o1")))], failures.append)
    assert result.outcome == "processed" and len(failures) == 3 and sleeps == [0.2, 0.4, 0.8]
    assert state.outbox == []


async def test_a_crash_before_the_commit_resends_none_of_the_batch_s_e_mails() -> None:
    """The batch's e-mails went out, then its transaction failed (a crash): the redelivered
    batch records them as sent and sends none of them again."""
    state, mailer, log = MemoryState(), InMemoryMailer(), InMemorySentLog()
    crashes = [1]

    class CrashesAtCommit(InMemoryUnitOfWork):
        async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
            if exc_type is None and crashes[0]:
                crashes[0] -= 1
                await super().__aexit__(RuntimeError, None, None)
                raise ConnectionResetError("the process died here")
            await super().__aexit__(exc_type, exc, tb)

    bp = BatchProcessor("notifications", notifications.wiring(mailer, log).handler(),
                        lambda: CrashesAtCommit(state), sleep=lambda _: asyncio.sleep(0))
    batch = [message(encode(event("OrderPlaced", f"o{i}")), i) for i in range(5)]
    await bp.commit(batch)
    assert len(mailer.sent) == 5 and len({m["message_id"] for m in mailer.sent}) == 5
    sent = [s for s in state.streams.values() for s in s if s.event.type == "NotificationSent"]
    assert len(sent) == 5


async def test_a_partner_that_is_down_holds_the_batch_instead_of_dead_lettering_it() -> None:
    """The gateway restarts: the message fails its retries a few times over, and the batch is
    tried again whole each time; once the partner answers, it goes through. Nothing lands on
    the DLQ and the watchdog hears of progress, not of a failure."""
    state, sleeps, failures, progressed = MemoryState(), [], [], []
    handler = Flaky(9)  # 4 tries per attempt at the batch: it succeeds on the third
    bp = BatchProcessor("payments", handler, lambda: InMemoryUnitOfWork(state), attempts=4,
                        backoff=0.1, sleep=lambda s: asyncio.sleep(0, sleeps.append(s)),
                        progress=lambda: progressed.append(1), patience=60.0)
    [result] = await bp.commit([message(encode(event("OrderPlaced", "o1")))], failures.append)
    assert result.outcome == "processed" and state.outbox == [] and failures == []
    assert len(progressed) >= 2 and handler.calls == 10


class SlowMailer(InMemoryMailer):
    """Answers after `delay` seconds; counts how many messages it had in hand at once."""

    def __init__(self, delay: float, fail: set[str] | None = None) -> None:
        super().__init__()
        self.delay, self.fail, self.in_flight, self.most = delay, fail or set(), 0, 0
        self.calls: list[str] = []

    async def send(self, to: str, subject: str, body: str, message_id: str) -> None:
        self.calls.append(message_id)
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            if message_id in self.fail:
                self.fail.discard(message_id)  # fails once, then goes through
                raise InfrastructureError("SMTP 451: try again")
        finally:
            self.in_flight -= 1
        await super().send(to, subject, body, message_id)


async def test_the_commands_of_a_batch_are_carried_out_side_by_side_once_each() -> None:
    """Ten orders' e-mails in one batch are with the server together, and each is sent once;
    one that fails is sent again with the runtime's retries, and its order's second event in
    the batch is handled after it, as ever."""
    state, log = MemoryState(), InMemorySentLog()
    events = [event("OrderPlaced", f"o{i}") for i in range(10)]
    mailer = SlowMailer(0.05)
    bp = BatchProcessor("notifications", notifications.wiring(mailer, log, sessions=10).handler(),
                        lambda: InMemoryUnitOfWork(state), sleep=lambda _: asyncio.sleep(0))
    results = await bp.commit([message(encode(e), i) for i, e in enumerate(events)])
    assert [r.outcome for r in results] == ["processed"] * 10
    assert mailer.most == 10 and len(mailer.calls) == len(set(mailer.calls)) == 10
    assert len(mailer.sent) == 10

    [o0] = [s.event for s in state.streams["o0"] if s.event.type == "NotificationSent"]
    first = f"<{o0.data.notification_id}@alur.local>"
    flaky = SlowMailer(0.01, fail={first})
    state2, log2 = MemoryState(), InMemorySentLog()
    bp2 = BatchProcessor("notifications", notifications.wiring(flaky, log2).handler(),
                         lambda: InMemoryUnitOfWork(state2), sleep=lambda _: asyncio.sleep(0))
    again = [events[0], event("PaymentConfirmed", "o0")]
    results = await bp2.commit([message(encode(e), i) for i, e in enumerate(again)])
    assert [r.outcome for r in results] == ["processed", "processed"]
    assert flaky.calls.count(first) == 2 and len(flaky.sent) == 2
    sent = [s.event for s in state2.streams["o0"] if s.event.type == "NotificationSent"]
    assert len(sent) == 2


class SentLogThatGoesDown(InMemorySentLog):
    """The sent log's database dies as it is about to record the `dies_at`th e-mail, and
    answers nothing for the next `outage` calls."""

    def __init__(self, dies_at: int, outage: int) -> None:
        super().__init__()
        self.dies_at, self.outage = dies_at, outage

    def _down(self) -> bool:
        if self.dies_at <= 0 and self.outage > 0:
            self.outage -= 1
            return True
        return False

    async def sent(self, notification_id: str) -> bool:
        if self._down():
            raise InfrastructureError("PostgreSQL is restarting")
        return await super().sent(notification_id)

    async def record(self, notification_id: str) -> None:
        self.dies_at -= 1
        if self._down():
            raise InfrastructureError("PostgreSQL is restarting")
        await super().record(notification_id)


@pytest.mark.parametrize("sessions", [1, 3])
async def test_a_database_restart_mid_batch_resends_at_most_one_e_mail_per_session(
        sessions: int) -> None:
    """Thirty e-mails of one batch queue for the SMTP sessions; the database goes away as the
    fifth is recorded. Only the e-mails already with the server when it went may go out twice:
    the rest wait for the database before they are sent, and each is then sent once."""
    state, log = MemoryState(), SentLogThatGoesDown(dies_at=5, outage=40)
    mailer = SlowMailer(0.01)
    bp = BatchProcessor("notifications",
                        notifications.wiring(mailer, log, sessions=sessions).handler(),
                        lambda: InMemoryUnitOfWork(state), sleep=lambda _: asyncio.sleep(0.001),
                        patience=60.0)
    events = [event("OrderPlaced", f"o{i}") for i in range(30)]
    results = await bp.commit([message(encode(e), i) for i, e in enumerate(events)])
    assert [r.outcome for r in results] == ["processed"] * 30 and log.outage == 0
    ids = [m["message_id"] for m in mailer.sent]
    assert len(set(ids)) == 30 and 1 <= len(ids) - 30 <= sessions
    assert mailer.most <= sessions


async def test_only_the_orders_of_events_the_service_acts_on_are_locked_and_loaded() -> None:
    state, loaded = MemoryState(), []

    class Watched(InMemoryUnitOfWork):
        async def preload(self, stream_ids):  # noqa: ANN001, ANN202
            loaded.extend(stream_ids)
            await super().preload(stream_ids)

    handler = notifications.wiring(InMemoryMailer(), InMemorySentLog()).handler()
    assert "OrderPlaced" in handler.relevant and "LowStock" not in handler.relevant
    bp = BatchProcessor("notifications", handler, lambda: Watched(state),
                        sleep=lambda _: asyncio.sleep(0))
    results = await bp.commit([message(encode(event("OrderPlaced", "o1")), 0),
                               message(encode(event("LowStock", "o2")), 1)])
    # Read once to plan (no transaction open during the e-mail), once to record the plan.
    assert [r.outcome for r in results] == ["processed", "ignored"] and loaded == ["o1", "o1"]
