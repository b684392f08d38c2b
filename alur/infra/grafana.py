"""The Grafana dashboards, built here and committed as JSON under deploy/grafana/dashboards/.

Written as code so that every panel is laid out the same way and every query can be listed for
the test that runs it against a live Prometheus (tests/e2e/test_observability.py). `alur deploy
render` rewrites the JSON; a test fails when the committed files drift from this module.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DATASOURCE = {"type": "prometheus", "uid": "alur-prometheus"}
RATE = "$__rate_interval"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"
    width: int = 12
    description: str = ""


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    rows: tuple[tuple[str, tuple[Panel, ...]], ...]
    variables: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def panels(self) -> list[Panel]:
        return [p for _, panels in self.rows for p in panels]


def q(expr: str, legend: str = "") -> Query:
    return Query(" ".join(expr.split()), legend)


def stat(title: str, expr: str, unit: str = "short", description: str = "") -> Panel:
    return Panel(title, (q(expr),), unit, "stat", 6, description)


OVERVIEW = Dashboard(
    "alur-overview", "Alur / Platform overview",
    "Throughput, lag and errors across the five services. Start here.",
    (
        ("Now", (
            stat("Orders placed per second",
                 f'sum(rate(alur_order_transitions_total{{state="placed"}}[{RATE}]))', "reqps"),
            stat("Services up", 'sum(up{alur_service!=""})', "short",
                 "Scrape targets answering; one per service replica."),
            stat("Stuck orders", "max(alur_orders_stuck)", "short",
                 "Orders with no progress for longer than ALUR_STUCK_AFTER."),
            stat("Dead letters in the last hour",
                 "sum(increase(alur_dead_letters_total[1h]))", "short"),
        )),
        ("Throughput", (
            Panel("Events consumed per second, by service",
                  (q(f"sum by (service) (rate(alur_events_consumed_total[{RATE}]))",
                     "{{service}}"),), "ops"),
            Panel("Events produced per second, by service",
                  (q(f"sum by (service) (rate(alur_events_produced_total[{RATE}]))",
                     "{{service}}"),), "ops"),
        )),
        ("Backlog", (
            Panel("Consumer lag, by service and topic",
                  (q("sum by (service, topic) (alur_consumer_lag_messages)",
                     "{{service}} <- {{topic}}"),), "short",
                  description="Messages not yet processed; should return to zero."),
            Panel("Oldest unpublished outbox row, by service",
                  (q("max by (service) (alur_outbox_oldest_age_seconds)", "{{service}}"),),
                  "s"),
        )),
        ("Shops on Kafka", (
            Panel("Intake records per second, by shop and outcome",
                  (q(f"sum by (shop, outcome) (rate(alur_intake_records_total[{RATE}]))",
                     "{{shop}} {{outcome}}"),), "ops",
                  description="Records read from the shops' intake topics: accepted, "
                              "duplicate (a reference seen before) or rejected."),
            Panel("Intake rejections per second, by shop and reason",
                  (q(f"sum by (shop, reason) (rate(alur_intake_rejections_total[{RATE}]))",
                     "{{shop}} {{reason}}"),), "ops",
                  description="The problem kind each rejected record's OrderRejected names."),
            Panel("Intake consumer lag, by shop",
                  (q("sum by (shop) (alur_intake_lag_records)", "{{shop}}"),
                   q(f"sum by (shop) (rate(alur_intake_throttled_total[{RATE}]))",
                     "{{shop}} paused for its rate (per s)")), "short",
                  description="Records on a shop's intake topic not yet handled; should "
                              "return to zero. A shop above its rate is paused, not refused."),
        )),
        ("Errors", (
            Panel("Dead letters per second, by service and topic",
                  (q(f"sum by (service, topic) (rate(alur_dead_letters_total[{RATE}]))",
                     "{{service}} <- {{topic}}"),), "ops"),
            Panel("Dead-lettered share of consumed messages (SLO: under 0.1%)",
                  (q("service:alur_message_errors:ratio_rate5m", "{{service}}"),),
                  "percentunit"),
            Panel("Retries and failed batches per second",
                  (q(f"sum by (service) (rate(alur_retries_total[{RATE}]))",
                     "retries {{service}}"),
                   q(f"sum by (service) (rate(alur_batch_failures_total[{RATE}]))",
                     "failed batches {{service}}")), "ops"),
            Panel("Handler latency p99, by service",
                  (q(f"histogram_quantile(0.99, sum by (service, le) "
                     f"(rate(alur_handler_seconds_bucket[{RATE}])))", "{{service}}"),), "s"),
        )),
    ),
)

SERVICE = "$service"
PER_SERVICE = Dashboard(
    "alur-service", "Alur / Service",
    "One service's stream processor, relay and outbox. Pick the service above.",
    (
        ("Consumer", (
            Panel("Consumed per second, by type and outcome",
                  (q(f'sum by (type, outcome) (rate(alur_events_consumed_total'
                     f'{{service="{SERVICE}"}}[{RATE}]))', "{{type}} {{outcome}}"),), "ops"),
            Panel("Handler latency, by type",
                  (q(f'histogram_quantile(0.5, sum by (type, le) (rate(alur_handler_seconds_bucket'
                     f'{{service="{SERVICE}"}}[{RATE}])))', "p50 {{type}}"),
                   q(f'histogram_quantile(0.99, sum by (type, le) (rate(alur_handler_seconds_'
                     f'bucket{{service="{SERVICE}"}}[{RATE}])))', "p99 {{type}}")), "s"),
            Panel("Batch latency and size",
                  (q(f'histogram_quantile(0.99, sum by (le) (rate(alur_batch_seconds_bucket'
                     f'{{service="{SERVICE}"}}[{RATE}])))', "p99 seconds"),
                   q(f'sum(rate(alur_batch_size_messages_sum{{service="{SERVICE}"}}[{RATE}])) / '
                     f'sum(rate(alur_batch_size_messages_count{{service="{SERVICE}"}}[{RATE}]))',
                     "mean messages per batch")), "short"),
            Panel("Consumer lag, by topic and partition",
                  (q(f'sum by (topic, partition) (alur_consumer_lag_messages'
                     f'{{service="{SERVICE}"}})', "{{topic}}/{{partition}}"),), "short"),
            Panel("Retries, stragglers, failed batches and dead letters per second",
                  (q(f'sum(rate(alur_retries_total{{service="{SERVICE}"}}[{RATE}]))', "retries"),
                   q(f'sum(rate(alur_stragglers_total{{service="{SERVICE}"}}[{RATE}]))',
                     "stragglers (slow partner)"),
                   q(f'sum(rate(alur_batch_failures_total{{service="{SERVICE}"}}[{RATE}]))',
                     "failed batches"),
                   q(f'sum(rate(alur_dead_letters_total{{service="{SERVICE}"}}[{RATE}]))',
                     "dead letters")), "ops"),
            Panel("Replicas: up, partitions assigned",
                  (q(f'up{{alur_service="{SERVICE}"}}', "up {{instance}}"),
                   q(f'alur_assigned_partitions{{service="{SERVICE}"}}',
                     "partitions {{instance}}")), "short"),
        )),
        ("Outbox relay", (
            Panel("Produced per second, by type",
                  (q(f'sum by (type) (rate(alur_events_produced_total{{service="{SERVICE}"}}'
                     f'[{RATE}]))', "{{type}}"),), "ops"),
            Panel("Outbox backlog and oldest row",
                  (q(f'max(alur_outbox_backlog_rows{{service="{SERVICE}"}})', "rows waiting"),
                   q(f'max(alur_outbox_oldest_age_seconds{{service="{SERVICE}"}})',
                     "oldest, seconds")), "short"),
            Panel("Relay leader and failures",
                  (q(f'sum(alur_relay_leader{{service="{SERVICE}"}})', "leaders (should be 1)"),
                   q(f'sum(rate(alur_relay_failures_total{{service="{SERVICE}"}}[{RATE}]))',
                     "failures per second")), "short"),
        )),
    ),
    variables=({
        "name": "service", "label": "Service", "type": "query", "datasource": DATASOURCE,
        "query": {"query": "label_values(alur_events_consumed_total, service)",
                  "refId": "service"},
        "definition": "label_values(alur_events_consumed_total, service)",
        "refresh": 2, "current": {"text": "orders", "value": "orders"}, "sort": 1,
    },),
)

FUNNEL = Dashboard(
    "alur-funnel", "Alur / Order funnel",
    "Orders through the sales flow: how many reach each state, how long each stage takes, "
    "and what goes wrong.",
    (
        ("Funnel", (
            Panel("Orders entering each state (dashboard range)",
                  (q("sum by (state) (increase(alur_order_transitions_total[$__range]))",
                     "{{state}}"),), "short", "bargauge"),
            Panel("Orders entering each state per second",
                  (q(f"sum by (state) (rate(alur_order_transitions_total[{RATE}]))",
                     "{{state}}"),), "ops"),
            Panel("Orders placed per second, by channel",
                  (q(f'sum by (channel) (rate(alur_order_transitions_total{{state="placed"}}'
                     f'[{RATE}]))', "{{channel}}"),), "ops"),
            Panel("Stuck orders", (q("max(alur_orders_stuck)", "stuck"),), "short"),
        )),
        ("Time in stage", (
            Panel("Time in the previous stage before entering each stage, p50",
                  (q(f"histogram_quantile(0.5, sum by (stage, le) "
                     f"(rate(alur_order_stage_seconds_bucket[{RATE}])))", "{{stage}}"),), "s"),
            Panel("Time in the previous stage before entering each stage, p99",
                  (q(f"histogram_quantile(0.99, sum by (stage, le) "
                     f"(rate(alur_order_stage_seconds_bucket[{RATE}])))", "{{stage}}"),), "s"),
            Panel("Time from placement to each stage, p99",
                  (q(f"histogram_quantile(0.99, sum by (stage, le) "
                     f"(rate(alur_order_since_placed_seconds_bucket[{RATE}])))", "{{stage}}"),),
                  "s"),
            Panel("Orders with a shipment within 1 s of placement (SLO: 99%)",
                  (q("1 - alur_shipment_slo_misses:ratio_rate5m", "within 1 s"),),
                  "percentunit"),
        )),
        ("What went wrong", (
            Panel("Compensations per second, by type",
                  (q(f"sum by (type) (rate(alur_compensations_total[{RATE}]))", "{{type}}"),),
                  "ops"),
            Panel("Payment declines per second, by reason",
                  (q(f"sum by (reason) (rate(alur_payment_declines_total[{RATE}]))",
                     "{{reason}}"),), "ops"),
            Panel("Carrier webhook reports per second, by carrier and answer",
                  (q(f"sum by (carrier, outcome) (rate(alur_carrier_reports_total[{RATE}]))",
                     "{{carrier}} {{outcome}}"),), "ops"),
            Panel("Notification deliveries per second, by channel and outcome",
                  (q(f"sum by (channel, outcome) "
                     f"(rate(alur_notification_deliveries_total[{RATE}]))",
                     "{{channel}} {{outcome}}"),), "ops"),
        )),
    ),
)

DASHBOARDS = (OVERVIEW, PER_SERVICE, FUNNEL)


def to_json(board: Dashboard) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    next_id = 1
    for row_title, row in board.rows:
        panels.append({"id": next_id, "type": "row", "title": row_title, "collapsed": False,
                       "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []})
        next_id += 1
        y += 1
        x = 0
        height = 4 if all(p.kind == "stat" for p in row) else 8
        for panel in row:
            if x + panel.width > 24:
                x, y = 0, y + height
            panels.append({
                "id": next_id, "type": panel.kind, "title": panel.title,
                "description": panel.description, "datasource": DATASOURCE,
                "gridPos": {"x": x, "y": y, "w": panel.width, "h": height},
                "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}}
                if panel.kind == "timeseries" else {},
                "targets": [{"refId": chr(ord("A") + i), "datasource": DATASOURCE,
                             "expr": query.expr, "legendFormat": query.legend or "__auto"}
                            for i, query in enumerate(panel.queries)],
            })
            next_id += 1
            x += panel.width
        y += height
    return {
        "uid": board.uid, "title": board.title, "description": board.description,
        "tags": ["alur"], "timezone": "utc", "editable": True, "schemaVersion": 39,
        "version": 1, "refresh": "10s", "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": list(board.variables)}, "annotations": {"list": []},
        "panels": panels,
    }


def write_dashboards() -> list[Path]:
    out = DEPLOY / "dashboards"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for board in DASHBOARDS:
        path = out / f"{board.uid}.json"
        path.write_text(json.dumps(to_json(board), indent=2) + "\n")
        paths.append(path)
    return paths


def concrete(expr: str, *, service: str, rate: str = "30s", range_: str = "10m") -> str:
    """A panel's query with Grafana's variables replaced, for running it against Prometheus."""
    expr = expr.replace("$__rate_interval", rate).replace("$__range", range_)
    expr = expr.replace("$service", service)
    if re.search(r"\$\w+", expr):
        raise ValueError(f"unresolved variable in {expr!r}")
    return expr
