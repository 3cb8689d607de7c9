"""What every report shows, read once from the store: the run, its counts, exceptions, repairs, trend.

Large parts are polars frames (columnar, compact): the renderers stream them in slices, so a run
with a million exceptions does not become a million Python dicts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import duckdb
import polars as pl

from recon.errors import NotFound
from recon.store import memory_capped

# Both sides of every open exception, in the order the exception sheets show them.
EXCEPTION_COLUMNS = (
    "id", "code", "channel", "priority", "order_no", "shop_amount", "channel_amount", "difference", "currency",
    "shop_status", "channel_txn_id", "shop_channel_txn_id", "created_at", "occurred_at", "buyer_contact", "goods_title",
    "first_seen", "age_days", "auto_repairable", "suggested_action", "detail", "status", "business_date",
)
MONEY_COLUMNS = ("shop_amount", "channel_amount", "difference", "amount", "fee", "expected_fee", "diff")
TREND_RUNS = 30
# DuckDB's memory while a report is read: its rows are fetched into this process, and the blocks a run left cached
# up to the store's limit would sit beside them (a backlog of a million exceptions went past 2 GB so).
REPORT_MEMORY_LIMIT = "256MB"

_EXCEPTIONS_SQL = """
WITH open_exceptions AS (
    SELECT * FROM exceptions e
    WHERE e.status = 'open' AND list_contains($channels, e.channel) AND e.business_date <= $day
),
-- The shop's side of only their orders, looked up by number first: the shop's millions of orders joined straight
-- to the exceptions' wide rows spilled at the report's memory limit (a backlog of a million: 6.9 s, so 3.2 s).
shop AS (
    SELECT order_no, created_at, buyer_contact, title FROM shop_orders
    WHERE order_no IN (SELECT order_no FROM open_exceptions)
)
SELECT e.id, e.code, e.channel, e.priority, e.order_no, e.shop_amount, e.channel_amount,
       coalesce(e.channel_amount, 0) - coalesce(e.shop_amount, 0) AS difference, e.currency,
       e.shop_status, e.channel_txn_id, e.shop_channel_txn_id, s.created_at, e.occurred_at,
       s.buyer_contact, s.title AS goods_title, e.first_seen, date_diff('day', e.business_date, $day::DATE) AS age_days,
       e.auto_repairable, e.suggested_action, e.detail, e.status, e.business_date, e.key
FROM open_exceptions e LEFT JOIN shop s ON s.order_no = e.order_no
"""
# The order the sheets list them in (one open exception per channel, key and code). Sorted by polars once fetched:
# DuckDB's sort of a backlog of a million wide rows ran out of its 1 GB memory limit.
EXCEPTION_ORDER = ("priority", "channel", "code", "key")
_TREND_SQL = """
WITH recent AS (
    SELECT run_id, business_date FROM runs WHERE status = 'succeeded' AND run_id <= $run
    ORDER BY run_id DESC LIMIT $n
)
SELECT r.run_id, r.business_date, x.code, coalesce(sum(x.results), 0)::BIGINT AS count
FROM recent r LEFT JOIN run_counts x USING (run_id)
GROUP BY ALL ORDER BY r.run_id, x.code
"""


@dataclass(frozen=True)
class ReportData:
    run_id: int
    business_date: date
    channels: list[str]
    started_at: datetime
    finished_at: datetime | None
    zone: str
    counts: list[dict[str, Any]]  # per channel × code: channel, code, count, amount, difference
    exceptions: pl.DataFrame      # open exceptions of the run's channels, EXCEPTION_COLUMNS
    currencies: dict[tuple[str, str], list[str]]  # (channel, code) → the currencies of its results
    results: pl.DataFrame | None  # every result row of the run, loaded only for the exports (csv, parquet)
    repairs: pl.DataFrame         # the repair journal of the run's channels
    trend: pl.DataFrame           # last TREND_RUNS runs: run_id, business_date, code, count (long form)

    @property
    def match_rate(self) -> Decimal | None:
        return _rate([r["code"] for r in self.counts], [r["count"] for r in self.counts])

    @property
    def open_by_priority(self) -> dict[int, int]:
        if self.exceptions.is_empty():
            return {}
        grouped = self.exceptions.group_by("priority").len().sort("priority")
        return {int(p): int(n) for p, n in grouped.iter_rows()}

    def trend_rates(self) -> list[tuple[date, int, Decimal | None]]:
        """(business date, run id, match rate) of each recent run, oldest first."""
        out = []
        for (run_id, day), group in self.trend.group_by(["run_id", "business_date"], maintain_order=True):
            codes = [c for c in group["code"].to_list() if c is not None]
            counts = group.filter(pl.col("code").is_not_null())["count"].to_list()
            out.append((day, int(run_id), _rate(codes, counts)))
        return out


def _rate(codes: list[str], counts: list[int]) -> Decimal | None:
    """Matched share of the run's results; ``unpaid`` orders are not reconciliation subjects."""
    total = sum(n for n, c in zip(counts, codes, strict=True) if c != "unpaid")
    matched = sum(n for n, c in zip(counts, codes, strict=True) if c == "matched")
    return (Decimal(matched) / Decimal(total)).quantize(Decimal("0.0001")) if total else None


