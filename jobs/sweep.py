"""The intraday sweep: shop orders still unpaid a few minutes after creation are asked about at their
channel's order-query API; a payment the shop never heard of (掉单) becomes a ``missing_callback``
exception at once and, when safe (DESIGN §6) and allowed, is repaired through the same journal as
``recon repair`` — so a buyer gets the goods minutes after paying instead of the next morning.

Each order is asked again with a doubling gap (``sweep_checks``), so a day of abandoned checkouts
costs a few queries each, not one a minute. Channel queries happen outside the store lock; only
the choice of orders and the recording of answers hold it, briefly.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import duckdb
import polars as pl

from fetchers.base import QueryResult
from jobs.journal import record_job_run
from recon.config import Config
from recon.errors import ReconError
from recon.fetching import make_fetcher
from recon.ledger import SYSTEM_ACTOR, add_event
from recon.lock import store_lock
from recon.money import money_str
from recon.pipeline import abort_stale_runs, finish_run, start_run
from recon.repair.run import NO_ORDER_QUERY, RepairReport, repair
from recon.repair.shop import open_repairer
from recon.shops import ShopAdapter, open_shop
from recon.store import open_store
from recon.taxonomy import BY_CODE, action
from reports.notices import Notice, send_notice

log = logging.getLogger("recon.jobs")

# Canonical shop statuses of an order the buyer may have paid without the shop hearing of it.
UNPAID_STATUSES = ("pending", "expired")
# Gaps between the asks about one order never exceed this, however long it has been pending.
LONGEST_GAP = timedelta(hours=1)


@dataclass
class SweptOrder:
    channel: str
    order_no: str
    shop_amount: Decimal
    created_at: datetime
    answer: str  # the channel's state (paid, unpaid, not_found …) or "error"
    detail: str = ""
    paid_at: datetime | None = None
    exception_id: int | None = None
    outcome: str = ""  # repaired | planned | needs_person | "" (not paid)
    recovered_after: float | None = None  # seconds from the payment to the repair
    shop_status: str = ""
    reply: QueryResult | None = None
    auto_repairable: bool = False


@dataclass
class SweepReport:
    started_at: datetime
    candidates: int = 0
    asked: list[SweptOrder] = field(default_factory=list)
    repair: RepairReport | None = None
    stopped: bool = False

    @property
    def paid(self) -> list[SweptOrder]:
        return [o for o in self.asked if o.answer == "paid"]

    def to_json(self) -> dict[str, object]:
        return {
            "started_at": self.started_at.isoformat(), "candidates": self.candidates, "asked": len(self.asked),
            "paid": len(self.paid), "repaired": sum(o.outcome == "repaired" for o in self.asked),
            "needs_person": sum(o.outcome == "needs_person" for o in self.asked),
            "errors": sum(o.answer == "error" for o in self.asked), "stopped": self.stopped,
            "orders": [{"channel": o.channel, "order_no": o.order_no, "answer": o.answer, "outcome": o.outcome,
                        "shop_amount": money_str(o.shop_amount), "exception_id": o.exception_id,
                        "paid_at": o.paid_at.isoformat() if o.paid_at else None,
                        "recovered_after_seconds": o.recovered_after, "detail": o.detail} for o in self.asked],
        }


def unpaid_orders(config: Config, shop: ShopAdapter, now: datetime) -> pl.DataFrame:
    """Orders created in the sweep window and still unpaid, with the channel that can be asked."""
    schedule = config.schedule
    askable = {pay_id: ch.id for ch in config.channels if ch.fetches and ch.kind not in NO_ORDER_QUERY
               for pay_id in ch.pay_ids}
    if not askable:
        return pl.DataFrame(schema={"order_no": pl.String, "channel": pl.String})
    orders = shop.orders_created_between(now - timedelta(hours=schedule.sweep_window_hours),
                                          now - timedelta(minutes=schedule.sweep_after_minutes))
    return (orders.filter(pl.col("status").is_in(UNPAID_STATUSES) & pl.col("pay_method").is_in(list(askable)))
            .with_columns(channel=pl.col("pay_method").replace_strict(askable, return_dtype=pl.String))
            .sort("created_at"))


def due_for_asking(con: duckdb.DuckDBPyConnection, config: Config, orders: pl.DataFrame,
                   now: datetime) -> pl.DataFrame:
    """The orders whose next ask is due: never asked, asked long enough ago (doubling gaps), or found
    paid while the shop still shows them unpaid (asked each pass until repaired or closed)."""
    first_gap = max(config.schedule.sweep_after_minutes, 1) * 60
    con.register("sweep_candidates", orders.select("channel", "order_no", "created_at").to_arrow())
    try:
        due = con.sql(
            """
            SELECT c.channel, c.order_no FROM sweep_candidates c
            LEFT JOIN sweep_checks k USING (channel, order_no)
            WHERE k.order_no IS NULL OR k.last_state = 'paid'
               OR $now >= k.last_checked + to_seconds(least($first * pow(2, k.checks - 1), $longest)::BIGINT)
            ORDER BY k.checks NULLS FIRST, c.created_at
            LIMIT $max
            """,
            params={"now": now, "first": first_gap, "longest": int(LONGEST_GAP.total_seconds()),
                    "max": config.schedule.sweep_max_orders},
        ).pl()
    finally:
        con.unregister("sweep_candidates")
    return orders.join(due, on=["channel", "order_no"], how="semi")


def ask_channels(config: Config, due: pl.DataFrame, stop: threading.Event | None) -> tuple[list[SweptOrder], bool]:
    """Ask each due order's channel now; one request per order (network-bound, not the import path)."""
    fetchers: dict[str, object] = {}
    asked: list[SweptOrder] = []
    for row in due.iter_rows(named=True):
        if stop is not None and stop.is_set():
            return asked, True
        item = SweptOrder(row["channel"], row["order_no"], row["amount"], row["created_at"], "error",
                          shop_status=str(row["shop_status"]))
        try:
            if item.channel not in fetchers:
                fetchers[item.channel] = make_fetcher(config.channel(item.channel))
            reply: QueryResult = fetchers[item.channel].query(item.order_no)  # type: ignore[attr-defined]
        except ReconError as exc:
            item.detail = str(exc)[:500]
        else:
            item.answer, item.reply, item.paid_at = reply.state, reply, reply.paid_at
            item.detail = f"{reply.raw_status} {reply.note}".strip()
        asked.append(item)
    return asked, False


