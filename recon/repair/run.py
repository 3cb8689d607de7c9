"""The repair job: settle, plan, re-query, apply, mail the buyer; shared by `recon repair`, `run --apply`, `redeliver`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

import duckdb

from fetchers.base import QueryResult
from recon.config import Config
from recon.fetching import make_fetcher
from recon.repair.apply import RepairOutcome, apply_plan, buyer_mail_due, record_buyer_mail, settle_unfinished
from recon.repair.plan import PlannedRepair, Skipped, plan
from recon.shops.base import ShopRepairer

# Channels whose records carry no order number have nothing to ask about one order.
NO_ORDER_QUERY = ("usdt_trc20", "paypal")


@dataclass
class RepairReport:
    planned: list[PlannedRepair]
    skipped: list[Skipped]
    settled: list[RepairOutcome] = field(default_factory=list)
    outcomes: list[RepairOutcome] = field(default_factory=list)
    applied_run: bool = False

    def counts(self) -> dict[str, int]:
        done = [o.state for o in self.outcomes]
        settled = [o.state for o in self.settled]
        return {"planned": len(self.planned), "applied": done.count("applied") + settled.count("applied"),
                "skipped": len(self.skipped) + done.count("skipped"),
                "failed": done.count("failed") + done.count("unknown")}

    def to_json(self) -> dict[str, object]:
        return {
            "applied": self.applied_run,
            "counts": self.counts(),
            "planned": [{"exception_id": p.exception_id, "channel": p.channel, "code": p.code,
                         "order_no": p.order_no, "channel_txn_id": p.channel_txn_id, "amount": str(p.amount),
                         "action": p.action, "key": p.key} for p in self.planned],
            "skipped": [{"exception_id": s.exception_id, "channel": s.channel, "code": s.code,
                         "order_no": s.order_no, "reason": s.reason} for s in self.skipped],
            "outcomes": [{"order_no": o.order_no, "action": o.action, "state": o.state, "detail": o.detail,
                          "cards_delivered": len(o.cards)} for o in self.settled + self.outcomes],
        }


QueryFnType = Callable[[str, str], QueryResult | None]


def channel_query(config: Config) -> QueryFnType:
    """(channel id, order no) → the channel's answer now, or None when it has no order-query API."""
    def ask(channel_id: str, order_no: str) -> QueryResult | None:
        channel = config.channel(channel_id)
        if not channel.fetches or channel.kind in NO_ORDER_QUERY:
            return None
        return make_fetcher(channel).query(order_no)

    return ask


def repair(con: duckdb.DuckDBPyConnection, config: Config, repairer: ShopRepairer, day: date | None,
           apply: bool, actor: str, only: list[int] | None = None) -> RepairReport:
    """Plan (and with ``apply``, act on) the safe repairs of open exceptions (``only`` these ids)."""
    channels = [c.id for c in config.channels]
    # Settle first: an order a crash left half-recorded is then repaired (not planned again).
    settled = settle_unfinished(con, repairer, actor) if apply else []
    planned, skipped = plan(con, repairer.name, day, channels, only)
    report = RepairReport(planned, skipped, settled=settled, applied_run=apply)
    if not apply:
        return report
    capped = [p for p in planned if _within_cap(config, p)]
    report.skipped += [Skipped(p.exception_id, p.channel, p.code, p.order_no, "above the channel's auto_repair_max")
                       for p in planned if p not in capped]
    report.outcomes = apply_plan(con, capped, repairer, channel_query(config), actor)
    mail_buyers(con, repairer, report.settled + report.outcomes)
    return report


def mail_buyers(con: duckdb.DuckDBPyConnection, repairer: ShopRepairer, outcomes: list[RepairOutcome]) -> None:
    """Delivered cards go to the buyer by mail (the DB path skips the shop's own mail), each attempt
    recorded in the journal; then the mails an earlier, interrupted run left due."""
    mail = getattr(repairer, "mail_buyer", None)
    if mail is None:
        return
    # What is still due is read only once this run's own mails are recorded, so none is sent twice.
    for outcome in outcomes:
        _mail_one(con, mail, outcome)
    for outcome in buyer_mail_due(con, repairer):
        _mail_one(con, mail, outcome)


def _mail_one(con: duckdb.DuckDBPyConnection, mail: Callable[[str, list[str], str], str],
              outcome: RepairOutcome) -> None:
    if outcome.state == "applied" and outcome.cards:
        sent = mail(outcome.order_no, outcome.cards, outcome.action)
        outcome.detail = f"{outcome.detail}; {sent}"
        record_buyer_mail(con, outcome.key, sent)


def _within_cap(config: Config, item: PlannedRepair) -> bool:
    cap = config.channel(item.channel).auto_repair_max
    return cap is not None and item.amount <= cap
