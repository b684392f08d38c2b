"""Prometheus metrics of the runtime. Names in base units; no ids as label values."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

EVENTS_CONSUMED = Counter(
    "alur_events_consumed_total", "Consumed messages by topic, event type and outcome.",
    ["service", "topic", "type", "outcome"])
EVENTS_PUBLISHED = Counter(
    "alur_events_published_total", "Outbox rows published to Kafka, by topic.",
    ["service", "topic"])
DEAD_LETTERS = Counter(
    "alur_dead_letters_total", "Messages sent to a dead-letter topic.", ["service", "topic"])
BATCH_SECONDS = Histogram(
    "alur_batch_seconds", "Time to process and commit one consumed batch.", ["service"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
BATCH_SIZE = Histogram(
    "alur_batch_size_messages", "Messages per consumed batch.", ["service"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000))
BATCH_FAILURES = Counter(
    "alur_batch_failures_total", "Batches whose transaction failed and was retried.", ["service"])
OUTBOX_BACKLOG = Gauge(
    "alur_outbox_backlog_rows", "Unpublished outbox rows seen by the relay.", ["service"])


def serve(host: str, port: int) -> None:
    start_http_server(port, addr=host)
