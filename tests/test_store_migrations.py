"""A store written by an older recon opens with a newer one: migrated in place, nothing lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest

from recon.migrations import MIGRATIONS
from recon.store import open_store, schema_version
from reports import load_report
from tests.scenario import DAY, Scenario


def _store_at(path: Path, version: int) -> None:
    """A store as a recon that knew migrations up to ``version`` left it."""
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ)")
    for number, sql in MIGRATIONS:
        if number <= version:
            con.execute(sql)
            con.execute("INSERT INTO schema_version VALUES (?, now())", [number])
    con.close()


def test_a_version_2_store_keeps_its_channel_rows_and_imports_as_before(scenario: Scenario) -> None:
    """Migration 3 rebuilds channel_txn without its indexes; the import still stores a record once."""
    config = scenario.config
    _store_at(config.store_path, 2)
    con = duckdb.connect(str(config.store_path))
    con.execute("""
        SELECT nextval('import_ids'), nextval('txn_ids');
        INSERT INTO imports VALUES (1, 'pay', 'sha', 'old.csv', 'archive/old', 10, 'file', 1, 1, 0, NULL, NULL,
            NULL, now());
        INSERT INTO channel_txn VALUES (1, 'pay', 'payment', 'B1', 'T1', NULL, 12.30, 'CNY', NULL, 'success',
            TIMESTAMPTZ '2026-11-20 02:00:30+00', DATE '2026-11-20', NULL, 'sha', 2, 1, 'payment|T1|', NULL);
    """)
    con.close()
    with scenario.store() as store:
        assert schema_version(store) == MIGRATIONS[-1][0]
        [(indexed,)] = store.execute(
            "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'channel_txn' "
            "AND constraint_type IN ('UNIQUE', 'PRIMARY KEY')"
        ).fetchall()
        assert indexed == 0
    outcome = scenario.import_(scenario.statement([{"txn": "T1", "order": "B1", "amount": "12.30"},
                                                   {"txn": "T2", "order": "B2", "amount": "5.00"}]))
    assert (outcome.rows_new, outcome.rows_duplicate) == (1, 1)
    assert outcome.duplicates == [(2, "old.csv:2")]
    rows = scenario.query("SELECT txn_id, order_no, amount FROM channel_txn ORDER BY txn_id")
    assert [(r["order_no"], str(r["amount"])) for r in rows] == [("B1", "12.300000"), ("B2", "5.000000")]
    assert rows[0]["txn_id"] == 1 and rows[1]["txn_id"] > 1





def test_a_version_3_store_reports_its_earlier_runs_as_before(scenario: Scenario) -> None:
    """Migration 4 keeps each run's counts beside its results, and on each exception what its sheet shows of the
    run that last saw it. A store's earlier runs and exceptions get them from their result rows, so their
    reports, the trend and the console's runs page show what they showed before."""
    scenario.order("B1", "10.00")
    scenario.order("B2", "20.00")
    scenario.order("B3", "30.00", status=1)
    scenario.import_(scenario.statement([{"txn": "T1", "order": "B1", "amount": "10.00"},
                                         {"txn": "T3", "order": "B3", "amount": "30.00"},
                                         {"txn": "T9", "order": "NOPE", "amount": "7.50"}]))
    run = scenario.run()
    with scenario.store(write=False) as con:
        before = load_report(con, DAY, None, "Asia/Shanghai")
    # As recon of schema version 3 left it: results, no counts.
    con = duckdb.connect(str(scenario.config.store_path))
    con.execute("DROP TABLE run_counts; DELETE FROM schema_version WHERE version = 4")
    for column in ("shop_status", "shop_channel_txn_id", "occurred_at"):
        con.execute(f"ALTER TABLE exceptions DROP COLUMN {column}")
    con.close()
    with scenario.store() as store:  # a writing open migrates
        assert schema_version(store) == 4
        counts = store.execute("SELECT channel, code, currency, results, amount, difference FROM run_counts "
                               "WHERE run_id = ? ORDER BY code", [run.run_id]).fetchall()
        after = load_report(store, DAY, None, "Asia/Shanghai")
    assert [(code, n, str(amount), str(diff)) for _, code, _, n, amount, diff in counts] == [
        ("channel_only", 1, "7.500000", "7.500000"), ("matched", 1, "10.000000", "0.000000"),
        ("missing_callback", 1, "30.000000", "30.000000"), ("shop_only", 1, "20.000000", "-20.000000")]
    assert {currency for _, _, currency, *_ in counts} == {"CNY"}
    assert after.counts == before.counts and after.currencies == before.currencies
    assert after.trend.to_dicts() == before.trend.to_dicts() and after.match_rate == before.match_rate
    assert after.exceptions.equals(before.exceptions)
    shown = after.exceptions.filter(pl.col("order_no") == "B3").row(0, named=True)
    assert (shown["shop_status"], str(shown["occurred_at"].date())) == ("1", str(DAY))


# Run apart from pytest: DuckDB's Python client leaves the progress bar off under pytest, on everywhere else.
PROGRESS_SETTING = """\
import sys
from pathlib import Path
from recon.config import load_config
from recon.store import open_store
for write in (True, False):
    with open_store(load_config(Path(sys.argv[1])), write=write) as con:
        print(con.execute("SELECT current_setting('enable_progress_bar')").fetchall()[0][0])
"""


def test_the_store_never_draws_a_progress_bar(scenario: Scenario) -> None:
    """DuckDB draws a progress bar on stdout for a query over two seconds (at millions of rows, often): it
    would land inside ``recon run --json`` output. Every store connection, writing or reading, has it off."""
    done = subprocess.run([sys.executable, "-c", PROGRESS_SETTING, str(scenario.folder / "recon.toml")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


def test_a_new_store_is_created_and_a_table_it_lacks_is_never_a_python_variable(scenario: Scenario) -> None:
    """Opening finds a new store at version 0 and migrates it; afterwards a name the store does not hold is an
    error, not a frame of that name in the calling function (DuckDB's replacement scans)."""
    settlements = pl.DataFrame({"order_no": ["O1"]})  # noqa: F841  the name a mistaken query would pick up
    with scenario.store() as store:
        assert schema_version(store) == MIGRATIONS[-1][0]
        with pytest.raises(duckdb.CatalogException, match="settlements"):
            store.execute("SELECT * FROM settlements").fetchall()
    with scenario.store(write=False) as reader:
        assert schema_version(reader) == MIGRATIONS[-1][0]
