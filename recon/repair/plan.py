"""Which open exceptions may be repaired automatically, and why the others may not."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import duckdb

from recon.taxonomy import AUTO_REPAIR_CODES

# exception code → the shop action that repairs it
ACTIONS = {"missing_callback": "complete", "paid_not_delivered": "deliver_after_restock"}


@dataclass(frozen=True)
class PlannedRepair:
    exception_id: int
    channel: str
    code: str
    order_no: str
    channel_txn_id: str | None
    amount: Decimal
    action: str
    key: str  # idempotency key: sha256(shop, order_no, channel_txn_id, action)


@dataclass(frozen=True)
class Skipped:
    exception_id: int
    channel: str
    code: str
    order_no: str | None
    reason: str


def idempotency_key(shop: str, order_no: str, channel_txn_id: str | None, action: str) -> str:
    """The same repair always has the same key, so a rerun or a second process recognises it."""
    parts = "\x1f".join([shop, order_no.upper(), channel_txn_id or "", action])
    return hashlib.sha256(parts.encode("utf-8")).hexdigest()


def plan(con: duckdb.DuckDBPyConnection, shop: str, day: date | None, channels: list[str],
         only: list[int] | None = None) -> tuple[list[PlannedRepair], list[Skipped]]:
    """Open missing_callback / paid_not_delivered exceptions (``only`` these ids when given):
    auto-repairable ones planned, others skipped."""
    rows = con.execute(
        """
        SELECT e.id, e.channel, e.code, e.order_no, e.channel_txn_id, e.channel_amount, e.shop_amount,
               e.auto_repairable, e.detail
        FROM exceptions e
        WHERE e.status = 'open' AND list_contains($codes, e.code) AND list_contains($channels, e.channel)
          AND ($day IS NULL OR e.business_date = $day)
          AND ($only IS NULL OR list_contains($only, e.id))
        ORDER BY e.channel, e.id
        """,
        {"codes": list(AUTO_REPAIR_CODES), "channels": channels, "day": day, "only": only},
    ).fetchall()
    planned: list[PlannedRepair] = []
    skipped: list[Skipped] = []
    for exc_id, channel, code, order_no, txn, channel_amount, shop_amount, auto, detail in rows:
        if not auto:
            skipped.append(Skipped(exc_id, channel, code, order_no, f"not auto-repairable: {detail}"))
            continue
        action = ACTIONS[code]
        amount = Decimal(channel_amount if code == "missing_callback" else shop_amount)
        planned.append(PlannedRepair(exc_id, channel, code, order_no, txn, amount, action,
                                     idempotency_key(shop, order_no, txn, action)))
    return planned, skipped
