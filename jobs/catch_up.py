"""Exactly one reconciliation per (channel, business date), decided by the ``runs`` table.

The nightly job, the retry job, the boot of the daemon and ``recon schedule --once`` from cron all
call ``catch_up``: it works out which dates each channel is owed at ``now`` (never reconciled; or
tried while the bill was not out and due for another try), runs them oldest first, and gives up on a
bill still missing past its deadline with one alert. The decision is taken again under the store
lock right before each run, so a cron run and the daemon started together never both run a date.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

import duckdb

from jobs.calendar import candidate_dates, nightly_trigger, retry_deadline, retry_delay
from jobs.journal import record_job_run
from jobs.reconcile import reconcile_when
from recon.config import ChannelConfig, Config
from recon.errors import LockBusy, ReconError
from recon.lock import store_lock
from recon.pipeline import RunSummary
from recon.store import open_store
from reports.notices import Notice, send_notice

log = logging.getLogger("recon.jobs")


@dataclass(frozen=True)
class DateState:
    """What the runs table says about one channel's business date."""

    done: bool = False  # a finished run had the channel's complete records
    attempts: int = 0  # runs that ended without them (bill not out, fetch failed, run failed or killed)
    last_attempt: datetime | None = None
    gave_up: bool = False


@dataclass(frozen=True)
class Owed:
    channel: str
    business_date: date
    action: Literal["run", "wait", "give_up"]
    reason: str
    not_before: datetime | None = None
    attempts: int = 0

    def to_json(self) -> dict[str, object]:
        return {"channel": self.channel, "business_date": self.business_date.isoformat(), "action": self.action,
                "reason": self.reason, "attempts": self.attempts,
                "not_before": self.not_before.isoformat() if self.not_before else None}


@dataclass
class CatchUpReport:
    ran: list[tuple[str, date, int, str]] = field(default_factory=list)  # channel, date, run id, outcome
    failed: list[tuple[str, date, str]] = field(default_factory=list)
    gave_up: list[Owed] = field(default_factory=list)
    waiting: list[Owed] = field(default_factory=list)
    busy: str | None = None
    stopped: bool = False
    needs_person: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "ran": [{"channel": c, "business_date": d.isoformat(), "run_id": r, "outcome": o}
                    for c, d, r, o in self.ran],
            "failed": [{"channel": c, "business_date": d.isoformat(), "error": e} for c, d, e in self.failed],
            "gave_up": [o.to_json() for o in self.gave_up],
            "waiting": [o.to_json() for o in self.waiting],
            "busy": self.busy, "stopped": self.stopped, "needs_person": self.needs_person,
        }


def date_states(con: duckdb.DuckDBPyConnection, channel: str, first: date, last: date) -> dict[date, DateState]:
    """The runs table's verdict per date; the last try is timed by the scheduler's own journal when it
    made it (its clock), else by the run's start."""
    rows = con.execute(
        """
        WITH tries AS (
            SELECT business_date, bool_or(complete) AS done, count(*) FILTER (WHERE NOT complete) AS attempts,
                   max(started_at) AS last_run
            FROM (SELECT business_date, started_at,
                         status = 'succeeded' AND NOT list_contains(coalesce(incomplete_channels, []), $ch) AS complete
                  FROM runs
                  WHERE kind = 'reconcile' AND list_contains(channels, $ch) AND business_date BETWEEN $first AND $last)
            GROUP BY business_date
        ), journal AS (
            SELECT business_date, max(started_at) FILTER (WHERE outcome IN ('incomplete', 'failed')) AS last_try,
                   bool_or(outcome = 'gave_up') AS gave_up
            FROM job_runs WHERE channel = $ch AND business_date BETWEEN $first AND $last
            GROUP BY business_date
        )
        SELECT business_date, coalesce(t.done, false), coalesce(t.attempts, 0), coalesce(j.last_try, t.last_run),
               coalesce(j.gave_up, false)
        FROM tries t FULL JOIN journal j USING (business_date)
        """,
        {"ch": channel, "first": first, "last": last},
    ).fetchall()
    return {d: DateState(bool(done), int(n), last_at, bool(gave)) for d, done, n, last_at, gave in rows}


def decide(config: Config, channel: ChannelConfig, day: date, state: DateState, now: datetime) -> Owed | None:
    """What the scheduler owes ``channel``'s ``day`` at ``now``; None when nothing (done or given up)."""
    if state.done or state.gave_up:
        return None
    if state.attempts == 0:
        return Owed(channel.id, day, "run", "not reconciled yet")
    trigger = nightly_trigger(config, channel)
    deadline = retry_deadline(config, trigger, day)
    assert state.last_attempt is not None
    following = state.last_attempt + retry_delay(config, state.attempts)
    if now >= deadline:
        return Owed(channel.id, day, "give_up", f"records still incomplete after {state.attempts} attempt(s), "
                    f"past the deadline {deadline.isoformat()}", attempts=state.attempts)
    if now >= following:
        return Owed(channel.id, day, "run", f"retry {state.attempts + 1}: the records were incomplete",
                    attempts=state.attempts)
    return Owed(channel.id, day, "wait", "the records were incomplete; trying again later", min(following, deadline),
                state.attempts)


