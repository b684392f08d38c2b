"""Customer retention over the customers projection (migrations/106_customers.sql) and the
sales projection: `alur report customers`, `GET /v1/reports/customers`.

A purchase is an order of a known customer that was paid (a till sale is paid when it is
made); it is dated when it was placed (a till sale: when the till sold it). Anonymous till
sales belong to no customer and count only in the funnel. A customer is new in the period of
their first purchase and returning in any later period they buy in. Cohorts group customers
by the month of their first purchase: retention in month k is the share of the cohort that
bought in the k-th month after it. Loyalty points come from each customer's ledger, folded as
the API folds it (services/orders/customers.py), expiry included.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from alur.runtime.slice import Slice
from services.orders.customers import ledger
from services.orders.reports import _bars, _plain

PERIODS = ("day", "week", "month")
PURCHASES = """
    WITH p AS (
        SELECT c.customer_id, c.order_id, c.channel, c.placed_at
          FROM customer_orders c JOIN sales_orders s USING (order_id)
         WHERE s.paid_at IS NOT NULL AND ($1::text IS NULL OR c.shop_id = $1)),
    f AS (SELECT customer_id, min(placed_at) AS first_at FROM p GROUP BY customer_id),
    w AS (SELECT p.*, f.first_at FROM p JOIN f USING (customer_id)
           WHERE ($2::timestamptz IS NULL OR p.placed_at >= $2)
             AND ($3::timestamptz IS NULL OR p.placed_at < $3))
