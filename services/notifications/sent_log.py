"""Which e-mails the SMTP server has accepted, recorded outside the batch transaction.

Sending an e-mail cannot be rolled back. The consumer handles a batch of events in one
transaction; had it only that transaction to remember what it sent, a crash before the commit
would send the whole batch again on redelivery. So each e-mail is recorded here, committed on
its own, the moment the server accepts it, and checked before sending. A crash between the
server's acceptance and this record duplicates that one e-mail (with the same Message-ID, so a
mail client can tell): the window that remains.
"""

from __future__ import annotations

from typing import Protocol

import asyncpg


class SentLog(Protocol):
    async def sent(self, notification_id: str) -> bool:
        """Whether this e-mail was handed to the server already."""

    async def record(self, notification_id: str) -> None:
        """Remember that the server accepted it (durably, now)."""


class PostgresSentLog:
    """`sent_emails` in the service's schema, written through the pool (autocommit), one
    statement per check and per record, each right before and right after its e-mail. Not
    grouped: a check made just before each send is also what stops a batch from sending on
    while PostgreSQL is gone. With a batch's checks in one statement up front, the fault
    suite saw a whole batch sent during a database restart and sent again after it (12
    e-mails twice against 2)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def sent(self, notification_id: str) -> bool:
        return bool(await self._pool.fetchval(
            "SELECT true FROM sent_emails WHERE notification_id = $1", notification_id))

    async def record(self, notification_id: str) -> None:
        await self._pool.execute(
            "INSERT INTO sent_emails (notification_id) VALUES ($1) ON CONFLICT DO NOTHING",
            notification_id)

    async def prune(self, older_than_seconds: float) -> int:
        status = await self._pool.execute(
            "DELETE FROM sent_emails WHERE sent_at < now() - make_interval(secs => $1)",
            older_than_seconds)
        return int(status.split()[-1])


class InMemorySentLog:
    """The fake: same contract, kept in a set (survives a fake 'crash' of the batch)."""

    def __init__(self) -> None:
        self.ids: set[str] = set()

    async def sent(self, notification_id: str) -> bool:
        return notification_id in self.ids

    async def record(self, notification_id: str) -> None:
        self.ids.add(notification_id)
