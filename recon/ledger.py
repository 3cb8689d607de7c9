"""The exception ledger: one row per (channel, key, code) across runs; every change is an event."""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb

from recon.errors import NotFound, UsageError
from recon.taxonomy import CODES, EXCEPTION_CODES

SYSTEM_ACTOR = "recon"


def update_from_run(con: duckdb.DuckDBPyConnection, run_id: int, lang: str = "en") -> dict[str, int]:
    """Fold one run's results into the ledger; return how many exceptions were opened, reopened, closed."""
    now = datetime.now(UTC)
    con.execute("CREATE OR REPLACE TEMP TABLE code_action (code VARCHAR, action VARCHAR)")
    con.executemany("INSERT INTO code_action VALUES (?, ?)",
                    [(c.code, c.action_en if lang == "en" else c.action_zh) for c in CODES])
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE run_findings AS
        SELECT r.*, a.action FROM results r JOIN code_action a USING (code)
        WHERE r.run_id = $run AND r.code IN (SELECT unnest($codes))
        """,
        {"run": run_id, "codes": list(EXCEPTION_CODES)},
    )
    params = {"run": run_id, "now": now, "system": SYSTEM_ACTOR}
    # Exceptions a run of a later business date has seen or settled: rerunning an older date must not
    # close them (a carried order found shop_only) nor reopen them (its pending, settled the day after).
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE later_verdict AS
        WITH cur AS (SELECT business_date FROM runs WHERE run_id = $run),
        seen AS (
            SELECT v.exception_id AS id, v.run_id FROM exception_events v WHERE v.run_id IS NOT NULL
            UNION ALL SELECT id, last_seen_run FROM exceptions
        )
        SELECT DISTINCT s.id FROM seen s JOIN runs r USING (run_id), cur
        WHERE r.business_date > cur.business_date
        """,
        {"run": run_id},
    )
    # A key seen again with another code (or matched) closes its open exceptions of other codes.
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE closing AS
        SELECT e.id, any_value(r.code) AS now_code FROM exceptions e
        JOIN results r ON r.run_id = $run AND r.channel = e.channel AND r.unit_key = e.key
        WHERE e.status = 'open' AND r.code <> e.code AND e.id NOT IN (SELECT id FROM later_verdict)
        GROUP BY e.id
        """,
        {"run": run_id},
    )
    # Found again after a repair, or after recon itself closed it: open once more.
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE reopening AS
        SELECT e.id FROM exceptions e JOIN run_findings f
          ON f.channel = e.channel AND f.unit_key = e.key AND f.code = e.code
        WHERE (e.status = 'repaired' OR (e.status = 'resolved' AND e.closed_by = $system))
          AND e.id NOT IN (SELECT id FROM later_verdict)
        """,
        {"system": SYSTEM_ACTOR},
    )
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE opening AS
        SELECT nextval('exception_ids') AS id, f.* FROM (
            SELECT * FROM run_findings f
            WHERE NOT EXISTS (SELECT 1 FROM exceptions e
                              WHERE e.channel = f.channel AND e.key = f.unit_key AND e.code = f.code)
            ORDER BY f.channel, f.priority, f.unit_key
        ) f
        """
    )
    con.execute(
        """
        UPDATE exceptions e SET last_seen_run = $run, last_seen = $now, shop_amount = f.shop_amount,
               channel_amount = f.channel_amount, currency = coalesce(f.currency, f.shop_currency),
               auto_repairable = f.auto_repairable, detail = f.detail, channel_txn_id = f.channel_txn_id,
               shop_status = f.shop_status, shop_channel_txn_id = f.shop_channel_txn_id, occurred_at = f.occurred_at
        FROM run_findings f
        WHERE f.channel = e.channel AND f.unit_key = e.key AND f.code = e.code
        """,
        {"run": run_id, "now": now},
    )
    con.execute(
        """
        INSERT INTO exceptions
        SELECT id, channel, unit_key, code, 'open', priority, order_no, channel_txn_id, shop_amount, channel_amount,
               coalesce(currency, shop_currency), business_date, $run, $run, $now, $now, auto_repairable, action,
               detail, NULL, shop_status, shop_channel_txn_id, occurred_at
        FROM opening
        """,
        {"run": run_id, "now": now},
    )
    con.execute("UPDATE exceptions SET status = 'open', closed_by = NULL WHERE id IN (SELECT id FROM reopening)")
    con.execute("UPDATE exceptions SET status = 'resolved', closed_by = $system WHERE id IN (SELECT id FROM closing)",
                {"system": SYSTEM_ACTOR})
    con.execute(
        """
        INSERT INTO exception_events
        SELECT nextval('event_ids'), id, $now, $system, action, $run, note FROM (
            SELECT id, 'opened' AS action, NULL AS note FROM opening
            UNION ALL SELECT id, 'reopened', 'found again by a later run' FROM reopening
            UNION ALL SELECT id, 'auto_closed', format('run {} found it {}', $run, now_code) FROM closing
            ORDER BY id
        )
        """,
        params,
    )
    counts = con.execute(
        "SELECT (SELECT count(*) FROM opening), (SELECT count(*) FROM reopening), (SELECT count(*) FROM closing)"
    ).fetchone()
    assert counts is not None
    return {"opened": int(counts[0]), "reopened": int(counts[1]), "closed": int(counts[2])}


def add_event(con: duckdb.DuckDBPyConnection, exception_id: int, actor: str, action: str, run_id: int | None,
              note: str | None, at: datetime | None = None) -> None:
    con.execute(
        "INSERT INTO exception_events VALUES (nextval('event_ids'), ?, ?, ?, ?, ?, ?)",
        [exception_id, at or datetime.now(UTC), actor, action, run_id, note],
    )


def close_by_person(con: duckdb.DuckDBPyConnection, exception_id: int, status: str, actor: str, note: str) -> None:
    """A person resolves or ignores an exception; the note is required and kept as an event."""
    if not note or not note.strip():
        raise UsageError(f"{status} needs a note saying why (--note TEXT)")
    row = con.execute("SELECT status FROM exceptions WHERE id = ?", [exception_id]).fetchone()
    if row is None:
        raise NotFound(f"no exception with id {exception_id}")
    con.execute("BEGIN")
    try:
        con.execute("UPDATE exceptions SET status = ?, closed_by = ? WHERE id = ?", [status, actor, exception_id])
        add_event(con, exception_id, actor, status, None, note.strip())
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
