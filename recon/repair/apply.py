"""Acting on a repair plan, exactly once per idempotency key, surviving a crash at any point.

For each planned repair: (1) settle any repair a crash left ``started`` or ``unknown`` by reading
the shop; (2) re-query the channel where it has an order-query API; (3) commit a ``started``
journal row; (4) act through the shop in one atomic step; (5) read the order back and record
``applied`` only when it shows completed and delivered; (6) mark the exception ``repaired``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb

from fetchers.base import QueryResult
from recon.errors import ReconError
from recon.faults import crash_point
from recon.ledger import add_event
from recon.repair.plan import PlannedRepair
from recon.shops.base import ShopOrderState, ShopRepairer

# Journal states. ``started``: intent committed, act may or may not have happened (a crash);
# ``unknown``: the act's answer was lost; ``not_applied``: settled as never happened (retryable);
# ``applied`` and ``failed`` are final.


@dataclass
class RepairOutcome:
    key: str
    order_no: str
    action: str
    state: str  # applied | failed | skipped | unknown
    detail: str
    cards: list[str]


QueryFn = Callable[[str, str], QueryResult | None]  # (channel, order_no) → fresh answer, None: channel has no API


def settle_unfinished(con: duckdb.DuckDBPyConnection, repairer: ShopRepairer, actor: str) -> list[RepairOutcome]:
    """Before any new work: journal rows a crash left open are decided by what the shop shows now."""
    rows = con.execute(
        "SELECT idempotency_key, order_no, channel_txn_id, action, exception_id FROM repairs "
        "WHERE state IN ('started', 'unknown') AND shop = ? ORDER BY repair_id",
        [repairer.name],
    ).fetchall()
    settled = []
    for key, order_no, txn, action, exception_id in rows:
        state = repairer.read(order_no)
        if state is not None and _shows_done(state, txn, action):
            _finish(con, key, exception_id, "applied", "settled after an interrupted run: the shop shows it done",
                    actor, state.cards)
            settled.append(RepairOutcome(key, order_no, action, "applied", "settled: the shop shows it done",
                                         state.cards))
        else:
            _set_state(con, key, "not_applied", "settled after an interrupted run: the shop shows no change")
            settled.append(RepairOutcome(key, order_no, action, "not_applied", "settled: nothing was changed", []))
    return settled


def apply_plan(con: duckdb.DuckDBPyConnection, items: list[PlannedRepair], repairer: ShopRepairer,
               query: QueryFn, actor: str, reason: str | None = None, force: bool = False) -> list[RepairOutcome]:
    """Apply each planned repair once; see the module docstring for the steps."""
    outcomes = []
    for item in items:
        previous = con.execute("SELECT state FROM repairs WHERE idempotency_key = ?", [item.key]).fetchone()
        if previous and previous[0] == "applied":
            outcomes.append(RepairOutcome(item.key, item.order_no, item.action, "skipped", "already applied", []))
            continue
        refusal = None if force else _requery_refusal(item, query)
        if refusal:
            outcomes.append(RepairOutcome(item.key, item.order_no, item.action, "skipped", refusal, []))
            continue
        outcomes.append(_apply_one(con, item, repairer, actor, reason, previous is not None))
    return outcomes


def _requery_refusal(item: PlannedRepair, query: QueryFn) -> str | None:
    """数据双重校验: where the channel can be asked, it must confirm paid, same amount, same txn now."""
    try:
        answer = query(item.channel, item.order_no)
    except ReconError as exc:
        return f"re-query failed: {exc}"
    if answer is None:
        return None
    if answer.state != "paid":
        return f"re-query: the channel says {answer.state} ({answer.raw_status}) {answer.note}".strip()
    if answer.amount is None or answer.amount != item.amount:
        return f"re-query: the channel says {answer.amount}, the repair is for {item.amount}"
    if item.channel_txn_id and answer.channel_txn_id and answer.channel_txn_id != item.channel_txn_id:
        return f"re-query: the channel reports transaction {answer.channel_txn_id}, not {item.channel_txn_id}"
    return None


def _apply_one(con: duckdb.DuckDBPyConnection, item: PlannedRepair, repairer: ShopRepairer, actor: str,
               reason: str | None, retry: bool) -> RepairOutcome:
    now = datetime.now(UTC)
    if retry:
        con.execute("UPDATE repairs SET state = 'started', updated_at = ?, actor = ?, reason = ? "
                    "WHERE idempotency_key = ?", [now, actor, reason, item.key])
    else:
        con.execute(
            "INSERT INTO repairs VALUES (nextval('repair_ids'), ?, ?, ?, ?, ?, ?, 'started', ?, ?, ?, ?, NULL)",
            [item.key, item.exception_id, repairer.name, item.order_no, item.channel_txn_id, item.action, actor,
             reason, now, now],
        )
    crash_point("after_intent")
    try:
        if item.action == "complete":
            result = repairer.complete(item.order_no, item.amount, item.channel_txn_id or "")
        else:
            result = repairer.deliver_after_restock(item.order_no)
    except ReconError as exc:
        # The answer is lost, not necessarily the act: decide by reading the shop before anything else.
        _set_state(con, item.key, "unknown", f"the shop's answer was lost: {exc}")
        return _settle_now(con, item, repairer, actor)
    crash_point("after_shop_update")
    state = repairer.read(item.order_no)
    crash_point("before_verify")
    if result.done and state is not None and _shows_done(state, item.channel_txn_id, item.action):
        _finish(con, item.key, item.exception_id, "applied", result.detail, actor, state.cards)
        return RepairOutcome(item.key, item.order_no, item.action, "applied", result.detail, state.cards)
    if state is not None and _shows_done(state, item.channel_txn_id, item.action):
        # The shop's own (late) completion won the race: delivered, by the shop, with its own mail.
        detail = f"the shop completed it itself ({result.detail})"
        _finish(con, item.key, item.exception_id, "applied", detail, actor, [])
        return RepairOutcome(item.key, item.order_no, item.action, "applied", detail, [])
    detail = result.detail if not result.done else "the shop does not show the order delivered after the act"
    _finish(con, item.key, item.exception_id, "failed", detail, actor, [])
    return RepairOutcome(item.key, item.order_no, item.action, "failed", detail, [])


def _settle_now(con: duckdb.DuckDBPyConnection, item: PlannedRepair, repairer: ShopRepairer,
                actor: str) -> RepairOutcome:
    state = repairer.read(item.order_no)
    if state is not None and _shows_done(state, item.channel_txn_id, item.action):
        _finish(con, item.key, item.exception_id, "applied", "the answer was lost; the shop shows it done", actor,
                state.cards)
        return RepairOutcome(item.key, item.order_no, item.action, "applied", "recovered after a lost answer",
                             state.cards)
    return RepairOutcome(item.key, item.order_no, item.action, "unknown",
                         "the answer was lost and the shop shows no change yet; settled on the next run", [])


def _shows_done(state: ShopOrderState, channel_txn_id: str | None, action: str) -> bool:
    if not state.delivered:
        return False
    return action != "complete" or not channel_txn_id or state.channel_txn_id == channel_txn_id


def _set_state(con: duckdb.DuckDBPyConnection, key: str, state: str, detail: str) -> None:
    con.execute("UPDATE repairs SET state = ?, detail = ?, updated_at = ? WHERE idempotency_key = ?",
                [state, detail, datetime.now(UTC), key])


def _finish(con: duckdb.DuckDBPyConnection, key: str, exception_id: int | None, state: str, detail: str, actor: str,
            cards: list[str]) -> None:
    """Record the outcome and, when applied, mark the exception repaired, in one transaction."""
    con.execute("BEGIN")
    try:
        _set_state(con, key, state, json.dumps({"detail": detail, "cards_delivered": len(cards)},
                                               ensure_ascii=False))
        if state == "applied" and exception_id is not None:
            con.execute("UPDATE exceptions SET status = 'repaired', closed_by = ? WHERE id = ? AND status = 'open'",
                        [actor, exception_id])
            add_event(con, exception_id, actor, "repaired", None, detail)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
