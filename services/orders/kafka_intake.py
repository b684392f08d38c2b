"""Shops publishing on Kafka: each shop's intake topic in, its outcome topic out (KAFKA.md).

The orders service reads every `order-intake.<shop id>` topic (a pattern subscription, so a
shop added later is picked up within seconds). Only the shop's principal may write its topic
(alur.infra.kafka_access), so the topic names the shop: a record claiming another shop is
refused. Each record is one `OrderSubmitted` CloudEvent (structured mode, or binary mode with
`ce_` headers; JSON) whose `data`
is the body of `POST /v1/orders` with a `reference`, and is placed through the same path as
that POST (services/orders/intake.py).

Each record gets exactly one outcome on `order-outcomes.<shop id>`, keyed like it (the
shop's reference): `OrderAccepted` with the order id, or `OrderRejected` with a problem as
the HTTP API would answer it. The outcome, the order and the consumer's move past the record
(`intake_positions`) commit in one transaction; a record seen again after a crash or a
rebalance finds its offset passed and is skipped. Nothing is skipped unanswered: a record
that is not JSON, not a CloudEvent, too large, or empty is rejected with its reason, and a
database outage holds the partition (retrying) until the database is back.

A shop publishing faster than its rate (the HTTP API's per-shop limit, sharing its bucket) has
its partitions paused until the rate allows the next record: nothing is refused for speed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from alur.runtime import metrics
from alur.runtime.db import DATABASE_ERRORS
from alur.runtime.errors import ConcurrencyConflict
from alur.runtime.postgres import PostgresUnitOfWork
from alur.runtime.strict_json import loads
from schemas.envelope import now
from services.orders.api.models import Accepted, PlaceOrder
from services.orders.api.problems import ApiError, field_error, problem_body
from services.orders.api.security import Caller, RateLimiter
from services.orders.intake import Intake
from services.orders.shop_topics import INTAKE_PREFIX, TOPIC_MAX_RECORD_BYTES, outcomes_topic
from services.orders.shops import Shop

log = logging.getLogger("alur.orders.kafka")
GROUP = "alur-orders-intake"
PATTERN = r"^order-intake\.[a-z0-9][a-z0-9-]{0,62}$"
SUBMITTED = "OrderSubmitted"
OUTCOME_IDS = uuid.UUID("0c6f5e0a-7b2d-4d8e-9f13-5a7c2e9b4d61")
RETRY_AFTER = 1.0  # seconds between tries of a record while the database is away
# An order's customer-facing status events, republished to its shop's outcome topic when the
# order came by Kafka (the latest migration that makes the trigger, 110, lists the same types;
# a test keeps them equal).
STATUS_EVENTS = (
    "PaymentPending", "PaymentRequested", "PaymentConfirmed", "PaymentFailed", "PaymentExpired",
    "ShipmentCreated", "Shipped", "OutForDelivery", "DeliveryFailed", "Delivered",
    "ReadyForPickup", "PickedUp", "ReturnedToSender", "OrderCancelled", "RefundIssued",
    "ReturnClosed", "OrderReturned", "OrderCompleted")


class Submitted(PlaceOrder):
    """`data` of an OrderSubmitted: the body of POST /v1/orders, its reference required."""

    reference: str = Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$",
                           description="The shop's own order reference; also the record's key.")
    channel: Literal["online", "marketplace"] = Field(
        "marketplace", description="Sales channel.")


class OrderSubmitted(BaseModel):
    """A shop's record on its intake topic: a CloudEvents 1.0 envelope (structured mode).
    Extension attributes are allowed and ignored."""

    model_config = ConfigDict(extra="ignore")

    specversion: Literal["1.0"]
    id: str = Field(min_length=1, max_length=256, description="The shop's id for this record.")
    source: str = Field(min_length=1, max_length=1024, description="A URI-reference naming "
                        "the shop's system that sent it.")
    type: Literal["OrderSubmitted"]
    time: AwareDatetime | None = None
    datacontenttype: Literal["application/json"] | None = None
    subject: str | None = Field(None, max_length=128)
    data: Submitted


class IntakeRef(BaseModel):
    topic: str
    partition: int
    offset: int


class OrderAcceptedData(BaseModel):
    reference: str
    order_id: str
    status_url: str
    duplicate: bool = Field(description="The reference named an order placed before.")
    submission_id: str = Field(description="The `id` of the record this answers.")
    intake: IntakeRef


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None


class OrderRejectedData(BaseModel):
    reference: str | None = Field(description="The record's reference, if it could be read.")
    submission_id: str | None = Field(description="The record's `id`, if it could be read.")
    intake: IntakeRef
    problem: Problem


class AlreadyHandled(Exception):
    """The record's offset was passed already (another replica or an earlier life did it)."""


