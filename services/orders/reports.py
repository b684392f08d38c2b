"""The sales report over the projection (migrations/100_sales.sql): GMV and order counts by day,
shop, channel and payment method; top products; the funnel with its rates and the average time
to delivery; review ratings. Rendered as a table, CSV, JSON, or a self-contained HTML page
with SVG bar charts for people who would rather look than read.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import asyncpg

from alur.tools.slice import Slice
from services.orders.sales import SCHEMA

REPORT_QUERIES: dict[str, str] = {
    "by_day": """
        SELECT date_trunc('day', placed_at)::date::text AS day, shop_id, channel, payment_method,
               currency, count(*) AS orders,
               count(*) FILTER (WHERE paid_at IS NOT NULL) AS paid_orders,
               coalesce(sum(total_amount) FILTER (WHERE paid_at IS NOT NULL), 0) AS gmv
        FROM sales_orders WHERE placed_at IS NOT NULL AND {where}
        GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5""",
    "top_products": """
        SELECT l.sku, sum(l.quantity) AS units, sum(l.amount) AS revenue, o.currency
        FROM sales_lines l JOIN sales_orders o USING (order_id)
        WHERE o.paid_at IS NOT NULL AND {where}
        GROUP BY l.sku, o.currency ORDER BY revenue DESC, l.sku LIMIT 10""",
    "funnel": """
        SELECT count(*) FILTER (WHERE placed_at IS NOT NULL) AS placed,
               count(*) FILTER (WHERE paid_at IS NOT NULL) AS paid,
               count(*) FILTER (WHERE delivered_at IS NOT NULL) AS delivered,
               count(*) FILTER (WHERE completed_at IS NOT NULL) AS completed,
               count(*) FILTER (WHERE cancelled_at IS NOT NULL) AS cancelled,
               count(*) FILTER (WHERE returned_at IS NOT NULL) AS returned,
               avg(extract(epoch FROM delivered_at - placed_at))
                   FILTER (WHERE delivered_at IS NOT NULL) AS avg_seconds_to_delivery
        FROM sales_orders WHERE placed_at IS NOT NULL AND {where}""",
    "reviews": """
        SELECT count(rating) AS reviews, round(avg(rating), 2) AS average_rating,
               count(*) FILTER (WHERE rating = 1) AS one_star,
               count(*) FILTER (WHERE rating = 2) AS two_stars,
               count(*) FILTER (WHERE rating = 3) AS three_stars,
               count(*) FILTER (WHERE rating = 4) AS four_stars,
               count(*) FILTER (WHERE rating = 5) AS five_stars
        FROM sales_orders WHERE placed_at IS NOT NULL AND {where}""",
}


async def report(dsn: str, part: Slice) -> dict[str, list[dict[str, Any]]]:
    conn = await asyncpg.connect(dsn, server_settings={"search_path": SCHEMA})
    try:
        return await report_on(conn, part)
    finally:
        await conn.close()


async def report_on(conn: asyncpg.Connection, part: Slice) -> dict[str, list[dict[str, Any]]]:
    """The report over the slice, read on `conn` (whose search_path is the orders schema)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, query in REPORT_QUERIES.items():
        prefix = "o." if name == "top_products" else ""
        where, args = part.sql(placed=f"{prefix}placed_at", shop=f"{prefix}shop_id",
                               order=f"{prefix}order_id")
        rows = await conn.fetch(query.format(where=where), *args)
        out[name] = [{k: _plain(v) for k, v in dict(r).items()} for r in rows]
    funnel = out["funnel"][0]
    placed = funnel["placed"] or 0
    for rate, count in (("cancellation_rate", "cancelled"), ("return_rate", "returned"),
                        ("paid_rate", "paid"), ("delivered_rate", "delivered")):
        funnel[rate] = round(funnel[count] / placed, 4) if placed else None
    return out


def _plain(value: Any) -> Any:
    """JSON-ready: sums of minor units stay integers, averages get three decimals."""
    if value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return round(float(value), 3)


