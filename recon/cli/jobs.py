"""``recon schedule`` (the daemon, or ``--once`` from cron), ``recon jobs`` and ``recon sweep``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from jobs.catch_up import CatchUpReport, catch_up
from jobs.daemon import Daemon
from jobs.signals import interruptible
from jobs.status import jobs_status
from jobs.sweep import SweepReport, sweep
from recon.cli.common import (EXIT_FAILED, EXIT_LOCKED, EXIT_NEEDS_PERSON, actor, handled, load, out,
                              print_json)
from recon.errors import StoreError
from recon.logs import setup_logging
from recon.store import open_store


@handled
def schedule_command(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="run what is owed now and exit (for a crontab line)")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="with --once: one JSON object")] = False,
) -> None:
    """Keep the books: nightly runs per channel, retries of late bills, the intraday sweep.

    Without --once it runs until SIGTERM/SIGINT (the step in progress finishes first). With --once
    it reconciles every owed (channel, date) once and exits: 0 done, 3 a person is needed, 1 a run
    failed, 75 the store is busy (try at the next cron tick).
    """
    config = load(ctx)
    if not once:
        # The daemon always logs its steps (journald, a log shipper); JSON when asked.
        setup_logging(bool((ctx.find_root().obj or {}).get("log_json")), verbose=True)
        Daemon(config).run()
        return
    with interruptible():
        report = catch_up(config, datetime.now(UTC), actor=actor(), job_id="schedule --once")
    if json_out:
        print_json(report.to_json())
    else:
        print_catch_up(report)
    if report.busy:
        raise typer.Exit(EXIT_LOCKED)
    if report.failed:
        raise typer.Exit(EXIT_FAILED)
    if report.needs_person or report.gave_up:
        raise typer.Exit(EXIT_NEEDS_PERSON)


def print_catch_up(report: CatchUpReport) -> None:
    for channel, day, run_id, outcome in report.ran:
        out.print(f"{channel} {day}: run #{run_id} {outcome}")
    for channel, day, error in report.failed:
        out.print(f"{channel} {day}: failed: {error}")
    for item in report.gave_up:
        out.print(f"{item.channel} {item.business_date}: gave up: {item.reason}")
    for item in report.waiting:
        out.print(f"{item.channel} {item.business_date}: waiting until {item.not_before:%Y-%m-%d %H:%M %Z} "
                  f"({item.reason})")
    if report.busy:
        out.print(f"store busy: {report.busy}")
    if not (report.ran or report.failed or report.gave_up or report.waiting or report.busy):
        out.print("nothing owed: every channel's dates are reconciled")


@handled
def jobs_command(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """Each scheduled job, its trigger, next fire time, last run and outcome; dates still owed."""
    config = load(ctx)
    now = datetime.now(UTC)
    try:
        with open_store(config, write=False) as con:
            status = jobs_status(con, config, now)
    except StoreError:
        if config.store_path.exists():
            raise
        status = jobs_status(None, config, now)
    if json_out:
        print_json(status)
        return
    daemon = status["daemon"]
    out.print(f"daemon: running, PID {daemon['pid']}, since {daemon['started_at']}" if daemon["running"]
              else "daemon: not running")
    for job in status["jobs"]:
        last = job["last"]
        did = (f"last {last.get('outcome')} at {last.get('finished_at') or last.get('started_at')}"
               + (f" ({last['business_date']})" if last.get("business_date") else "") if last else "never ran")
        out.print(f"{job['id']:<20} {job['trigger']:<36} next {job['next_fire']}  {did}")
    for item in status["owed"]:
        out.print(f"owed: {item['channel']} {item['business_date']}: {item['action']} ({item['reason']})")


@handled
def sweep_command(
    ctx: typer.Context,
    apply: Annotated[bool, typer.Option("--apply", help="repair the safe ones (else: find and record only)")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """One intraday pass: ask the channel about orders still unpaid minutes after creation.

    Paid ones become missing_callback exceptions at once; with --apply (or repair.auto_repair) the
    safe ones are repaired (DESIGN §6). Exit 0 nothing needs a person, 3 something does, 75 busy.
    """
    config = load(ctx)
    with interruptible():
        report = sweep(config, datetime.now(UTC), apply=apply or config.repair.auto_repair, actor=actor())
    if json_out:
        print_json(report.to_json())
    else:
        print_sweep(report)
    if any(o.outcome in ("needs_person", "planned") for o in report.asked):
        raise typer.Exit(EXIT_NEEDS_PERSON)


def print_sweep(report: SweepReport) -> None:
    out.print(f"sweep: {report.candidates} unpaid order(s) in the window, asked {len(report.asked)}, "
              f"paid {len(report.paid)}")
    for o in report.paid:
        took = f", {o.recovered_after:.0f} s after the payment" if o.recovered_after is not None else ""
        out.print(f"  {o.outcome}: {o.channel} {o.order_no}{took}: {o.detail}")
    errors = [o for o in report.asked if o.answer == "error"]
    for o in errors[:10]:
        out.print(f"  could not ask {o.channel} about {o.order_no}: {o.detail}")