# Formats that list every result row of the run; the others need the counts and the exceptions only.
RESULT_FORMATS = ("csv", "parquet")


def needs_results(formats: list[str]) -> bool:
    return any(f in RESULT_FORMATS for f in formats)


def load_report(con: duckdb.DuckDBPyConnection, day: date | None, run_id: int | None, zone: str,
                with_results: bool = True) -> ReportData:
    """The newest successful run of ``day`` (or the run ``run_id``).

    ``with_results=False`` leaves out the run's result rows (one per order: ten million on a large day),
    which only the csv and parquet exports list.
    """
    with memory_capped(con, REPORT_MEMORY_LIMIT):
        data = _load_report(con, day, run_id, zone)
    if not with_results:
        return data
    # Sorted by DuckDB within the store's own limit: a run's every result, ten million rows on a large day.
    results = con.sql("SELECT * EXCLUDE (txn_ids) FROM results WHERE run_id = $run ORDER BY channel, unit_key",
                      params={"run": data.run_id}).pl()
    return dataclasses.replace(data, results=results)


def _load_report(con: duckdb.DuckDBPyConnection, day: date | None, run_id: int | None, zone: str) -> ReportData:
    """The report of the run without its result rows."""
    where, params = ("run_id = ?", [run_id]) if run_id is not None else ("business_date = ?", [day])
    run = con.execute(
        f"SELECT run_id, business_date, channels, started_at, finished_at FROM runs "
        f"WHERE {where} AND status = 'succeeded' ORDER BY run_id DESC LIMIT 1",
        params,
    ).fetchone()
    if run is None:
        raise NotFound(f"no finished run for {run_id if run_id is not None else day}: run `recon run` first")
    rid, business_date, channels = int(run[0]), run[1], list(run[2])
    counts = con.execute(
        """
        SELECT channel, code, sum(results) AS count, sum(amount) AS amount, sum(difference) AS difference
        FROM run_counts WHERE run_id = ? GROUP BY channel, code ORDER BY channel, code
        """,
        [rid],
    )
    names = [d[0] for d in counts.description]
    count_rows = [dict(zip(names, row, strict=True)) for row in counts.fetchall()]
    currencies: dict[tuple[str, str], list[str]] = {}
    for channel, code, currency in con.execute(
        "SELECT DISTINCT channel, code, currency FROM run_counts "
        "WHERE run_id = ? AND currency IS NOT NULL ORDER BY channel, code, currency", [rid]
    ).fetchall():
        currencies.setdefault((channel, code), []).append(currency)
    scope = {"day": business_date, "channels": channels}
    return ReportData(
        run_id=rid, business_date=business_date, channels=channels, started_at=run[3], finished_at=run[4],
        zone=zone, counts=count_rows,
        exceptions=con.sql(_EXCEPTIONS_SQL, params=scope).pl().sort(EXCEPTION_ORDER).drop("key"),
        currencies=currencies,
        results=None,
        repairs=con.sql("SELECT * FROM repairs r WHERE EXISTS (SELECT 1 FROM exceptions e WHERE e.id = r.exception_id "
                        "AND list_contains($channels, e.channel)) ORDER BY repair_id", params={"channels": channels}).pl(),
        trend=con.sql(_TREND_SQL, params={"run": rid, "n": TREND_RUNS}).pl(),
    )