def owed(con: duckdb.DuckDBPyConnection, config: Config, now: datetime,
         channels: list[ChannelConfig] | None = None) -> list[Owed]:
    """Every date each channel is owed at ``now`` (run, wait or give up), oldest first per channel."""
    found: list[Owed] = []
    for channel in channels or config.channels:
        dates = candidate_dates(config, nightly_trigger(config, channel), now)
        if not dates:
            continue
        states = date_states(con, channel.id, dates[0], dates[-1])
        found += [o for d in dates if (o := decide(config, channel, d, states.get(d, DateState()), now)) is not None]
    return found


def catch_up(config: Config, now: datetime, channel_ids: list[str] | None = None,
             stop: threading.Event | None = None, actor: str = "recon", job_id: str = "catch-up") -> CatchUpReport:
    """Run every owed date, oldest first; stop between runs when ``stop`` is set or the store is busy."""
    channels = [config.channel(c) for c in channel_ids] if channel_ids else list(config.channels)
    report = CatchUpReport()
    try:
        with store_lock(config.store_path, f"recon schedule: {job_id}"), open_store(config, write=True) as con:
            decisions = owed(con, config, now, channels)
            for item in decisions:
                if item.action == "give_up":
                    record_job_run(con, job_id, item.channel, item.business_date, now, "gave_up", None, item.reason)
    except LockBusy as exc:
        report.busy = str(exc)
        log.info("%s: %s; trying again at the next check", job_id, exc, extra={"job": job_id})
        return report
    report.gave_up = [o for o in decisions if o.action == "give_up"]
    report.waiting = [o for o in decisions if o.action == "wait"]
    for item in report.gave_up:
        log.warning("%s: gave up on %s %s: %s", job_id, item.channel, item.business_date, item.reason)
        send_notice(config, bill_missing(config, item))
    for item in (o for o in decisions if o.action == "run"):
        if stop is not None and stop.is_set():
            report.stopped = True
            break
        if not _run_one(config, item, now, actor, job_id, report):
            break
    log.info("%s: ran %d, failed %d, waiting %d, gave up %d%s", job_id, len(report.ran), len(report.failed),
             len(report.waiting), len(report.gave_up), " (stopped)" if report.stopped else "",
             extra={"job": job_id, "ran": len(report.ran), "stopped": report.stopped, "busy": bool(report.busy)})
    return report


def _run_one(config: Config, item: Owed, now: datetime, actor: str, job_id: str, report: CatchUpReport) -> bool:
    """Reconcile one owed date; False when the store is busy (the rest waits for the next check)."""
    channel = config.channel(item.channel)

    def still_owed(con: duckdb.DuckDBPyConnection) -> bool:
        state = date_states(con, channel.id, item.business_date, item.business_date).get(item.business_date)
        again = decide(config, channel, item.business_date, state or DateState(), now)
        return again is not None and again.action == "run"

    def record(con: duckdb.DuckDBPyConnection, summary: RunSummary) -> None:
        outcome = "incomplete" if channel.id in summary.incomplete_channels else "succeeded"
        errors = "; ".join(str(f.error) for f in summary.fetch_failed)[:500] or None
        record_job_run(con, job_id, channel.id, item.business_date, now, outcome, summary.run_id,
                       errors or item.reason)

    log.info("%s: reconciling %s %s (%s)", job_id, channel.id, item.business_date, item.reason,
             extra={"job": job_id, "channel": channel.id, "business_date": item.business_date.isoformat()})
    try:
        done = reconcile_when(still_owed, record, config, item.business_date, [channel.id],
                              f"recon schedule: {job_id} {channel.id} {item.business_date}",
                              apply=config.repair.auto_repair, actor=actor)
    except LockBusy as exc:
        report.busy = str(exc)
        return False
    except ReconError as exc:
        # The run is recorded failed in the runs table; the date is tried again after the backoff.
        report.failed.append((channel.id, item.business_date, str(exc)))
        log.error("%s: %s %s failed: %s", job_id, channel.id, item.business_date, exc)
        try:
            with store_lock(config.store_path, f"recon schedule: {job_id}"), open_store(config, write=True) as con:
                record_job_run(con, job_id, channel.id, item.business_date, now, "failed", None, str(exc)[:500])
        except ReconError:
            pass  # the runs table still counts the attempt
        return True
    if done is None:
        log.info("%s: %s %s was reconciled meanwhile by another process", job_id, channel.id, item.business_date)
        return True
    summary, _ = done
    outcome = "incomplete" if channel.id in summary.incomplete_channels else "succeeded"
    report.ran.append((channel.id, item.business_date, summary.run_id, outcome))
    report.needs_person = max(report.needs_person, summary.needs_person)
    return True


def bill_missing(config: Config, item: Owed) -> Notice:
    en = config.reports.language == "en"
    day = item.business_date.isoformat()
    if en:
        title = f"recon: {item.channel}'s records of {day} are still incomplete"
        body = [item.reason, "Its orders wait as pending; fetch or import the statement, then `recon run --date "
                f"{day} --channel {item.channel}`."]
    else:
        title = f"对账：{item.channel} 渠道 {day} 的账单仍未取得"
        body = [f"已尝试 {item.attempts} 次，超过截止时间", f"该日订单保持待定；请取得或导入账单后运行 recon run --date {day} "
                f"--channel {item.channel}"]
    facts = {"channel": item.channel, "business_date": day, "attempts": item.attempts}
    return Notice("bill_missing", config.reports.language, title, body, facts)
