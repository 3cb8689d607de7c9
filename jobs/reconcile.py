"""The job body behind ``recon run`` and the scheduler: lock, reconcile a date, write reports, alert."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import duckdb

from recon.config import Config
from recon.fetching import fetch_channel
from recon.lock import store_lock
from recon.pipeline import RunSummary, count_needing_person, finish_run, run
from recon.progress import steps
from recon.repair.run import repair
from recon.repair.shop import open_repairer
from recon.store import open_store, publish_snapshot
from reports import RENDERERS, ReportData, load_report, needs_results
from reports.alerts import send_alerts

log = logging.getLogger("recon.jobs")

Guard = Callable[[duckdb.DuckDBPyConnection], bool]
After = Callable[[duckdb.DuckDBPyConnection, RunSummary], None]


def reconcile(config: Config, day: date, channel_ids: list[str] | None, command: str,
              formats: list[str] | None = None, out_dir: Path | None = None,
              fetch: bool = True, apply: bool = False, actor: str = "recon") -> tuple[RunSummary, ReportData]:
    """Fetch, reconcile ``day`` while holding the store lock, then write the configured reports.

    A channel whose fetch fails is reconciled with what the store holds; its date stays incomplete
    (its orders wait as pending) and the failure is in ``summary.fetch``.
    """
    done = reconcile_when(None, None, config, day, channel_ids, command, formats, out_dir, fetch, apply, actor)
    assert done is not None
    return done


def reconcile_when(guard: Guard | None, after: After | None, config: Config, day: date,
                   channel_ids: list[str] | None, command: str, formats: list[str] | None = None,
                   out_dir: Path | None = None, fetch: bool = True, apply: bool = False,
                   actor: str = "recon") -> tuple[RunSummary, ReportData] | None:
    """``reconcile``, when ``guard`` (asked under the lock: the scheduler's exactly-once check) agrees.

    ``after`` records the outcome in the same locked session. None when the guard said no.
    """
    # The reports are written on a thread while the store is copied for readers (the snapshot: at ten million
    # orders a day a gigabyte's copy and its fsync), and the lock is let go once the copy is published.
    writer = ThreadPoolExecutor(1, thread_name_prefix="reports")
    try:
        with store_lock(config.store_path, command):
            done = _run_in_store(guard, after, config, day, channel_ids, command, formats, fetch, apply, actor)
            if done is None:
                return None
            summary, data = done
            reports = writer.submit(write_reports, config, data, formats, out_dir)
            publish_snapshot(config)
        log.info("run %s of %s: %s", summary.run_id, day, summary.counts,
                 extra={"run_id": summary.run_id, "business_date": day.isoformat(), "channels": summary.channels,
                        "incomplete": summary.incomplete_channels, "needs_person": summary.needs_person})
        written = reports.result()
    finally:
        writer.shutdown(wait=True, cancel_futures=True)
    summary.reports = [str(p) for p in written]
    # After the lock is released: a slow webhook never holds the store. send_alerts never raises.
    summary.alerts = send_alerts(config, data, written)
    return summary, data


def _run_in_store(guard: Guard | None, after: After | None, config: Config, day: date,
                  channel_ids: list[str] | None, command: str, formats: list[str] | None, fetch: bool,
                  apply: bool, actor: str) -> tuple[RunSummary, ReportData] | None:
    """Fetch, run (and repair) ``day`` in the store, then read what its reports show; call holding the lock."""
    with open_store(config, write=True) as con:
        if guard is not None and not guard(con):
            return None
        chosen = [config.channel(c) for c in channel_ids] if channel_ids else list(config.channels)
        fetched = [fetch_channel(con, config, ch, day) for ch in steps(chosen, f"fetch {day}")] if fetch else []
        summary = run(con, config, day, channel_ids, command, finish=not apply)
        summary.fetch = fetched
        if apply:
            # Plan → act before the reports, so the workbook shows what was repaired. The run is
            # succeeded only once its repairs are done: killed in between, it is marked aborted.
            report = repair(con, config, open_repairer(config), None, True, actor)
            summary.repair_report = report
            summary.repairs = report.counts()
            summary.needs_person = count_needing_person(con, summary.channels)
            finish_run(con, summary.run_id)
        if after is not None:
            after(con, summary)
        chosen_formats = config.reports.formats if formats is None else formats
        return summary, load_report(con, None, summary.run_id, config.shop.zone, needs_results(chosen_formats))


def write_reports(config: Config, data: ReportData, formats: list[str] | None = None,
                  out_dir: Path | None = None, lang: str | None = None) -> list[Path]:
    target = out_dir or config.resolve(config.reports.out_dir)
    language = lang or config.reports.language
    chosen = config.reports.formats if formats is None else formats
    return [path for f in chosen for path in RENDERERS[f](data, target, language)]
