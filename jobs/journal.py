"""The scheduler's journal (``job_runs``): what each job did, for ``recon jobs`` and its give-ups."""

from __future__ import annotations

from datetime import UTC, date, datetime

import duckdb


def record_job_run(con: duckdb.DuckDBPyConnection, job_id: str, channel: str | None, business_date: date | None,
                   started_at: datetime, outcome: str, run_id: int | None, detail: str | None) -> None:
    con.execute(
        "INSERT INTO job_runs VALUES (nextval('job_run_ids'), ?, ?, ?, ?, ?, ?, ?, ?)",
        [job_id, channel, business_date, started_at, datetime.now(UTC), outcome, run_id, detail],
    )


def last_job_runs(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, object]]:
    """job id → its newest journal entry."""
    rows = con.execute(
        """
        SELECT job_id, channel, business_date, started_at, finished_at, outcome, run_id, detail
        FROM job_runs QUALIFY row_number() OVER (PARTITION BY job_id ORDER BY job_run_id DESC) = 1
        """
    ).fetchall()
    keys = ("job_id", "channel", "business_date", "started_at", "finished_at", "outcome", "run_id", "detail")
    return {r[0]: dict(zip(keys, r, strict=True)) for r in rows}
