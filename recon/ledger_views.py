"""Reading the exception ledger: filtered lists, counts and one exception with its evidence.

Shared by ``recon exceptions list/show`` and the web console, so both show the same rows in the
same order and name the same provenance for every channel row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import duckdb

from recon.errors import NotFound, UsageError
from recon.taxonomy import BY_CODE

STATUSES = ("open", "repaired", "resolved", "ignored")
PRIORITIES = (1, 2, 3, 4)

_COLUMNS = """
e.id, e.code, e.channel, e.order_no, e.channel_txn_id, e.shop_amount, e.channel_amount, e.currency, e.status,
e.priority, e.first_seen, e.last_seen, e.auto_repairable, e.detail, e.business_date,
coalesce(e.channel_amount, 0) - coalesce(e.shop_amount, 0) AS difference, e.key, e.suggested_action, e.closed_by,
e.last_seen_run
"""
# Open ones first, most urgent first: what a person should look at next.
DEFAULT_ORDER = "e.status <> 'open', e.priority, e.business_date, e.id"
# sort key (as a page or option names it) → column; every sort ends with the id so pages are stable.
SORTS = {
    "id": "e.id", "business_date": "e.business_date", "priority": "e.priority", "code": "e.code",
    "channel": "e.channel", "status": "e.status", "order_no": "e.order_no", "shop_amount": "e.shop_amount",
    "channel_amount": "e.channel_amount", "difference": "difference", "last_seen": "e.last_seen",
}


@dataclass(frozen=True)
class ExceptionFilter:
    """Which exceptions to show; None everywhere: all of them."""

    date_from: date | None = None
    date_to: date | None = None
    status: str | None = None
    code: str | None = None
    channel: str | None = None
    priority: int | None = None

    def check(self) -> ExceptionFilter:
        """The filter itself; a UsageError naming the first value that is not allowed."""
        if self.status is not None and self.status not in STATUSES:
            raise UsageError(f"status {self.status!r} (expected one of {', '.join(STATUSES)})")
        if self.code is not None and self.code not in BY_CODE:
            raise UsageError(f"code {self.code!r} is not a difference code")
        if self.priority is not None and self.priority not in PRIORITIES:
            raise UsageError(f"priority {self.priority} (expected 1 to 4)")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise UsageError(f"the date range starts ({self.date_from}) after it ends ({self.date_to})")
        return self

    def where(self) -> tuple[str, dict[str, Any]]:
        """A WHERE clause over ``exceptions e`` and its parameters (values are always bound, never spliced)."""
        sql = """
        ($date_from IS NULL OR e.business_date >= $date_from) AND ($date_to IS NULL OR e.business_date <= $date_to)
        AND ($status IS NULL OR e.status = $status) AND ($code IS NULL OR e.code = $code)
        AND ($channel IS NULL OR e.channel = $channel) AND ($priority IS NULL OR e.priority = $priority)
        """
        return sql, {"date_from": self.date_from, "date_to": self.date_to, "status": self.status, "code": self.code,
                     "channel": self.channel, "priority": self.priority}


def order_by(sort: str | None, descending: bool = False) -> str:
    """An ORDER BY list from a known sort key (anything else is refused, never put into SQL)."""
    if sort is None:
        return DEFAULT_ORDER
    if sort not in SORTS:
        raise UsageError(f"cannot sort by {sort!r} (expected one of {', '.join(SORTS)})")
    direction = "DESC" if descending else "ASC"
    return f"{SORTS[sort]} {direction} NULLS LAST, e.id {direction}"


def list_query(flt: ExceptionFilter, sort: str | None = None, descending: bool = False,
               limit: int | None = None, offset: int = 0) -> tuple[str, dict[str, Any]]:
    """The SELECT behind every exception list, for callers that stream it (exports)."""
    where, params = flt.where()
    sql = f"SELECT {_COLUMNS} FROM exceptions e WHERE {where} ORDER BY {order_by(sort, descending)}"
    if limit is not None:
        sql += " LIMIT $limit OFFSET $offset"
        params = {**params, "limit": limit, "offset": offset}
    return sql, params


def rows_of(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def list_exceptions(con: duckdb.DuckDBPyConnection, flt: ExceptionFilter, sort: str | None = None,
                    descending: bool = False, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
    sql, params = list_query(flt.check(), sort, descending, limit, offset)
    return rows_of(con.execute(sql, params))


def count_exceptions(con: duckdb.DuckDBPyConnection, flt: ExceptionFilter) -> int:
    where, params = flt.check().where()
    [(count,)] = con.execute(f"SELECT count(*) FROM exceptions e WHERE {where}", params).fetchall()
    return int(count)


def ledger_channels(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every channel the ledger has seen (a channel removed from the config keeps its history)."""
    return [r[0] for r in con.execute("SELECT DISTINCT channel FROM exceptions ORDER BY channel").fetchall()]


@dataclass(frozen=True)
class ExceptionDetail:
    exception: dict[str, Any]
    channel_rows: list[dict[str, Any]]    # with provenance: file:line, or the API call and its record
    shop_order: dict[str, Any] | None
    events: list[dict[str, Any]]
    repairs: list[dict[str, Any]]         # journal rows of this exception or its order

    def to_json(self) -> dict[str, Any]:
        return {**self.exception, "channel_rows": self.channel_rows, "shop_order": self.shop_order,
                "events": self.events}


_CHANNEL_ROWS_SQL = """
SELECT t.txn_id, t.kind, t.order_no, t.channel_txn_id, t.refund_id, t.amount, t.currency, t.fee,
       t.status, t.occurred_at, m.file_name || ':' || t.line_no AS provenance, t.source,
       CASE WHEN m.source LIKE 'api:%' THEN 'api' ELSE 'file' END AS origin,
       m.file_name, t.line_no, CASE WHEN m.source LIKE 'api:%' THEN m.source END AS api_call, m.imported_at
FROM results r, unnest(r.txn_ids) u(txn_id) JOIN channel_txn t USING (txn_id)
JOIN imports m ON m.import_id = t.import_id
WHERE r.run_id = ? AND r.channel = ? AND r.unit_key = ?
ORDER BY t.txn_id
"""
_SHOP_SQL = """
SELECT order_no, amount, currency, status, shop_status, channel_txn_id, created_at, paid_at,
       buyer_contact, goods_kind, quantity, title
FROM shop_orders WHERE order_no = ?
"""


def exception_detail(con: duckdb.DuckDBPyConnection, exception_id: int) -> ExceptionDetail:
    """One exception with both sides, where each channel row came from, its history and its repairs."""
    found = rows_of(con.execute("SELECT * FROM exceptions WHERE id = ?", [exception_id]))
    if not found:
        raise NotFound(f"no exception with id {exception_id}")
    exc = found[0]
    events = rows_of(con.execute(
        "SELECT event_at, actor, action, run_id, note FROM exception_events WHERE exception_id = ? ORDER BY event_id",
        [exception_id]))
    channel_rows = rows_of(con.execute(_CHANNEL_ROWS_SQL, [exc["last_seen_run"], exc["channel"], exc["key"]]))
    shop = rows_of(con.execute(_SHOP_SQL, [exc["order_no"]])) if exc["order_no"] else []
    repairs = rows_of(con.execute(
        "SELECT repair_id, action, state, actor, reason, created_at, updated_at, detail FROM repairs "
        "WHERE exception_id = ? OR (? IS NOT NULL AND upper(order_no) = upper(?)) ORDER BY repair_id",
        [exception_id, exc["order_no"], exc["order_no"]]))
    return ExceptionDetail(exc, channel_rows, shop[0] if shop else None, events, repairs)
