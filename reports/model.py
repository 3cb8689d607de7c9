"""What every report shows, read once from the store: the run, its counts, its open exceptions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import duckdb

from recon.errors import NotFound

EXCEPTION_COLUMNS = ("id", "code", "channel", "order_no", "channel_txn_id", "shop_amount", "channel_amount",
                     "difference", "currency", "status", "priority", "business_date", "first_seen", "age_days",
                     "auto_repairable", "suggested_action", "detail")


@dataclass(frozen=True)
class ReportData:
    run_id: int
    business_date: date
    channels: list[str]
    started_at: datetime
    finished_at: datetime | None
    zone: str
    counts: list[dict[str, Any]]        # per channel × code: count, amount, difference
    exceptions: list[dict[str, Any]]    # open exceptions of the run's channels

    @property
    def match_rate(self) -> Decimal | None:
        total = sum(r["count"] for r in self.counts if r["code"] != "unpaid")
        matched = sum(r["count"] for r in self.counts if r["code"] == "matched")
        return (Decimal(matched) / Decimal(total)).quantize(Decimal("0.0001")) if total else None


def load_report(con: duckdb.DuckDBPyConnection, day: date | None, run_id: int | None, zone: str) -> ReportData:
    """The newest successful run of ``day`` (or the run ``run_id``)."""
    where, params = ("run_id = ?", [run_id]) if run_id is not None else ("business_date = ?", [day])
    run = con.execute(
        f"SELECT run_id, business_date, channels, started_at, finished_at FROM runs "
        f"WHERE {where} AND status = 'succeeded' ORDER BY run_id DESC LIMIT 1",
        params,
    ).fetchone()
    if run is None:
        raise NotFound(f"no finished run for {run_id if run_id is not None else day}: run `recon run` first")
    counts = con.execute(
        """
        SELECT channel, code, count(*) AS count,
               sum(CASE WHEN channel_amount <> 0 THEN channel_amount ELSE shop_amount END) AS amount,
               sum(diff) AS difference
        FROM results WHERE run_id = ? GROUP BY channel, code ORDER BY channel, code
        """,
        [run[0]],
    )
    count_rows = _dicts(counts)
    exceptions = _dicts(con.execute(
        """
        SELECT id, code, channel, order_no, channel_txn_id, shop_amount, channel_amount,
               coalesce(channel_amount, 0) - coalesce(shop_amount, 0) AS difference, currency, status, priority,
               business_date, first_seen, date_diff('day', business_date, ?::DATE) AS age_days, auto_repairable,
               suggested_action, detail
        FROM exceptions
        WHERE status = 'open' AND list_contains(?, channel) AND business_date <= ?
        ORDER BY priority, channel, code, key
        """,
        [run[1], run[2], run[1]],
    ))
    return ReportData(run_id=int(run[0]), business_date=run[1], channels=list(run[2]), started_at=run[3],
                      finished_at=run[4], zone=zone, counts=count_rows, exceptions=exceptions)


def _dicts(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