"""
QUERIES: dict[str, str] = {
    "summary": PURCHASES + """
        SELECT count(*) AS customers, coalesce(sum(n), 0) AS purchases,
               count(*) FILTER (WHERE n > 1) AS repeat_customers,
               round(count(*) FILTER (WHERE n > 1)::numeric / nullif(count(*), 0), 4)
                   AS repeat_purchase_rate,
               count(*) FILTER (WHERE channels > 1) AS omnichannel_customers,
               round(count(*) FILTER (WHERE channels > 1)::numeric / nullif(count(*), 0), 4)
                   AS omnichannel_share,
               (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY days) FROM (
                    SELECT extract(epoch FROM placed_at - lag(placed_at) OVER (
                               PARTITION BY customer_id ORDER BY placed_at, order_id)) / 86400
                           AS days FROM w) g WHERE days IS NOT NULL)
                   AS median_days_between_orders
          FROM (SELECT customer_id, count(*) AS n, count(DISTINCT channel) AS channels
                  FROM w GROUP BY customer_id) x""",
    "new_vs_returning": PURCHASES + """
        SELECT date_trunc($4, placed_at)::date::text AS period,
               count(DISTINCT customer_id) FILTER (
                   WHERE date_trunc($4, first_at) = date_trunc($4, placed_at)) AS new,
               count(DISTINCT customer_id) FILTER (
                   WHERE date_trunc($4, first_at) < date_trunc($4, placed_at)) AS returning,
               count(*) AS purchases
          FROM w GROUP BY 1 ORDER BY 1""",
    "cohorts": PURCHASES + """
        SELECT date_trunc('month', first_at)::date::text AS cohort,
               (extract(year FROM age(date_trunc('month', placed_at),
                                      date_trunc('month', first_at))) * 12
                + extract(month FROM age(date_trunc('month', placed_at),
                                         date_trunc('month', first_at))))::int AS month,
               count(DISTINCT customer_id) AS customers,
               round(count(DISTINCT customer_id)::numeric / max(size), 4) AS retention
          FROM w JOIN (SELECT date_trunc('month', first_at) AS c, count(*) AS size FROM f
                        GROUP BY 1) s ON s.c = date_trunc('month', first_at)
         GROUP BY 1, 2 ORDER BY 1, 2""",
    "channel_mix": PURCHASES + """
        SELECT channels, count(*) AS customers FROM (
            SELECT customer_id, string_agg(DISTINCT channel, '+' ORDER BY channel) AS channels
              FROM w GROUP BY customer_id) x
         GROUP BY 1 ORDER BY 2 DESC, 1""",
    "funnel_by_channel": """
        SELECT channel, count(*) AS placed,
               count(*) FILTER (WHERE paid_at IS NOT NULL) AS paid,
               count(*) FILTER (WHERE delivered_at IS NOT NULL) AS delivered,
               count(*) FILTER (WHERE completed_at IS NOT NULL) AS completed,
               count(*) FILTER (WHERE cancelled_at IS NOT NULL) AS cancelled,
               count(*) FILTER (WHERE returned_at IS NOT NULL) AS returned
          FROM sales_orders
         WHERE placed_at IS NOT NULL AND ($1::text IS NULL OR shop_id = $1)
           AND ($2::timestamptz IS NULL OR placed_at >= $2)
           AND ($3::timestamptz IS NULL OR placed_at < $3)
         GROUP BY 1 ORDER BY 1""",
}


async def customer_report(conn: asyncpg.Connection, part: Slice, *, period: str = "month",
                          now: datetime, expiry: timedelta) -> dict[str, list[dict[str, Any]]]:
    """The retention report of the slice's shop (all shops when None) and time window, read
    on `conn` (whose search_path is the orders schema)."""
    if period not in PERIODS:
        raise ValueError(f"the period is one of {', '.join(PERIODS)}, not {period!r}")
    if part.orders:
        raise ValueError("the customers report is by shop and time, not by order")
    args: list[Any] = [part.shop, part.since, part.until]
    out: dict[str, list[dict[str, Any]]] = {}
    for name, query in QUERIES.items():
        rows = await conn.fetch(query, *args, *([period] if "$4" in query else []))
        out[name] = [{k: _plain(v) for k, v in dict(r).items()} for r in rows]
    entries: dict[str, list[tuple[str, str, int, datetime]]] = {}
    for r in await conn.fetch(
            "SELECT l.customer_id, l.kind, l.order_id, l.points, l.at FROM loyalty_ledger l"
            " WHERE $1::text IS NULL OR l.customer_id IN (SELECT customer_id FROM"
            " customer_orders WHERE shop_id = $1)", part.shop):
        entries.setdefault(r["customer_id"], []).append(
            (r["kind"], r["order_id"], r["points"], r["at"]))
    totals = {"issued": 0, "reversed": 0, "redeemed": 0, "held": 0, "expired": 0,
              "outstanding": 0}
    for rows in entries.values():
        book = ledger(rows, now, expiry)
        for key, value in (("issued", book.issued), ("reversed", book.reversed),
                           ("redeemed", book.redeemed), ("held", book.held),
                           ("expired", book.expired), ("outstanding", book.balance)):
            totals[key] += value
    out["loyalty_points"] = [totals]
    return out


def render_html(data: dict[str, list[dict[str, Any]]], title: str = "Alur customers") -> str:
    """A self-contained page of bar charts (reports.render_html's style)."""
    import html

    [summary] = data["summary"]
    facts = (f"{summary['customers']} customers, {summary['purchases']} purchases; repeat "
             f"purchase rate {summary['repeat_purchase_rate']}; omnichannel share "
             f"{summary['omnichannel_share']}; median days between orders "
             f"{summary['median_days_between_orders']}.")
    cohorts = [(f"{r['cohort']} +{r['month']}m", float(r["retention"] or 0) * 100)
               for r in data["cohorts"]]
    periods = data["new_vs_returning"]
    [points] = data["loyalty_points"]
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font:14px system-ui,sans-serif;"
        "margin:2em;color:#111}h2{margin-top:1.6em}svg text{font-size:13px}</style></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(facts)}</p>"
        + _bars("New customers by period", [(r["period"], float(r["new"])) for r in periods])
        + _bars("Returning customers by period",
                [(r["period"], float(r["returning"])) for r in periods])
        + _bars("Cohort retention (% of the cohort buying in month k)", cohorts, " %")
        + _bars("Channel mix (customers)",
                [(r["channels"], float(r["customers"])) for r in data["channel_mix"]])
        + _bars("Completed orders by channel",
                [(r["channel"], float(r["completed"])) for r in data["funnel_by_channel"]])
        + _bars("Loyalty points", [(k, float(v)) for k, v in points.items()])
        + "</body></html>")


def render(data: dict[str, list[dict[str, Any]]], fmt: str,
           out: Callable[[str], None] = print) -> None:
    from services.orders.reports import render_report

    if fmt == "html":
        out(render_html(data))
    else:
        render_report(data, fmt, out)