def record_checks(con: duckdb.DuckDBPyConnection, asked: list[SweptOrder], now: datetime) -> None:
    rows = pl.DataFrame({"channel": [o.channel for o in asked], "order_no": [o.order_no for o in asked],
                         "answer": [o.answer for o in asked]})
    con.register("sweep_answers", rows.to_arrow())
    try:
        con.execute(
            """
            INSERT INTO sweep_checks SELECT channel, order_no, $now, $now, 1, answer FROM sweep_answers
            ON CONFLICT (channel, order_no) DO UPDATE
            SET last_checked = $now, checks = sweep_checks.checks + 1, last_state = excluded.last_state
            """,
            {"now": now},
        )
    finally:
        con.unregister("sweep_answers")


def open_found(con: duckdb.DuckDBPyConnection, config: Config, repairable: tuple[str, ...], item: SweptOrder,
               run_id: int, now: datetime) -> int | None:
    """The order's missing_callback exception, opened (or seen again); None when a person closed it."""
    channel = config.channel(item.channel)
    reply = item.reply
    assert reply is not None
    equal = reply.amount == item.shop_amount and reply.currency in (None, channel.currency)
    auto = equal and item.shop_status in repairable
    item.auto_repairable = auto
    paid = money_str(reply.amount) if reply.amount is not None else "?"
    detail = (f"the sweep asked {channel.id} at {now.isoformat(timespec='seconds')}: paid {paid} "
              f"({reply.raw_status}, txn {reply.channel_txn_id or '?'}); the shop still shows status {item.shop_status}"
              + ("" if equal else f"; the shop expects {money_str(item.shop_amount)}"))
    item.detail = detail
    zone = ZoneInfo(channel.zone)
    business_date = (item.paid_at or item.created_at).astimezone(zone).date()
    row = con.execute("SELECT id, status FROM exceptions WHERE channel = ? AND key = ? AND code = 'missing_callback'",
                      [channel.id, item.order_no]).fetchall()
    if row:
        exception_id, status = int(row[0][0]), str(row[0][1])
        if status != "open":
            item.detail += f"; exception {exception_id} is already {status}"
            return None
        # What the sheet shows of the shop and the channel is what this pass saw (a sweep has no result rows).
        con.execute("UPDATE exceptions SET last_seen_run = ?, last_seen = ?, channel_amount = ?, channel_txn_id = ?, "
                    "auto_repairable = ?, detail = ?, shop_status = ?, shop_channel_txn_id = NULL, occurred_at = ? "
                    "WHERE id = ?",
                    [run_id, now, reply.amount, reply.channel_txn_id, auto, detail, item.shop_status, item.paid_at,
                     exception_id])
        return exception_id
    code = BY_CODE["missing_callback"]
    lang = "en" if config.reports.language == "en" else "zh"
    [(exception_id,)] = con.execute("SELECT nextval('exception_ids')").fetchall()
    con.execute(
        """
        INSERT INTO exceptions (id, channel, key, code, status, priority, order_no, channel_txn_id, shop_amount,
            channel_amount, currency, business_date, first_seen_run, last_seen_run, first_seen, last_seen,
            auto_repairable, suggested_action, detail, shop_status, occurred_at)
        VALUES (?, ?, ?, 'missing_callback', 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        [exception_id, channel.id, item.order_no, code.priority, item.order_no, reply.channel_txn_id,
         item.shop_amount, reply.amount or Decimal(0), reply.currency or channel.currency, business_date, run_id,
         run_id, now, now, auto, action("missing_callback", lang), detail, item.shop_status, item.paid_at],
    )
    add_event(con, exception_id, SYSTEM_ACTOR, "opened", run_id, "found by the sweep", now)
    return exception_id


def sweep(config: Config, now: datetime, apply: bool, actor: str = SYSTEM_ACTOR,
          stop: threading.Event | None = None, command: str = "recon sweep") -> SweepReport:
    """One pass: ask about due unpaid orders, open what was paid, repair it when ``apply`` and safe."""
    report = SweepReport(now)
    shop = open_shop(config)
    orders = unpaid_orders(config, shop, now)
    report.candidates = orders.height
    if orders.is_empty():
        return report
    with store_lock(config.store_path, command), open_store(config, write=True) as con:
        due = due_for_asking(con, config, orders, now)
    report.asked, report.stopped = ask_channels(config, due, stop)
    if not report.asked:
        return report
    with store_lock(config.store_path, command), open_store(config, write=True) as con:
        record_checks(con, report.asked, now)
        run_id = _record_found(con, config, shop.repairable.get("missing_callback", ()), report, now, command)
        ids = [o.exception_id for o in report.paid if o.exception_id is not None]
        if apply and ids:
            report.repair = repair(con, config, open_repairer(config), None, True, actor, only=ids)
        _settle_outcomes(report, apply)
        summary = f"asked {len(report.asked)}, paid {len(report.paid)}, repaired " \
                  f"{sum(o.outcome == 'repaired' for o in report.asked)}"
        record_job_run(con, "sweep", None, None, now, "swept", run_id, summary)
    log.info("sweep: %s", summary, extra={"job": "sweep", **{k: v for k, v in report.to_json().items()
                                                             if k != "orders"}})
    for item in report.paid:
        if item.outcome == "repaired":
            log.info("sweep: recovered %s on %s, %.0f s after the payment", item.order_no, item.channel,
                     item.recovered_after or 0, extra={"order_no": item.order_no,
                                                        "recovered_after_seconds": item.recovered_after})
    needing = [o for o in report.paid if o.outcome == "needs_person"]
    if needing:
        send_notice(config, sweep_found(config, needing))
    return report


def _record_found(con: duckdb.DuckDBPyConnection, config: Config, repairable: tuple[str, ...],
                  report: SweepReport, now: datetime, command: str) -> int | None:
    """A ``runs`` row of kind sweep and the exceptions it opened, in one transaction."""
    if not report.paid:
        return None
    abort_stale_runs(con)
    con.execute("BEGIN")
    try:
        run_id = start_run(con, now.astimezone(ZoneInfo(config.shop.zone)).date(),
                           sorted({o.channel for o in report.paid}), command, "sweep")
        for item in report.paid:
            item.exception_id = open_found(con, config, repairable, item, run_id, now)
        finish_run(con, run_id)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return run_id


def _settle_outcomes(report: SweepReport, apply: bool) -> None:
    done = {o.order_no: o for o in (report.repair.settled + report.repair.outcomes)} if report.repair else {}
    finished = datetime.now(UTC)
    for item in report.paid:
        outcome = done.get(item.order_no)
        if outcome is not None and outcome.state == "applied":
            item.outcome = "repaired"
            if item.paid_at is not None:
                item.recovered_after = round((finished - item.paid_at).total_seconds(), 3)
        elif not apply and item.exception_id is not None and item.auto_repairable:
            item.outcome = "planned"
        else:
            item.outcome = "needs_person"
            if outcome is not None:
                item.detail += f"; repair {outcome.state}: {outcome.detail}"


def sweep_found(config: Config, items: list[SweptOrder]) -> Notice:
    en = config.reports.language == "en"
    title = (f"recon sweep: {len(items)} paid order(s) the shop never heard of need a person" if en
             else f"对账巡检：{len(items)} 笔已付款但店铺未确认的订单需人工处理")
    body = [f"{o.channel} {o.order_no} {money_str(o.shop_amount)}: {o.detail}" for o in items[:20]]
    facts = {"orders": [{"channel": o.channel, "order_no": o.order_no, "exception_id": o.exception_id}
                        for o in items]}
    return Notice("sweep_found", config.reports.language, title, body, facts)
