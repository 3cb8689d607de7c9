"""Reports: the workbook opens with real types; hostile text from the data stays inert everywhere."""

from __future__ import annotations

import re
import sqlite3
import zipfile
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from openpyxl import load_workbook

from jobs.reconcile import reconcile, write_reports
from recon.lock import store_lock
from recon.store import open_store, snapshot_path
from reports import load_report
from recon.taxonomy import label
from tests.scenario import DAY, Scenario

HOSTILE = ['=HYPERLINK("http://x","c")', "+1+1", "-2+3", "@SUM(1)", "\t=1", "<script>alert(1)</script>"]


def test_hostile_order_numbers_are_inert_in_xlsx_and_escaped_in_html(scenario: Scenario, tmp_path: Path) -> None:
    rows = [{"txn": f"T{i}", "order": text, "amount": "5.00"} for i, text in enumerate(HOSTILE)]
    scenario.import_(scenario.statement(rows))
    summary = scenario.run()
    assert summary.counts == {"channel_only": len(HOSTILE)}
    with open_store(scenario.config, write=False) as con:
        data = load_report(con, DAY, None, "Asia/Shanghai")
    xlsx, html = write_reports(scenario.config, data, ["xlsx", "html"], tmp_path / "out", "en")
    with zipfile.ZipFile(xlsx) as archive:
        sheets = [archive.read(n).decode() for n in archive.namelist() if n.startswith("xl/worksheets/")]
    assert not any("<f>" in s for s in sheets)
    book = load_workbook(xlsx)
    sheet = book[label("channel_only", "en")]
    header = [c.value for c in sheet[1]]
    order_col = header.index("Order no")
    cells = [row[order_col] for row in sheet.iter_rows(min_row=2)]
    # statement cells lose their TAB padding on import (an Alipay quirk), so "\t=1" arrives as "=1"
    assert sorted(c.value for c in cells) == sorted(h.strip() for h in HOSTILE)
    assert all(c.data_type == "s" for c in cells)
    amount_col = header.index("Channel amount")
    amounts = [row[amount_col] for row in sheet.iter_rows(min_row=2)]
    assert all(c.data_type == "n" and Decimal(str(c.value)) == Decimal("5") for c in amounts)
    page = html.read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_failing_writer_leaves_the_previous_report(scenario: Scenario, tmp_path: Path) -> None:
    from reports.atomic import write_atomically

    folder = tmp_path / "reports"
    folder.mkdir()
    target = folder / "report.html"
    target.write_text("previous", encoding="utf-8")

    def broken(tmp: Path) -> None:
        tmp.write_text("half", encoding="utf-8")
        raise RuntimeError("disk full")

    try:
        write_atomically(target, broken)
    except RuntimeError:
        pass
    assert target.read_text(encoding="utf-8") == "previous"
    assert [p.name for p in folder.iterdir()] == ["report.html"]


def test_open_exceptions_are_listed_most_urgent_first_then_by_channel_code_and_key(scenario: Scenario) -> None:
    """The order finance reads the sheets in: priority 1 (shop only) first, then by channel, code and key, whatever
    day each was found on (the day before's channel-only money was found first)."""
    scenario.order("FILL", "1.00")
    scenario.import_(scenario.statement([
        {"txn": "TF", "order": "FILL", "amount": "1.00"},
        {"txn": "TC2", "order": "C2", "amount": "3.00"}, {"txn": "TC1", "order": "C1", "amount": "4.00"}]))
    scenario.run()
    day2 = DAY + timedelta(days=1)
    scenario.order("FILL2", "1.00", created=f"{day2} 08:00:00")
    for sn in ("S2", "S1", "M2", "M1"):  # S: paid in the shop, on no bill; M: the bill says another amount
        scenario.order(sn, "10.00", created=f"{day2} 08:00:00")
    scenario.import_(scenario.statement([
        {"txn": "TF2", "order": "FILL2", "amount": "1.00", "time": f"{day2} 09:00:00"},
        {"txn": "TM2", "order": "M2", "amount": "12.00", "time": f"{day2} 09:00:00"},
        {"txn": "TM1", "order": "M1", "amount": "11.00", "time": f"{day2} 09:00:00"}]))
    run = scenario.run(day2)
    with scenario.store(write=False) as con:
        data = load_report(con, None, run.run_id, "Asia/Shanghai", with_results=False)
    listed = [(r["priority"], r["code"], r["order_no"]) for r in data.exceptions.iter_rows(named=True)]
    assert listed == [(1, "shop_only", "S1"), (1, "shop_only", "S2"), (2, "amount_mismatch", "M1"),
                      (2, "amount_mismatch", "M2"), (3, "channel_only", "C1"), (3, "channel_only", "C2")]
    assert "key" not in data.exceptions.columns


