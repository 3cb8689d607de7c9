"""The readable run summary printed by ``recon run`` and ``recon demo``."""

from __future__ import annotations

from rich.table import Table

from recon.cli.common import out
from recon.pipeline import RunSummary
from recon.taxonomy import BY_CODE, label
from reports import ReportData


def print_summary(summary: RunSummary, data: ReportData, lang: str) -> None:
    table = Table(title=f"recon run #{summary.run_id} · {summary.business_date}", show_lines=False)
    for heading, justify in (("channel", "left"), ("code", "left"), ("", "left"), ("count", "right"),
                             ("amount", "right"), ("difference", "right")):
        table.add_column(heading, justify=justify, no_wrap=heading != "", overflow="fold")  # type: ignore[arg-type]
    for row in data.counts:
        code = row["code"]
        priority = BY_CODE[code].priority
        style = "red" if priority == 1 else "yellow" if priority in (2, 3) else None
        table.add_row(row["channel"], code, label(code, "zh-CN" if lang != "en" else "en"), str(row["count"]),
                      f"{row['amount']:.2f}", f"{row['difference']:.2f}", style=style)
    out.print(table)
    rate = data.match_rate
    out.print(f"match rate {rate * 100:.2f}%" if rate is not None else "match rate: nothing to match")
    if summary.incomplete_channels:
        out.print(f"records not all in yet for: {', '.join(summary.incomplete_channels)} (their orders wait as pending)")
    out.print(f"open exceptions: {summary.exceptions_open} ({summary.needs_person} need a person, "
              f"{summary.repairs['planned']} auto-repairable)")
    for path in summary.reports:
        out.print(f"report: {path}")
    for alert in summary.alerts:
        out.print(f"alert: {alert.target}: {alert.status}" + (f" ({alert.detail})" if not alert.ok else ""))
