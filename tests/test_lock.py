"""One writer at a time; a run left 'running' by a killed process is recorded as aborted."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from recon.errors import LockBusy
from recon.lock import store_lock
from tests.scenario import DAY, Scenario


def test_second_writer_is_refused_with_the_holders_pid_and_start(scenario: Scenario) -> None:
    with store_lock(scenario.config.store_path, "recon run --date 2026-11-20"):
        with pytest.raises(LockBusy) as caught:
            scenario.run()
    assert caught.value.exit_code == 75
    assert "recon run --date 2026-11-20" in str(caught.value) and "started 20" in str(caught.value)


def test_a_run_left_running_by_a_killed_process_is_marked_aborted(scenario: Scenario) -> None:
    scenario.order("O1", "10.00", trade_no="T1")
    scenario.import_(scenario.statement([{"txn": "T1", "order": "O1", "amount": "10.00"}]))
    with scenario.store() as con:
        con.execute("INSERT INTO runs (run_id, business_date, channels, status, command, pid, host, started_at) "
                    "VALUES (nextval('run_ids'), ?, ['pay'], 'running', 'recon run', 4242, 'h', ?)",
                    [DAY, datetime.now(UTC)])
    summary = scenario.run()
    runs = scenario.query("SELECT run_id, status FROM runs ORDER BY run_id")
    assert [r["status"] for r in runs] == ["aborted", "succeeded"]
    assert summary.counts == {"matched": 1}