class _LimitSeen:
    """A store connection that notes DuckDB's memory limit as each of the report's queries starts (the real
    connection underneath)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con, self.seen = con, []

    def _note(self, query: str) -> None:
        [(limit,)] = self.con.execute("SELECT current_setting('memory_limit')").fetchall()
        self.seen.append(("results" if "FROM results" in query else "report", str(limit)))

    def execute(self, query: str, *args: object) -> duckdb.DuckDBPyConnection:
        if "memory_limit" not in query:  # the cap's own reading and setting of it
            self._note(query)
        return self.con.execute(query, *args)

    def sql(self, query: str, **kwargs: object) -> duckdb.DuckDBPyRelation:
        self._note(query)
        return self.con.sql(query, **kwargs)


def test_a_report_is_read_with_duckdb_held_to_a_quarter_gigabyte_and_the_store_limit_back_after(
        scenario: Scenario) -> None:
    """A run leaves up to the store's limit of blocks cached; a report's rows come into this process beside them.
    While the report is read DuckDB keeps 256 MB (a smaller configured limit is not raised), then the store's
    own limit is back for whatever the connection does next. The exports' every result of the run is sorted
    within the store's own limit (ten million rows on a large day)."""
    scenario.import_(scenario.statement([{"txn": "T1", "order": "NOPE", "amount": "5.00"}]))
    scenario.run()
    for configured, during in (("1.8GB", "244.1 MiB"), ("100MB", "95.3 MiB")):
        store = scenario.config.store.model_copy(update={"memory_limit": configured})
        with open_store(scenario.config.model_copy(update={"store": store}), write=False) as con:
            [(before,)] = con.execute("SELECT current_setting('memory_limit')").fetchall()
            seen = _LimitSeen(con)
            data = load_report(seen, DAY, None, "Asia/Shanghai")  # type: ignore[arg-type]
            assert data.exceptions["order_no"].to_list() == ["NOPE"]
            assert data.results is not None and data.results["unit_key"].to_list() == ["NOPE"]
            report = {limit for what, limit in seen.seen if what == "report"}
            assert len(seen.seen) >= 5 and report == {during}
            assert [limit for what, limit in seen.seen if what == "results"] == [before]
            assert con.execute("SELECT current_setting('memory_limit')").fetchall() == [(before,)]


def test_an_exception_seen_again_shows_the_shop_as_the_later_run_found_it(scenario: Scenario) -> None:
    """The sheet shows the shop's status of the run that last saw the exception, not of the one that opened it."""
    scenario.order("B1", "10.00", status=1)  # paid on the bill, still waiting in the shop: missing_callback
    scenario.import_(scenario.statement([{"txn": "T1", "order": "B1", "amount": "10.00"}]))
    scenario.run()
    con = sqlite3.connect(scenario.shop_path)
    con.execute("UPDATE orders SET status = -1 WHERE order_sn = 'B1'")  # the shop let it expire meanwhile
    con.commit()
    con.close()
    rerun = scenario.run()
    with scenario.store(write=False) as store:
        data = load_report(store, None, rerun.run_id, "Asia/Shanghai", with_results=False)
    [shown] = data.exceptions.to_dicts()
    assert (shown["code"], shown["shop_status"], shown["channel_txn_id"]) == ("missing_callback", "-1", "T1")


def test_a_store_without_a_configured_memory_limit_gets_duckdbs_default_back(scenario: Scenario) -> None:
    """No `[store] memory_limit`: DuckDB's own default (a share of the machine's memory) is capped for the report,
    then put back as it was, not as DuckDB shows it rounded."""
    scenario.import_(scenario.statement([{"txn": "T1", "order": "NOPE", "amount": "5.00"}]))
    scenario.run()
    assert scenario.config.store.memory_limit is None
    with scenario.store(write=False) as con:
        [(default,)] = con.execute("SELECT current_setting('memory_limit')").fetchall()
        seen = _LimitSeen(con)
        load_report(seen, DAY, None, "Asia/Shanghai", with_results=False)  # type: ignore[arg-type]
        assert {limit for _, limit in seen.seen} == {"244.1 MiB"}
        assert con.execute("SELECT current_setting('memory_limit')").fetchall() == [(default,)]


def test_a_run_whose_workbook_cannot_be_written_still_publishes_the_snapshot_and_lets_the_store_go(
        scenario: Scenario, tmp_path: Path) -> None:
    """The workbook is written while the store is copied for readers: a failure of one leaves the other done."""
    scenario.order("O1", "10.00")
    scenario.import_(scenario.statement([{"txn": "T1", "order": "O1", "amount": "12.00"}]))
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the reports folder should be")
    with pytest.raises(OSError, match=re.escape(str(blocked))):
        reconcile(scenario.config, DAY, None, "test run", formats=["xlsx"], out_dir=blocked)
    # the run is committed and published for readers, and the store's lock is free for the next command
    with duckdb.connect(str(snapshot_path(scenario.config.store_path)), read_only=True) as snap:
        assert snap.execute("SELECT status FROM runs").fetchall() == [("succeeded",)]
    with store_lock(scenario.config.store_path, "next"):
        pass
    summary, _ = reconcile(scenario.config, DAY, None, "test run", formats=["xlsx"], out_dir=tmp_path / "out")
    [workbook] = summary.reports
    assert load_workbook(workbook)[label("amount_mismatch", scenario.config.reports.language)].max_row == 2
    with duckdb.connect(str(snapshot_path(scenario.config.store_path)), read_only=True) as snap:
        assert snap.execute("SELECT count(*) FROM runs WHERE status = 'succeeded'").fetchall() == [(2,)]
