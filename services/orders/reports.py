"""The sales report over the projection (migrations/100_sales.sql): GMV, its tax and the tax
given back (refunds of returned and cancelled orders), and order counts by day, shop, channel
and payment method; top products; the funnel with its rates and the average time to delivery;
review ratings. Rendered as a table, CSV, JSON, or a self-contained HTML page with SVG bar
charts for people who would rather look than read.

JSON and CSV, which machines read, give amounts in minor units with their currency; the table
and the page, which people read, write them in a locale (Rp150.000, ¥1,500, 19,99 €).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import asyncpg

from alur.runtime.slice import Slice
from schemas.money import format_money, to_major
from services.orders.sales import SCHEMA

REPORT_QUERIES: dict[str, str] = {
    "by_day": """
        SELECT date_trunc('day', placed_at)::date::text AS day, shop_id, channel, payment_method,
               currency, count(*) AS orders,
               count(*) FILTER (WHERE paid_at IS NOT NULL) AS paid_orders,
               coalesce(sum(total_amount) FILTER (WHERE paid_at IS NOT NULL), 0) AS gmv,
               coalesce(sum(tax_amount) FILTER (WHERE paid_at IS NOT NULL), 0) AS tax,
               coalesce(sum(tax_amount) FILTER (WHERE paid_at IS NOT NULL AND (
                   returned_at IS NOT NULL OR cancelled_at IS NOT NULL)), 0) AS tax_refunded
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


AMOUNTS = frozenset({"gmv", "tax", "tax_refunded", "revenue"})  # minor units of `currency`


def _shown(row: dict[str, Any], key: str, locale: str | None) -> str:
    """A cell as a person reads it: amounts in the locale's way with their currency."""
    value = row[key]
    if value is None:
        return ""
    if key in AMOUNTS and row.get("currency"):
        return format_money(int(value), row["currency"], locale)
    return str(value)


def render_report(data: dict[str, list[dict[str, Any]]], fmt: str,
                  out: Callable[[str], None] = print, locale: str | None = None) -> None:
    if fmt == "json":
        out(json.dumps(data, indent=2))
        return
    if fmt == "html":
        out(render_html(data, locale=locale))
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
        cells = [{k: _shown(r, k, locale) for k in r} for r in rows]
        widths = {k: max(len(k), *(len(c[k]) for c in cells)) for k in rows[0]}
        out(("  " + "  ".join(k.ljust(w) for k, w in widths.items())).rstrip())
        for c in cells:
            out(("  " + "  ".join(c[k].ljust(w) for k, w in widths.items())).rstrip())


def _bars(title: str, items: list[tuple[str, float]], unit: str = "",
          show: Callable[[str, float], str] | None = None) -> str:
    """A horizontal SVG bar chart, scaled to the largest value; `show` writes a bar's value
    (by default as a count, or with two decimals, and `unit`)."""
    if not items:
        return f"<h2>{html.escape(title)}</h2><p>(nothing yet)</p>"
    top = max(v for _, v in items) or 1.0
    row, label_w, bar_w = 26, 180, 420
    parts = [f'<svg width="{label_w + bar_w + 140}" height="{row * len(items) + 10}" '
             f'role="img" aria-label="{html.escape(title)}">']
    for i, (label, value) in enumerate(items):
        y = 5 + i * row
        width = max(1.0, bar_w * value / top)
        text = html.escape(show(label, value) if show else
                           f"{value:,.0f}{unit}" if value.is_integer() else
                           f"{value:,.2f}{unit}")
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end">{html.escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{width:.1f}" height="{row - 8}" '
            f'fill="#3b82f6"><title>{html.escape(label)}: {text}</title></rect>'
            f'<text x="{label_w + width + 6:.1f}" y="{y + 17}">{text}</text>')
    parts.append("</svg>")
    return f"<h2>{html.escape(title)}</h2>" + "".join(parts)


def render_html(data: dict[str, list[dict[str, Any]]], title: str = "Alur sales",
                locale: str | None = None) -> str:
    """The page. Amounts of different currencies are never added up: with more than one, each
    bar's label names its currency."""
    currencies = {r["currency"] for r in data["by_day"] if r["currency"]}
    several = len(currencies) > 1
    minor: dict[str, tuple[int, str]] = {}  # "chart\nlabel" -> (minor units, currency)

    def add(chart: str, key: str, currency: str, amount: int) -> None:
        label = f"{key} {currency}" if several else key
        total, _ = minor.get(f"{chart}\n{label}", (0, currency))
        minor[f"{chart}\n{label}"] = (total + amount, currency)

    for r in data["by_day"]:
        if r["currency"]:
            add("day", r["day"], r["currency"], r["gmv"])
            add("shop", r["shop_id"], r["currency"], r["gmv"])
    for r in data["top_products"]:
        add("sku", r["sku"], r["currency"], r["revenue"])

    def chart(name: str) -> list[tuple[str, float]]:
        return [(key.split("\n", 1)[1], float(to_major(amount, currency)))
                for key, (amount, currency) in minor.items() if key.startswith(name + "\n")]

    def shows(name: str) -> Callable[[str, float], str]:
        return lambda label, _: format_money(*minor[f"{name}\n{label}"], locale)

    by_day, by_shop, products = chart("day"), chart("shop"), chart("sku")

    [funnel] = data["funnel"]
    stages = [(k, float(funnel[k] or 0)) for k in
              ("placed", "paid", "delivered", "completed", "cancelled", "returned")]
    [reviews] = data["reviews"]
    stars = [(f"{n} star{'s' if n > 1 else ''}", float(reviews[key])) for n, key in
             enumerate(("one_star", "two_stars", "three_stars", "four_stars", "five_stars"), 1)]
    facts = (f"{funnel['placed']} orders placed; cancellation rate "
             f"{funnel['cancellation_rate']}; return rate {funnel['return_rate']}; average "
             f"time to delivery {funnel['avg_seconds_to_delivery']} s. GMV counts paid "
             f"orders{_taxes(data['by_day'], locale)}.")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font:14px system-ui,sans-serif;"
        "margin:2em;color:#111}h2{margin-top:1.6em}svg text{font-size:13px}</style></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(facts)}</p>"
        + _bars("GMV by day", sorted(by_day), show=shows("day"))
        + _bars("GMV by shop", sorted(by_shop, key=lambda kv: -kv[1]), show=shows("shop"))
        + _bars("Order funnel", stages)
        + _bars("Top products by revenue", products, show=shows("sku"))
        + _bars(f"Review ratings ({reviews['reviews']} reviews, average "
                f"{reviews['average_rating']})", stars)
        + "</body></html>")


def _taxes(by_day: list[dict[str, Any]], locale: str | None) -> str:
    """'; tax in it Rp24.676, given back Rp0' per currency, or '' without tax."""
    taxed: dict[str, tuple[int, int]] = {}
    for r in by_day:
        if r["currency"] and (r.get("tax") or r.get("tax_refunded")):
            tax, back = taxed.get(r["currency"], (0, 0))
            taxed[r["currency"]] = (tax + r["tax"], back + r["tax_refunded"])
    return "".join(f"; tax in it {format_money(tax, c, locale)}, given back "
                   f"{format_money(back, c, locale)}" for c, (tax, back) in sorted(taxed.items()))
