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

from alur.runtime.group import GroupCommit


class SentLog(Protocol):
    async def sent(self, notification_id: str) -> bool:
        """Whether this e-mail was handed to the server already."""

    async def record(self, notification_id: str) -> None:
        """Remember that the server accepted it (durably, now)."""


class PostgresSentLog:
    """`sent_emails` in the service's schema, written through the pool (autocommit). Checks
    and records of e-mails sent side by side share a statement (group commit): a batch's
    plans ask about all of its e-mails in the same loop turn, and records made while one is
    being written go in the next together. A record is still durable before `record`
    returns."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._checks = GroupCommit(self._sent)
        self._records = GroupCommit(self._record)

    async def sent(self, notification_id: str) -> bool:
        return await self._checks.submit(notification_id)

    async def record(self, notification_id: str) -> None:
        await self._records.submit(notification_id)

    async def _sent(self, ids: list[str]) -> list[bool | Exception]:
        found = {r["notification_id"] for r in await self._pool.fetch(
            "SELECT notification_id FROM sent_emails WHERE notification_id = ANY($1::text[])",
            ids)}
        return [i in found for i in ids]

    async def _record(self, ids: list[str]) -> list[None | Exception]:
        await self._pool.execute(
            "INSERT INTO sent_emails (notification_id) SELECT DISTINCT unnest($1::text[]) "
            "ON CONFLICT DO NOTHING", ids)
        return [None] * len(ids)

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
