"""Prometheus metrics of the runtime and of the business. Names carry the `alur_` prefix and base
units (seconds, messages, rows); label values are bounded sets (service, topic, event type,
stage, reason), never ids. `deploy/prometheus/` and `deploy/grafana/` are built on these names.

Effects that happen inside a transaction are counted only once it committed: handlers hand a
callback to `on_commit`, and the batch processor runs the callbacks of the messages whose
savepoint survived after the batch's commit, so a retried batch is not counted twice.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Fine around the one-second latency objective, coarse out to the days a delivery takes.
STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 5, 7.5, 10, 20, 30, 60, 300, 900,
                 3600, 21600, 86400, 259200, 604800)

# --- the stream processor -------------------------------------------------------------------
EVENTS_CONSUMED = Counter(
    "alur_events_consumed_total", "Consumed messages by topic, event type and outcome "
    "(processed, ignored, duplicate, dead_lettered).", ["service", "topic", "type", "outcome"])
HANDLER_SECONDS = Histogram(
    "alur_handler_seconds", "Time one message spends in its handler, retries included.",
    ["service", "type"], buckets=LATENCY_BUCKETS)
BATCH_SECONDS = Histogram(
    "alur_batch_seconds", "Time to process and commit one consumed batch.", ["service"],
    buckets=LATENCY_BUCKETS)
BATCH_SIZE = Histogram(
    "alur_batch_size_messages", "Messages per consumed batch.", ["service"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000))
BATCH_FAILURES = Counter(
    "alur_batch_failures_total", "Batches whose transaction failed and was retried.", ["service"])
RETRIES = Counter(
    "alur_retries_total", "Handler attempts that failed with a retriable error and were retried "
    "(the log line names the event).", ["service"])
STRAGGLERS = Counter(
    "alur_stragglers_total", "Orders a batch committed without because their partner call "
    "(gateway, carrier, SMTP) was still running; each is committed by a task of its own once "
    "answered.", ["service"])
DEAD_LETTERS = Counter(
    "alur_dead_letters_total", "Messages sent to a dead-letter topic.", ["service", "topic"])
CONSUMER_LAG = Gauge(
    "alur_consumer_lag_messages", "Messages in a partition not yet processed by this replica "
    "(log end offset minus next offset to process).", ["service", "topic", "partition"])
ASSIGNED_PARTITIONS = Gauge(
    "alur_assigned_partitions", "Partitions assigned to this replica.", ["service"])

# --- the outbox relay -----------------------------------------------------------------------
EVENTS_PRODUCED = Counter(
    "alur_events_produced_total", "Outbox rows published to Kafka, by topic and event type.",
    ["service", "topic", "type"])
RELAY_FAILURES = Counter(
    "alur_relay_failures_total", "Relay rounds that failed (broker or database trouble).",
    ["service"])
RELAY_LEADER = Gauge(
    "alur_relay_leader", "1 while this replica's relay holds the service's relay lock.",
    ["service"])
OUTBOX_BACKLOG = Gauge(
    "alur_outbox_backlog_rows", "Outbox rows not yet published.", ["service"])
OUTBOX_OLDEST_AGE = Gauge(
    "alur_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row (0 if none).",
    ["service"])

# --- shops publishing on Kafka (services/orders/kafka_intake.py) ----------------------------
INTAKE_RECORDS = Counter(
    "alur_intake_records_total", "Records read from the shops' intake topics, by shop and "
    "outcome (accepted, duplicate, rejected).", ["shop", "outcome"])
INTAKE_REJECTIONS = Counter(
    "alur_intake_rejections_total", "Intake records rejected, by shop and reason (the "
    "problem's kind, e.g. validation-error).", ["shop", "reason"])
INTAKE_LAG = Gauge(
    "alur_intake_lag_records", "Records on a shop's intake topic not yet handled (log end "
    "offset minus position, summed over its partitions).", ["shop"])
INTAKE_THROTTLED = Counter(
    "alur_intake_throttled_total", "Times a shop's intake partition was paused because the "
    "shop published faster than its rate.", ["shop"])

# --- the business ---------------------------------------------------------------------------
ORDER_TRANSITIONS = Counter(
    "alur_order_transitions_total", "Orders entering a state, by sales channel.",
    ["channel", "state"])
ORDER_STAGE_SECONDS = Histogram(
    "alur_order_stage_seconds", "Time an order spent in the previous state before entering "
    "`stage` (placed->reserved is observed as stage=reserved).", ["stage"],
    buckets=STAGE_BUCKETS)
ORDER_SINCE_PLACED_SECONDS = Histogram(
    "alur_order_since_placed_seconds", "Time from an order's placement to entering `stage`.",
    ["stage"], buckets=STAGE_BUCKETS)
ORDERS_STUCK = Gauge(
    "alur_orders_stuck", "Orders in a non-terminal state for longer than the stuck threshold "
    "(exported by the service that owns the order state).", ["service"])
COMPENSATIONS = Counter(
    "alur_compensations_total", "Compensating events emitted (releases, refunds, cancellations).",
    ["service", "type"])
PAYMENT_DECLINES = Counter(
    "alur_payment_declines_total", "Payments the gateway refused, by reason.", ["reason"])
TIMERS_FIRED = Counter(
    "alur_timers_fired_total", "Deadlines that passed and were acted on (reservation_expiry, "
    "payment_expiry, auto_complete, stuck), by the replica that fired them.", ["service", "kind"])
CARRIER_REPORTS = Counter(
    "alur_carrier_reports_total", "Parcel reports on the carrier webhook, by carrier and answer "
    "(recorded, duplicate, bad_signature, invalid, unknown, out_of_sequence, retry).",
    ["carrier", "outcome"])
NOTIFICATION_DELIVERIES = Counter(
    "alur_notification_deliveries_total", "Notification delivery attempts by channel and "
    "outcome (sent, failed).", ["channel", "outcome"])


def initialise(metric: Any, *label_sets: tuple[str, ...]) -> None:
    """Export these label sets at zero from the start, so that queries and alerts see a series
    before the first event of its kind (a missing series is not a zero in PromQL)."""
    for labels in label_sets:
        metric.labels(*labels)


class Children:
    """Metric children resolved once per label set, not once per message."""

    def __init__(self, metric: Any, *fixed: str) -> None:
        self._metric = metric
        self._fixed = fixed
        self._cache: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self._cache.get(labels)
        if child is None:
            child = self._cache[labels] = self._metric.labels(*self._fixed, *labels)
        return child


_pending: contextvars.ContextVar[list[Callable[[], None]] | None] = contextvars.ContextVar(
    "alur_metrics_pending", default=None)


def on_commit(callback: Callable[[], None]) -> None:
    """Run `callback` once the current message's transaction committed (now, outside one)."""
    pending = _pending.get()
    if pending is None:
        callback()
    else:
        pending.append(callback)


@contextmanager
def collecting() -> Iterator[list[Callable[[], None]]]:
    """Collect the `on_commit` callbacks made inside the block instead of running them."""
    pending: list[Callable[[], None]] = []
    token = _pending.set(pending)
    try:
        yield pending
    finally:
        _pending.reset(token)
