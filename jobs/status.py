"""What ``recon jobs`` shows: each job, its trigger, next fire, last run and outcome; owed dates; the daemon."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

from jobs.catch_up import owed
from jobs.daemon import job_specs
from jobs.journal import last_job_runs
from recon.config import Config
from recon.lock import daemon_lock_path, is_held, read_holder


def _iso(value: Any) -> Any:
    """Dates and times as ISO text (the page and the JSON show them as they are)."""
    return value.isoformat() if hasattr(value, "isoformat") else value


def last_reconcile_runs(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    """channel → its newest reconciliation run (by hand, cron or daemon)."""
    rows = con.execute(
        """
        SELECT ch, run_id, business_date, status, started_at, finished_at, list_contains(coalesce(incomplete_channels,
               []), ch) AS incomplete, error, command
        FROM (SELECT unnest(channels) AS ch, * FROM runs WHERE kind = 'reconcile')
        QUALIFY row_number() OVER (PARTITION BY ch ORDER BY run_id DESC) = 1
        """
    ).fetchall()
    keys = ("run_id", "business_date", "status", "started_at", "finished_at", "incomplete", "error", "command")
    return {r[0]: {k: _iso(v) for k, v in zip(keys, r[1:], strict=True)} for r in rows}


def jobs_status(con: duckdb.DuckDBPyConnection | None, config: Config, now: datetime) -> dict[str, Any]:
    """The ``recon jobs --json`` object; ``con`` None when there is no store yet."""
    runs = last_reconcile_runs(con) if con is not None else {}
    journal = last_job_runs(con) if con is not None else {}
    jobs = []
    for spec in job_specs(config):
        following = spec.trigger.get_next_fire_time(None, now)
        last: dict[str, Any] | None = None
        if spec.channel is not None and spec.channel in runs:
            last = runs[spec.channel]
            last["outcome"] = ("incomplete" if last["incomplete"] and last["status"] == "succeeded"
                               else last["status"])
        elif spec.id in journal:
            last = {k: _iso(v) for k, v in journal[spec.id].items() if k != "job_id"}
        jobs.append({"id": spec.id, "kind": spec.kind, "channel": spec.channel, "trigger": spec.description,
                     "next_fire": following.isoformat() if following else None, "last": last})
    lock = daemon_lock_path(config.store_path)
    running = is_held(lock)
    holder = read_holder(lock) if running else {}
    return {
        "now": now.isoformat(),
        "daemon": {"running": running, "pid": holder.get("pid"), "started_at": holder.get("started_at")},
        "jobs": jobs,
        "owed": [o.to_json() for o in owed(con, config, now)] if con is not None else [],
    }
