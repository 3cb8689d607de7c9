"""The job body behind ``recon run`` (and, later, the scheduler): lock, reconcile a date, write reports."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from recon.config import Config
from recon.fetching import fetch_channel
from recon.repair.run import repair
from recon.repair.shop import open_repairer
from recon.lock import store_lock
from recon.pipeline import RunSummary, count_needing_person, run
from recon.store import open_store
from reports import RENDERERS, ReportData, load_report
from reports.alerts import send_alerts


def reconcile(config: Config, day: date, channel_ids: list[str] | None, command: str,
              formats: list[str] | None = None, out_dir: Path | None = None,
              fetch: bool = True, apply: bool = False, actor: str = "recon") -> tuple[RunSummary, ReportData]:
    """Fetch, reconcile ``day`` while holding the store lock, then write the configured reports.

    A channel whose fetch fails is reconciled with what the store holds; its date stays incomplete
    (its orders wait as pending) and the failure is in ``summary.fetch``.
    """
    with store_lock(config.store_path, command), open_store(config, write=True) as con:
        chosen = [config.channel(c) for c in channel_ids] if channel_ids else list(config.channels)
        fetched = [fetch_channel(con, config, ch, day) for ch in chosen] if fetch else []
        summary = run(con, config, day, channel_ids, command)
        summary.fetch = fetched
        if apply:
            # Plan → act before the reports, so the workbook shows what was repaired.
            report = repair(con, config, open_repairer(config), None, True, actor)
            summary.repair_report = report
            summary.repairs = report.counts()
            summary.needs_person = count_needing_person(con, summary.channels)
        data = load_report(con, None, summary.run_id, config.shop.zone)
    written = write_reports(config, data, formats, out_dir)
    summary.reports = [str(p) for p in written]
    # After the lock is released: a slow webhook never holds the store. send_alerts never raises.
    summary.alerts = send_alerts(config, data, written)
    return summary, data


def write_reports(config: Config, data: ReportData, formats: list[str] | None = None,
                  out_dir: Path | None = None, lang: str | None = None) -> list[Path]:
    target = out_dir or config.resolve(config.reports.out_dir)
    language = lang or config.reports.language
    chosen = config.reports.formats if formats is None else formats
    return [path for f in chosen for path in RENDERERS[f](data, target, language)]
