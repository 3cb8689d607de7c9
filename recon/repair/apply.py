"""Acting on a repair plan, exactly once per idempotency key, surviving a crash at any point.

For each planned repair: (1) settle any repair a crash left ``started`` or ``unknown`` by reading
the shop; (2) re-query the channel where it has an order-query API; (3) commit a ``started``
journal row; (4) act through the shop in one atomic step; (5) read the order back and record
``applied`` only when it shows completed and delivered; (6) mark the exception ``repaired``.
An applied repair whose cards recon must mail keeps ``"buyer_mail": "due"`` in its journal detail
until the mail was attempted, so a crash later in the batch never loses a buyer's goods.
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
from recon.ledger import SYSTEM_ACTOR, add_event
from recon.money import money_str
from recon.repair.plan import PlannedRepair
from recon.shops.base import ShopOrderState, ShopRepairer

# Journal states. ``started``: intent committed, act may or may not have happened (a crash);
# ``unknown``: the act's answer was lost; ``not_applied``: settled as never happened (retryable);
# ``applied`` and ``failed`` are final.
MAIL_DUE = "due"  # detail.buyer_mail of an applied repair whose cards are not yet mailed to the buyer


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
                    actor, state.cards, _mails(repairer))
            settled.append(RepairOutcome(key, order_no, action, "applied", "settled: the shop shows it done",
                                         state.cards))
        else:
            _set_state(con, key, "not_applied", "settled after an interrupted run: the shop shows no change")
            settled.append(RepairOutcome(key, order_no, action, "not_applied", "settled: nothing was changed", []))
    return settled


def buyer_mail_due(con: duckdb.DuckDBPyConnection, repairer: ShopRepairer) -> list[RepairOutcome]:
    """Applied repairs whose buyer mail a crash cut off (the goods were delivered, the mail never sent).

    They are returned as ``applied`` outcomes with the cards the shop shows now, for ``record_buyer_mail``
    after mailing; they are not counted again as repairs of this run.
    """
    rows = con.execute(
        "SELECT idempotency_key, order_no, action, detail FROM repairs WHERE state = 'applied' AND shop = ? "
        "AND contains(detail, ?) ORDER BY repair_id",
        [repairer.name, json.dumps({"buyer_mail": MAIL_DUE})[1:-1]],
    ).fetchall()
    due = []
    for key, order_no, action, detail in rows:
        if json.loads(detail).get("buyer_mail") != MAIL_DUE:
            continue
        state = repairer.read(order_no)
        cards = state.cards if state is not None and state.delivered else []
        due.append(RepairOutcome(key, order_no, action, "applied", "delivered before an interrupted run", cards))
    return due


def record_buyer_mail(con: duckdb.DuckDBPyConnection, key: str, outcome: str) -> None:
    """The buyer mail of an applied repair was attempted: it is no longer due."""
    row = con.execute("SELECT detail FROM repairs WHERE idempotency_key = ?", [key]).fetchone()
    if row is None or not row[0] or not row[0].startswith("{"):
        return
    detail = json.loads(row[0])
    detail["buyer_mail"] = outcome
    con.execute("UPDATE repairs SET detail = ? WHERE idempotency_key = ?", [json.dumps(detail, ensure_ascii=False),
                                                                            key])


def apply_plan(con: duckdb.DuckDBPyConnection, items: list[PlannedRepair], repairer: ShopRepairer,
               query: QueryFn, actor: str, reason: str | None = None, force: bool = False) -> list[RepairOutcome]:
    """Apply each planned repair once; see the module docstring for the steps."""
    outcomes = []
    for item in items:
        previous = con.execute("SELECT state FROM repairs WHERE idempotency_key = ?", [item.key]).fetchone()
        if previous and previous[0] == "applied":
            outcomes.append(RepairOutcome(item.key, item.order_no, item.action, "skipped", "already applied", []))
            continue
        refusal = None if force else _requery_refusal(item, query, _currency(con, item))
        refusal = refusal or _shop_refusal(item, repairer)
        if refusal:
            outcomes.append(RepairOutcome(item.key, item.order_no, item.action, "skipped", refusal, []))
            continue
        outcomes.append(_apply_one(con, item, repairer, actor, reason, previous is not None))
    return outcomes


def _requery_refusal(item: PlannedRepair, query: QueryFn, currency: str | None) -> str | None:
    """数据双重校验: where the channel can be asked, it must confirm paid, same amount and currency, same txn now.

    A paid answer without a transaction id does not confirm the transaction the repair is for.
    """
    try:
        answer = query(item.channel, item.order_no)
    except ReconError as exc:
        return f"re-query failed: {exc}"
    if answer is None:
        return None
    if answer.state != "paid":
        return f"re-query: the channel says {answer.state} ({answer.raw_status}) {answer.note}".strip()
    if answer.amount is None or answer.amount != item.amount:
        shown = money_str(answer.amount) if answer.amount is not None else "no amount"
        return f"re-query: the channel says {shown}, the repair is for {money_str(item.amount)}"
    if currency and (answer.currency or "").upper() != currency.upper():
        return f"re-query: the channel says {answer.currency or 'no currency'}, the repair is for {currency}"
    if item.channel_txn_id and answer.channel_txn_id != item.channel_txn_id:
        if not answer.channel_txn_id:
            return f"re-query: the channel reports no transaction id, the repair is for {item.channel_txn_id}"
        return f"re-query: the channel reports transaction {answer.channel_txn_id}, not {item.channel_txn_id}"
    return None


def _currency(con: duckdb.DuckDBPyConnection, item: PlannedRepair) -> str | None:
    """The currency of the exception a repair is for (None for a forced redelivery without one)."""
    row = con.execute("SELECT currency FROM exceptions WHERE id = ?", [item.exception_id]).fetchone()
    return str(row[0]) if row and row[0] else None


def _shop_refusal(item: PlannedRepair, repairer: ShopRepairer) -> str | None:
    """A paid order is completed only with the amount it asks, to the cent (DESIGN §6.1), whoever asks.

    The planner only plans such repairs; this also holds for an operator's redelivery, and for shops whose
    completion path (configured SQL, a hook, an admin API) does not compare amounts itself.
    """
    if item.action != "complete":
        return None
    state = repairer.read(item.order_no)
    if state is None or state.amount == item.amount:
        return None
    return (f"the shop order asks {money_str(state.amount)}, the channel paid {money_str(item.amount)}: "
            "a repair needs the two equal to the cent")


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
        _finish(con, item.key, item.exception_id, "applied", result.detail, actor, state.cards, _mails(repairer))
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
                state.cards, _mails(repairer))
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


def _mails(repairer: ShopRepairer) -> bool:
    return getattr(repairer, "mail_buyer", None) is not None


def _finish(con: duckdb.DuckDBPyConnection, key: str, exception_id: int | None, state: str, detail: str, actor: str,
            cards: list[str], mail_due: bool = False) -> None:
    """Record the outcome and, when applied, mark the exception repaired, in one transaction.

    ``mail_due``: the cards still have to be mailed to the buyer; the journal says so until the mail
    was attempted, so a crash in between leaves the mail for the next run (at least once).
    An exception that a run closed meanwhile because the shop already showed the order done (recon's
    own act, read before this settle) is repaired too; one a person closed keeps that person's status.
    """
    record: dict[str, object] = {"detail": detail, "cards_delivered": len(cards)}
    if state == "applied" and cards and mail_due:
        record["buyer_mail"] = MAIL_DUE
    con.execute("BEGIN")
    try:
        _set_state(con, key, state, json.dumps(record, ensure_ascii=False))
        if state == "applied" and exception_id is not None:
            changed = con.execute(
                "UPDATE exceptions SET status = 'repaired', closed_by = ? WHERE id = ? "
                "AND (status = 'open' OR (status = 'resolved' AND closed_by = ?)) RETURNING id",
                [actor, exception_id, SYSTEM_ACTOR]).fetchall()
            if changed:
                add_event(con, exception_id, actor, "repaired", None, detail)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