@dataclass
class _Read:
    """What could be read of a record before it was judged."""

    reference: str | None = None
    submission_id: str | None = None


def _text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def parse(record: ConsumerRecord[bytes, bytes], shop: Shop, body_limit: int,
          read: _Read) -> Submitted:
    """The record's order, or ApiError with the reason the shop reads."""
    value = record.value
    if value is None:
        raise ApiError("bad-request", "The record has no value (a tombstone); publish an "
                       "OrderSubmitted CloudEvent as JSON.")
    if len(value) > body_limit:
        raise ApiError("body-too-large", f"The record is {len(value)} bytes; records are "
                       f"limited to {body_limit} bytes.")
    try:
        raw = loads(value)
    except json.JSONDecodeError as exc:
        raise ApiError("validation-error", f"The record is not valid JSON: {exc.msg}.",
                       errors=[{"field": "value", "message": exc.msg}]) from None
    attributes = {name[3:]: _text(bytes(v)) for name, v in record.headers or ()
                  if name.startswith("ce_")}
    if attributes:  # binary mode: the attributes in ce_ headers, the value is `data`
        raw = {**attributes, "data": raw}
        raw.setdefault("datacontenttype", next(
            (_text(bytes(v)) for name, v in record.headers if name == "content-type"), None))
    if isinstance(raw, dict):
        data = raw.get("data")
        read.submission_id = raw["id"] if isinstance(raw.get("id"), str) else None
        if isinstance(data, dict) and isinstance(data.get("reference"), str):
            read.reference = data["reference"][:128]
    try:
        submitted = OrderSubmitted.model_validate(raw)
    except ValidationError as exc:
        errors = [field_error(e, skip=0) for e in exc.errors()]
        return _refuse_shape(raw, errors)
    key = _text(record.key)
    if key is not None and key != submitted.data.reference:
        raise ApiError("validation-error", "See `errors`.", errors=[
            {"field": "key", "message": "the record's key must be data.reference"}])
    if submitted.data.shop_id is not None and submitted.data.shop_id != shop.shop_id:
        raise ApiError("validation-error", "See `errors`.", errors=[
            {"field": "data.shop_id", "message": "must be the shop of the intake topic"}])
    return submitted.data


def _refuse_shape(raw: Any, errors: list[dict[str, str]]) -> Submitted:
    if not isinstance(raw, dict) or any(e["field"] in ("specversion", "type", "id", "source")
                                        for e in errors):
        raise ApiError("validation-error", "The record is not an OrderSubmitted CloudEvent "
                       "(structured mode): see `errors`.", errors=errors)
    raise ApiError("validation-error", "See `errors` for each invalid field.", errors=errors)


def outcome_value(kind: str, record: ConsumerRecord[bytes, bytes], subject: str | None,
                  data: BaseModel) -> bytes:
    """The outcome as a CloudEvent; its id follows from the record's place, so a shop can
    tell an outcome it has seen."""
    return json.dumps({
        "specversion": "1.0", "type": kind, "source": "alur/orders",
        "id": str(uuid.uuid5(OUTCOME_IDS, f"{record.topic}/{record.partition}/{record.offset}")),
        "time": now().isoformat(), "subject": subject, "datacontenttype": "application/json",
        "data": data.model_dump(mode="json")}).encode()


