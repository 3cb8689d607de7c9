"""``recon repair`` and ``recon redeliver``: plan, then act only with --apply (DESIGN §6)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from recon.cli.common import EXIT_FAILED, EXIT_NEEDS_PERSON, actor, handled, load, out, parse_date, print_json
from recon.errors import UsageError
from recon.lock import store_lock
from recon.money import money_str
from recon.repair.redeliver import redeliver
from recon.repair.run import RepairReport, channel_query, repair
from recon.repair.shop import open_repairer
from recon.store import open_store


def print_report(report: RepairReport) -> None:
    verb = "applying" if report.applied_run else "plan (dry run: nothing changes without --apply)"
    out.print(f"repairs — {verb}")
    for p in report.planned:
        out.print(f"  plan: {p.action} {p.order_no} ({p.channel}, {p.code}, {money_str(p.amount)}) "
                  f"key {p.key[:12]}…")
    for s in report.skipped:
        out.print(f"  skip: {s.order_no} ({s.channel}, {s.code}): {s.reason}")
    for o in report.settled + report.outcomes:
        out.print(f"  {o.state}: {o.action} {o.order_no}: {o.detail}")
    counts = report.counts()
    out.print(f"planned {counts['planned']}, applied {counts['applied']}, skipped {counts['skipped']}, "
              f"failed {counts['failed']}")


def exit_for(report: RepairReport) -> None:
    counts = report.counts()
    if counts["failed"]:
        raise typer.Exit(EXIT_FAILED)
    if counts["skipped"] or (counts["planned"] and not report.applied_run):
        raise typer.Exit(EXIT_NEEDS_PERSON)


@handled
def repair_command(
    ctx: typer.Context,
    date_: Annotated[str | None, typer.Option("--date", help="only exceptions of this business date")] = None,
    apply: Annotated[bool, typer.Option("--apply", help="act; without it the plan is printed")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Plan the safe repairs of open missing_callback / paid_not_delivered exceptions; --apply acts.

    Exit 0 when everything planned was applied (or nothing was due), 3 when something waits for a
    person (or for --apply), 1 when a repair failed.
    """
    config = load(ctx)
    repairer = open_repairer(config)
    with store_lock(config.store_path), open_store(config, write=True) as con:
        report = repair(con, config, repairer, parse_date(date_), apply, actor())
    if json_out:
        print_json(report.to_json())
    else:
        print_report(report)
    exit_for(report)


@handled
def redeliver_command(
    ctx: typer.Context,
    order_no: Annotated[str, typer.Argument(help="the shop's order number")],
    force: Annotated[bool, typer.Option("--force", help="lift the amount cap and the re-query rule")] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="why (required with --force; audited)")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Redeliver one order: resend the same goods, or complete and deliver a paid order.

    A delivered order gets its own cards again (never new ones); a paid but pending order is
    completed and delivered; an out-of-stock (status 6) order is delivered after restock.
    """
    if force and not (reason and reason.strip()):
        raise UsageError("--force needs --reason saying why (it is kept in the repair journal)")
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("redeliver changes the shop: confirm with --yes when not at a terminal")
        typer.confirm(f"Redeliver order {order_no}?", abort=True)
    config = load(ctx)
    repairer = open_repairer(config)
    with store_lock(config.store_path), open_store(config, write=True) as con:
        outcome = redeliver(con, repairer, order_no, channel_query(config), actor(), force, reason)
    if json_out:
        print_json({"order_no": outcome.order_no, "action": outcome.action, "state": outcome.state,
                    "detail": outcome.detail, "cards_delivered": len(outcome.cards)})
    else:
        out.print(f"{outcome.state}: {outcome.action} {outcome.order_no}: {outcome.detail}")
    if outcome.state in ("failed", "unknown"):
        raise typer.Exit(EXIT_FAILED)
    if outcome.state == "skipped":
        raise typer.Exit(EXIT_NEEDS_PERSON)