def render_report(data: dict[str, list[dict[str, Any]]], fmt: str,
                  out: Callable[[str], None] = print) -> None:
    if fmt == "json":
        out(json.dumps(data, indent=2))
        return
    if fmt == "html":
        out(render_html(data))
        return
    for name, rows in data.items():
        if fmt == "csv":
            out(f"# {name}")
            if rows:
                out(",".join(rows[0]))
                for r in rows:
                    out(",".join("" if v is None else str(v) for v in r.values()))
            continue
        out(f"\n{name.replace('_', ' ')}")
        if not rows:
            out("  (nothing)")
            continue
        widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in rows[0]}
        out("  " + "  ".join(k.ljust(w) for k, w in widths.items()))
        for r in rows:
            out("  " + "  ".join(str("" if r[k] is None else r[k]).ljust(w)
                                 for k, w in widths.items()))


def _bars(title: str, items: list[tuple[str, float]], unit: str = "") -> str:
    """A horizontal SVG bar chart, scaled to the largest value."""
    if not items:
        return f"<h2>{html.escape(title)}</h2><p>(nothing yet)</p>"
    top = max(v for _, v in items) or 1.0
    row, label_w, bar_w = 26, 180, 420
    parts = [f'<svg width="{label_w + bar_w + 140}" height="{row * len(items) + 10}" '
             f'role="img" aria-label="{html.escape(title)}">']
    for i, (label, value) in enumerate(items):
        y = 5 + i * row
        width = max(1.0, bar_w * value / top)
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end">{html.escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{width:.1f}" height="{row - 8}" '
            f'fill="#3b82f6"><title>{html.escape(label)}: {value:,.2f}{unit}</title></rect>'
            f'<text x="{label_w + width + 6:.1f}" y="{y + 17}">{value:,.2f}{unit}</text>')
    parts.append("</svg>")
    return f"<h2>{html.escape(title)}</h2>" + "".join(parts)


def render_html(data: dict[str, list[dict[str, Any]]], title: str = "Alur sales") -> str:
    by_day: dict[str, float] = {}
    by_shop: dict[str, float] = {}
    currencies = {r["currency"] for r in data["by_day"] if r["currency"]}
    for r in data["by_day"]:
        by_day[r["day"]] = by_day.get(r["day"], 0) + r["gmv"] / 100
        by_shop[r["shop_id"]] = by_shop.get(r["shop_id"], 0) + r["gmv"] / 100
    unit = f" {currencies.pop()}" if len(currencies) == 1 else ""
    [funnel] = data["funnel"]
    stages = [(k, float(funnel[k] or 0)) for k in
              ("placed", "paid", "delivered", "completed", "cancelled", "returned")]
    products = [(r["sku"], r["revenue"] / 100) for r in data["top_products"]]
    [reviews] = data["reviews"]
    stars = [(f"{n} star{'s' if n > 1 else ''}", float(reviews[key])) for n, key in
             enumerate(("one_star", "two_stars", "three_stars", "four_stars", "five_stars"), 1)]
    facts = (f"{funnel['placed']} orders placed; cancellation rate "
             f"{funnel['cancellation_rate']}; return rate {funnel['return_rate']}; average "
             f"time to delivery {funnel['avg_seconds_to_delivery']} s. Amounts in major units"
             f"{unit}; GMV counts paid orders.")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font:14px system-ui,sans-serif;"
        "margin:2em;color:#111}h2{margin-top:1.6em}svg text{font-size:13px}</style></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(facts)}</p>"
        + _bars("GMV by day", sorted(by_day.items()), unit)
        + _bars("GMV by shop", sorted(by_shop.items(), key=lambda kv: -kv[1]), unit)
        + _bars("Order funnel", stages)
        + _bars("Top products by revenue", products, unit)
        + _bars(f"Review ratings ({reviews['reviews']} reviews, average "
                f"{reviews['average_rating']})", stars)
        + "</body></html>")