class KafkaIntake:
    def __init__(self, bootstrap: str, new_uow: Callable[[], PostgresUnitOfWork], intake: Intake,
                 limiter: RateLimiter, rate: float, burst: int, body_limit: int) -> None:
        self._bootstrap, self._new_uow, self._intake = bootstrap, new_uow, intake
        self._limiter, self._rate, self._burst = limiter, rate, burst
        self._body_limit = body_limit
        self._records = metrics.Children(metrics.INTAKE_RECORDS)
        self._rejections = metrics.Children(metrics.INTAKE_REJECTIONS)
        self._lag = metrics.Children(metrics.INTAKE_LAG)
        self._throttled = metrics.Children(metrics.INTAKE_THROTTLED)
        self._at: dict[TopicPartition, int] = {}  # next offset to handle, per partition

    async def run(self) -> None:
        """Consume until cancelled; a broker outage is retried, never fatal."""
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except KafkaError as exc:
                log.warning("kafka intake: broker trouble, reconnecting in 1s: %s", exc)
                await asyncio.sleep(1.0)

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, group_id=GROUP, enable_auto_commit=False,
            auto_offset_reset="earliest", metadata_max_age_ms=5000,
            isolation_level="read_committed",
            max_partition_fetch_bytes=TOPIC_MAX_RECORD_BYTES + 65536)
        consumer.subscribe(pattern=PATTERN)
        await consumer.start()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=500)
                done = await asyncio.gather(*(self._partition(consumer, tp, records)
                                              for tp, records in batches.items()))
                offsets = {tp: offset for tp, offset in done if offset is not None}
                self._at.update(offsets)
                if offsets:
                    try:
                        await consumer.commit(offsets)
                    except CommitFailedError as exc:  # a rebalance: the positions in the
                        log.info("kafka intake: commit skipped: %s", exc)  # database hold
                self._sample_lag(consumer)
        finally:
            await consumer.stop()

    def _sample_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Per shop: the log end offsets (as of the last fetch) minus the offsets handled."""
        lag: dict[str, int] = {}
        for tp in consumer.assignment():
            end, at = consumer.highwater(tp), self._at.get(tp)
            if end is not None and at is not None:
                shop = tp.topic.removeprefix(INTAKE_PREFIX)
                lag[shop] = lag.get(shop, 0) + max(0, end - at)
        for shop, records in lag.items():
            self._lag(shop).set(records)

    async def _partition(self, consumer: AIOKafkaConsumer, tp: TopicPartition,
                         records: list[ConsumerRecord[bytes, bytes]]
                         ) -> tuple[TopicPartition, int | None]:
        """Handle one partition's records in order; the offset to commit after them."""
        shop_id = tp.topic.removeprefix(INTAKE_PREFIX)
        throttled = self._throttled(shop_id)  # exported at 0 before the shop is ever paused
        shop = await self._retrying(lambda: self._intake.registry.shop(shop_id))
        done: int | None = None
        for record in records:
            wait = self._limiter.take(shop_id, (shop and shop.rate_per_second) or self._rate,
                                      (shop and shop.burst) or self._burst)
            if wait > 0:
                throttled.inc()
                consumer.pause(tp)
                consumer.seek(tp, record.offset)
                asyncio.get_running_loop().call_later(wait, _resume, consumer, tp)
                break
            await self._retrying(lambda r=record: self.handle(shop_id, shop, r))  # type: ignore[misc]
            done = record.offset + 1
        return tp, done

    async def _retrying(self, step: Callable[[], Any]) -> Any:
        """`step` until the database takes it: a record is never skipped for an outage."""
        while True:
            try:
                return await step()
            except (*DATABASE_ERRORS, ConcurrencyConflict) as exc:
                log.warning("kafka intake: database unavailable, retrying: %s", exc)
                await asyncio.sleep(RETRY_AFTER)

    async def handle(self, shop_id: str, shop: Shop | None,
                     record: ConsumerRecord[bytes, bytes]) -> str:
        """Place or reject one record; its outcome ('accepted', 'duplicate', 'rejected' or
        'skipped' if it was handled before)."""
        read = _Read(reference=_text(record.key))
        try:
            if shop is None:
                raise ApiError("unauthenticated", f"No shop {shop_id} is registered.")
            order = parse(record, shop, self._body_limit, read)

            async def within(uow: PostgresUnitOfWork, accepted: Accepted) -> None:
                await self._advance(uow, record)
                uow.send(outcomes_topic(shop_id), order.reference.encode(), outcome_value(
                    "OrderAccepted", record, accepted.order_id, OrderAcceptedData(
                        reference=order.reference, order_id=accepted.order_id,
                        status_url=accepted.status_url, duplicate=accepted.duplicate,
                        submission_id=read.submission_id or "", intake=_ref(record))),
                    "OrderAccepted")

            answer = await self._intake.place(Caller(shop), order, fingerprint=b"",
                                              idempotency_key=None, via="kafka", within=within)
            outcome = "duplicate" if answer.body.get("duplicate") else "accepted"
        except AlreadyHandled:
            return "skipped"
        except ApiError as exc:
            return await self._reject(shop_id, record, read, exc)
        except (asyncpg.DataError, UnicodeError) as exc:  # a value the database refuses
            return await self._reject(shop_id, record, read, ApiError(
                "validation-error", "A value is out of range or holds characters that cannot "
                f"be stored ({type(exc).__name__})."))
        except (*DATABASE_ERRORS, ConcurrencyConflict):
            raise
        except Exception:  # a defect must not stall the partition: answer it, and say so
            log.exception("kafka intake: record %s/%d/%d could not be handled", record.topic,
                          record.partition, record.offset)
            return await self._reject(shop_id, record, read, ApiError(
                "internal", "The record could not be handled; publish it again later."))
        self._records(shop_id, outcome).inc()
        return outcome

    async def _reject(self, shop_id: str, record: ConsumerRecord[bytes, bytes], read: _Read,
                      error: ApiError) -> str:
        """Record the record's OrderRejected; 'rejected', or 'skipped' if it was decided
        before (by another replica, or before a crash)."""
        rejected = OrderRejectedData(
            reference=read.reference, submission_id=read.submission_id, intake=_ref(record),
            problem=Problem.model_validate(problem_body(error.kind, error.detail, error.errors)))
        # Keyed like the record, so a shop's records and their outcomes share partitions.
        key = record.key if record.key is not None else \
            read.reference.encode() if read.reference is not None else None
        try:
            async with self._new_uow() as uow:
                await self._advance(uow, record)
                uow.send(outcomes_topic(shop_id), key,
                         outcome_value("OrderRejected", record, read.reference, rejected),
                         "OrderRejected")
        except AlreadyHandled:
            return "skipped"
        self._rejections(shop_id, error.kind).inc()
        self._records(shop_id, "rejected").inc()
        return "rejected"

    @staticmethod
    async def _advance(uow: PostgresUnitOfWork, record: ConsumerRecord[bytes, bytes]) -> None:
        """Move the partition's position past the record, or AlreadyHandled if it is past.
        The row stays locked until the transaction ends, so two replicas never both answer."""
        moved = await (await uow.connection()).fetchval(
            "INSERT INTO intake_positions (topic, partition, next_offset) VALUES ($1, $2, $3)"
            " ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset,"
            " updated_at = now() WHERE intake_positions.next_offset < excluded.next_offset"
            " RETURNING true", record.topic, record.partition, record.offset + 1)
        if not moved:
            raise AlreadyHandled()


def _ref(record: ConsumerRecord[bytes, bytes]) -> IntakeRef:
    return IntakeRef(topic=record.topic, partition=record.partition, offset=record.offset)


def _resume(consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
    try:
        consumer.resume(tp)
    except (IllegalStateError, KeyError):  # reassigned meanwhile: its new owner starts afresh
        pass
