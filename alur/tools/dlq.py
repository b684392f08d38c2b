"""`alur dlq`: list, show and redrive dead letters.

A dead letter is a record on `<topic>.dlq` written by the runtime (alur/runtime/processing.py):
the error, the attempts, the service that gave up, where the message came from, and its
original bytes. Redriving sends those bytes, with the original key, back to the origin topic.
That is the normal path, so it is safe: every consumer deduplicates by event id, and the
service that dead-lettered the event took it out of its inbox, so it handles it again, once.
The redrive is recorded in PostgreSQL (schema `alur_ops`) in the same transaction that waits for
the broker's acknowledgement, so a record is not redriven twice by accident (`--force` does).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import ValidationError

from alur.progress import Progress
from alur.runtime.db import migrate
from alur.runtime.relay import EVENT_HEADERS, new_producer
from alur.runtime.topics import records
from schemas import DecodeError, decode
from schemas.catalogue import TOPICS, dlq_topic
from schemas.deadletter import DeadLetterRecord

log = logging.getLogger("alur.dlq")

SCHEMA = "alur_ops"
SQL = Path(__file__).parent / "sql"
REDRIVE_HEADER = "alur-redrive-of"


@dataclass(frozen=True)
class DeadLetter:
    id: str                 # "<dlq topic>:<partition>:<offset>"
    dlq_topic: str
    partition: int
    offset: int
    service: str
    error: str
    attempts: int
    failed_at: str
    origin_topic: str
    origin_partition: int
    origin_offset: int
    key: bytes | None
    value: bytes
    order_id: str | None
    event_type: str | None
    event_id: str | None

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "service": self.service, "order_id": self.order_id,
                "event_type": self.event_type, "event_id": self.event_id,
                "attempts": self.attempts, "failed_at": self.failed_at, "error": self.error,
                "origin": f"{self.origin_topic}[{self.origin_partition}]@{self.origin_offset}"}

    def detail(self) -> dict[str, Any]:
        try:
            original: Any = json.loads(self.value)
        except ValueError:
            original = base64.b64encode(self.value).decode()
        return {**self.summary(), "key": self.key.decode(errors="replace") if self.key else None,
                "original_message": original}


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc']) or 'value'}: {first['msg']}"


class NotADeadLetter(ValueError):
    """A record on a DLQ topic that no service wrote there (a tombstone, stray bytes)."""


def parse(dlq: str, partition: int, offset: int, key: bytes | None,
          raw: bytes | None) -> DeadLetter:
    try:
        record = DeadLetterRecord.model_validate_json(raw if raw is not None else b"")
    except ValidationError as exc:
        raise NotADeadLetter(f"{dlq}:{partition}:{offset} is not a dead letter "
                             f"({_first_error(exc)})"[:300]) from None
    try:
        value = (b"" if record.value is None  # a tombstone: it had no value
                 else base64.b64decode(record.value) if record.value_encoding == "base64"
                 else record.value.encode())
    except ValueError as exc:
        raise NotADeadLetter(f"{dlq}:{partition}:{offset} is not a dead letter "
                             f"({type(exc).__name__}: {exc})"[:300]) from None
    order_id: str | None
    event_type: str | None
    event_id: str | None
    try:
        event = decode(value)
        order_id, event_type, event_id = event.subject, event.type, str(event.id)
    except DecodeError:
        order_id = key.decode(errors="replace") if key else None
        event_type = event_id = None
    return DeadLetter(
        id=f"{dlq}:{partition}:{offset}", dlq_topic=dlq, partition=partition, offset=offset,
        key=key, value=value, order_id=order_id, event_type=event_type, event_id=event_id,
        service=record.service, error=record.error, attempts=record.attempts,
        failed_at=record.failed_at.isoformat(), origin_topic=record.origin.topic,
        origin_partition=record.origin.partition, origin_offset=record.origin.offset)


async def read_dead_letters(bootstrap: str, topics: Iterable[str] = TOPICS, *,
                            progress: bool = False) -> list[DeadLetter]:
    """Every dead letter of the given topics' DLQs, oldest first per partition. A record there
    that is not one is logged and left out."""
    letters: list[DeadLetter] = []
    async for batch in records(bootstrap, [dlq_topic(t) for t in topics], progress=progress):
        for r in batch:
            try:
                letters.append(parse(r.topic, r.partition, r.offset, r.key, r.value))
            except NotADeadLetter as exc:
                log.warning("%s", exc)
    return letters


async def redriven(dsn: str) -> dict[str, datetime]:
    """Dead-letter id -> when it was last redriven."""
    await migrate(dsn, SCHEMA, SQL)
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(f"SELECT id, redriven_at FROM {SCHEMA}.dlq_redrives")
    finally:
        await conn.close()
    return {r["id"]: r["redriven_at"] for r in rows}


@dataclass(frozen=True)
class Redrive:
    id: str
    outcome: str            # "redriven" or "skipped: ..."
    published: str | None   # where the redriven message landed


async def redrive(dsn: str, bootstrap: str, letters: Sequence[DeadLetter], *,
                  force: bool = False) -> list[Redrive]:
    await migrate(dsn, SCHEMA, SQL)
    conn = await asyncpg.connect(dsn)
    producer = new_producer(bootstrap)
    await producer.start()
    bar = Progress("redriving", len(letters)) if len(letters) > 20 else None
    done: list[Redrive] = []
    try:
        for n, letter in enumerate(letters, 1):
            async with conn.transaction():
                fresh = await conn.fetchval(
                    f"INSERT INTO {SCHEMA}.dlq_redrives (id, service, order_id) VALUES ($1, $2, $3)"
                    f" ON CONFLICT (id) DO UPDATE SET redriven_at = now(), times = "
                    f"{SCHEMA}.dlq_redrives.times + 1 WHERE $4 RETURNING times = 1",
                    letter.id, letter.service, letter.order_id, force)
                if fresh is None:
                    done.append(Redrive(letter.id, "skipped: already redriven (use --force)",
                                        None))
                    continue
                sent = await producer.send_and_wait(
                    letter.origin_topic, letter.value, key=letter.key,
                    headers=[*EVENT_HEADERS, (REDRIVE_HEADER, letter.id.encode())])
                where = f"{sent.topic}[{sent.partition}]@{sent.offset}"
                await conn.execute(f"UPDATE {SCHEMA}.dlq_redrives SET published = $2 "
                                   "WHERE id = $1", letter.id, where)
            done.append(Redrive(letter.id, "redriven", where))
            if bar:
                bar.show(n)
        if bar:
            bar.finish(len(letters))
        return done
    finally:
        await producer.stop()
        await conn.close()
