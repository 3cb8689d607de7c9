"""Operator redelivery of one order: resend delivered goods, or complete / deliver a paid order."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal

import duckdb

from recon.errors import NotFound, UsageError
from recon.repair.apply import RepairOutcome, apply_plan
from recon.repair.plan import ACTIONS, PlannedRepair, idempotency_key
from recon.repair.run import QueryFnType, mail_buyers
from recon.shops.base import ShopRepairer

COMPLETABLE, RESTOCKABLE = ("1", "-1"), ("6",)


def redeliver(con: duckdb.DuckDBPyConnection, repairer: ShopRepairer, order_no: str, query: QueryFnType,
              actor: str, force: bool, reason: str | None) -> RepairOutcome:
    """What an operator's `recon redeliver ORDER_NO` does (DESIGN §6.6)."""
    if force and not (reason and reason.strip()):
        raise UsageError("--force needs --reason saying why (it is kept in the repair journal)")
    state = repairer.read(order_no)
    if state is None:
        raise NotFound(f"the shop has no order {order_no}")
    if state.delivered and state.cards:
        return _resend(con, repairer, state.order_no, state.cards, actor, reason)
    if state.shop_status not in COMPLETABLE + RESTOCKABLE:
        raise UsageError(f"order {state.order_no} has shop status {state.shop_status}: a person handles it in the "
                         "shop (recon never acts on statuses 2, 3, 4 without goods, or 5)")
    code = "missing_callback" if state.shop_status in COMPLETABLE else "paid_not_delivered"
    found = con.execute(
        "SELECT id, channel, channel_txn_id, channel_amount, shop_amount, auto_repairable FROM exceptions "
        "WHERE upper(order_no) = upper(?) AND code = ? AND status = 'open' ORDER BY id DESC LIMIT 1",
        [state.order_no, code],
    ).fetchall()
    evidence = found[0] if found else None
    if evidence is None and not force:
        raise UsageError(f"no open {code} exception shows order {state.order_no} paid; check the channel "
                         "(`recon query`) and use --force --reason if you are sure")
    if evidence is not None and not evidence[5] and not force:
        # DESIGN §6.6: only --force lifts the cap (auto_repair_max) and the equal-amount rule.
        raise UsageError(f"exception {evidence[0]} of order {state.order_no} is not safe to repair automatically "
                         "(above the channel's auto_repair_max, amounts differ, or a refund); use --force --reason "
                         "if you are sure")
    exc_id, channel, txn, channel_amount, shop_amount = evidence[:5] if evidence else (None, "", None, None, None)
    amount = Decimal(channel_amount if code == "missing_callback" and channel_amount is not None
                     else shop_amount if shop_amount is not None else state.amount)
    action = ACTIONS[code]
    item = PlannedRepair(exc_id or 0, channel, code, state.order_no, txn, amount, action,
                         idempotency_key(repairer.name, state.order_no, txn, action))
    asker = query if channel else (lambda _c, _o: None)
    outcome = apply_plan(con, [item], repairer, asker, actor, reason, force=force)[0]
    mail_buyers(con, repairer, [outcome])
    return outcome


def _resend(con: duckdb.DuckDBPyConnection, repairer: ShopRepairer, order_no: str, cards: list[str], actor: str,
            reason: str | None) -> RepairOutcome:
    """Send the same goods again; a resend is journalled every time (it is meant to be repeatable)."""
    now = datetime.now(UTC)
    key = hashlib.sha256(f"{repairer.name}\x1f{order_no}\x1fresend\x1f{now.isoformat()}".encode()).hexdigest()
    mail = getattr(repairer, "mail_buyer", None)
    detail = mail(order_no, cards, "resend") if mail else "this shop has no buyer mail"
    state = "applied" if detail.startswith("mail to buyer sent") else "failed"
    con.execute("INSERT INTO repairs VALUES (nextval('repair_ids'), ?, NULL, ?, ?, NULL, 'resend', ?, ?, ?, ?, ?, ?)",
                [key, repairer.name, order_no, state, actor, reason, now, now, detail])
    return RepairOutcome(key, order_no, "resend", state, detail, cards)
