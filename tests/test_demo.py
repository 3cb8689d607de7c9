"""`recon demo`: the bundled sample day shows every difference code, across channels, with reports."""

from __future__ import annotations

from pathlib import Path

from openpyxl import load_workbook

from recon.demo import run_demo
from recon.taxonomy import EXCEPTION_CODES


def test_demo_shows_every_code_on_at_least_two_channels(tmp_path: Path) -> None:
    outcomes, summary, data = run_demo(tmp_path)
    assert set(EXCEPTION_CODES) | {"matched"} <= set(summary.counts)
    channels_with_differences = {r["channel"] for r in data.counts if r["code"] not in ("matched", "unpaid")}
    assert {"ali", "wx", "epay", "card"} <= channels_with_differences
    assert [(f.channel, f.mode, f.error) for f in summary.fetch if f.mode != "none"] == [("epay", "api", None)]
    assert sum(i.rows_new for i in summary.fetch[2].imports) == 3
    assert [o.rows_duplicate for o in outcomes] == [0, 0, 0, 1]
    assert outcomes[-1].duplicates == [(2, "card_2026-11-20_morning.csv:2")]
    assert summary.incomplete_channels == []
    xlsx, html = (Path(p) for p in summary.reports)
    book = load_workbook(xlsx)
    assert book.sheetnames[0] == "汇总" and book.sheetnames[-2:] == ["补单记录", "趋势"]
    code_sheets = book.sheetnames[1:-2]
    assert len(code_sheets) == len({r["code"] for r in data.counts} - {"matched", "unpaid"})
    assert sum(book[name].max_row - 1 for name in code_sheets) == summary.exceptions_open
    assert "掉单" in html.read_text(encoding="utf-8")


def test_demo_twice_in_one_folder_imports_nothing_new_and_counts_the_same(tmp_path: Path) -> None:
    _, first, _ = run_demo(tmp_path)
    outcomes, second, _ = run_demo(tmp_path)
    assert all(o.already_imported for o in outcomes)
    assert second.counts == first.counts
    assert second.ledger == {"opened": 0, "reopened": 0, "closed": 0}
