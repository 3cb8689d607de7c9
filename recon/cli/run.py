"""``recon run`` and ``recon report``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jobs.reconcile import reconcile, write_reports
from jobs.signals import interruptible
from recon.cli.common import EXIT_FAILED, EXIT_NEEDS_PERSON, actor, handled, load, out, parse_date, print_json
from recon.cli.fetch import print_fetch
from recon.cli.summary import print_summary
from recon.cli.repair import print_report
from recon.errors import UsageError
from recon.store import open_store
from reports import RENDERERS, load_report, needs_results


@handled
def run_command(
    ctx: typer.Context,
    date_: Annotated[str, typer.Option("--date", help="business date, e.g. 2026-11-20")],
    channel: Annotated[list[str] | None, typer.Option("--channel", "-c", help="only these channel ids")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="one JSON object (DESIGN §7)")] = False,
    no_fetch: Annotated[bool, typer.Option("--no-fetch", help="use only what the store already holds")] = False,
    apply: Annotated[bool, typer.Option("--apply", help="also apply the safe repairs (DESIGN §6)")] = False,
) -> None:
    """Fetch, reconcile a business date, update the ledger, write reports.

    Exit 0 when nothing open needs a person, 3 when something does, 1 when a channel could not be
    fetched (the rest is reconciled and written all the same).
    """
    config = load(ctx)
    day = parse_date(date_)
    assert day is not None
    for ch in channel or []:
        config.channel(ch)
    with interruptible():
        summary, data = reconcile(config, day, channel or None, f"recon run --date {day}", fetch=not no_fetch,
                                  apply=apply or config.repair.auto_repair, actor=actor())
    repaired = summary.repair_report
    if json_out:
        print_json(summary.to_json())
    else:
        print_fetch(summary.fetch)
        print_summary(summary, data, config.reports.language)
        if repaired is not None:
            print_report(repaired)
    if summary.fetch_failed:
        raise typer.Exit(EXIT_FAILED)
    if summary.needs_person:
        raise typer.Exit(EXIT_NEEDS_PERSON)


@handled
def report_command(
    ctx: typer.Context,
    date_: Annotated[str, typer.Option("--date", help="business date of a finished run")],
    formats: Annotated[str | None, typer.Option("--format", help="comma-separated: xlsx,html,csv,parquet")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="folder for the reports")] = None,
    lang: Annotated[str | None, typer.Option("--lang", help="zh-CN or en")] = None,
) -> None:
    """Render the reports of the newest finished run of a date."""
    config = load(ctx)
    day = parse_date(date_)
    chosen = [f.strip() for f in formats.split(",") if f.strip()] if formats else None
    unknown = [f for f in chosen or [] if f not in RENDERERS]
    if unknown:
        raise UsageError(f"--format: unknown {', '.join(unknown)} (available: {', '.join(RENDERERS)})")
    if lang not in (None, "zh-CN", "en"):
        raise UsageError(f"--lang: {lang!r} (expected zh-CN or en)")
    with open_store(config, write=False) as con:
        data = load_report(con, day, None, config.shop.zone,
                           needs_results(config.reports.formats if chosen is None else chosen))
    for path in write_reports(config, data, chosen, out_dir, lang):
        out.print(f"report: {path}")

