"""The exception workbook: sheets and headings (golden), real cell types, the split, the charts, inert text."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sqlite3
import zipfile
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openpyxl import load_workbook
from openpyxl.worksheet.worksheet import Worksheet

import jobs.reconcile
import reports.xlsx_sheets
import reports.xlsx_stream
from recon.demo import run_demo
from recon.store import open_store
from recon.taxonomy import EXCEPTION_CODES, label
from reports import ReportData, load_report
from reports.labels import headings
from reports.xlsx import render
from reports.xlsx_sheets import part_sizes, sheet_name
from tests.scenario import DAY, Scenario

GOLDEN = Path(__file__).parent / "fixtures" / "golden" / "reports" / "xlsx_layout.json"
SHANGHAI = ZoneInfo("Asia/Shanghai")
CNY = "¥#,##0.00"
HOSTILE = ['=HYPERLINK("http://x","c")', "+1+1", "-2+3", "@SUM(1)", "\t=1", "\r=1"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> ReportData:
    """The demo day (every code); its own report writing is switched off so only this renderer runs."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jobs.reconcile, "write_reports", lambda *args, **kwargs: [])
        _, _, data = run_demo(tmp_path_factory.mktemp("demo"))
    return data


@pytest.fixture(scope="module")
def books(demo: ReportData, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("books")
    return {lang: render(demo, out / lang, lang)[0] for lang in ("zh-CN", "en")}


def rows(sheet: Worksheet) -> list[list[object]]:
    return [[c.value for c in row] for row in sheet.iter_rows()]


def header(sheet: Worksheet) -> list[str]:
    return [c.value for c in sheet[1] if c.value is not None]


def worksheet_xml(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return [archive.read(n).decode() for n in archive.namelist() if n.startswith("xl/worksheets/sheet")]


def layout(path: Path, lang: str) -> dict[str, object]:
    book = load_workbook(path)
    known = set(headings(lang).values())
    return {
        "sheets": book.sheetnames,
        "summary_labels": [r[0] for r in rows(book.worksheets[0]) if r[0] in known],
        "headers": {ws.title: header(ws) for ws in book.worksheets[1:]},
    }


def test_sheet_names_and_headings_per_language_match_the_golden_file(books: dict[str, Path]) -> None:
    found = {lang: layout(path, lang) for lang, path in books.items()}
    if os.environ.get("RECON_REGEN_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(found, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    assert found == json.loads(GOLDEN.read_text(encoding="utf-8"))
    zh, en = found["zh-CN"]["sheets"], found["en"]["sheets"]
    assert (zh[0], zh[-2:]) == ("汇总", ["补单记录", "趋势"])
    assert (en[0], en[-2:]) == ("Summary", ["Repairs", "Trend"])
    # summary, one sheet per exception code (most urgent first), repairs, trend
    assert len(en) == len(EXCEPTION_CODES) + 3
    assert en[1:3] == ["shop only (no channel record)", "trade no mismatch"]
    assert "missing callback" in en and label("missing_callback", "zh-CN") in zh
    assert all(len(n) <= 31 and not re.search(r"[\\/?*\[\]:]", n) for n in zh + en)


def test_summary_shows_the_run_counts_amounts_rate_priorities_and_repairs(demo: ReportData,
                                                                          books: dict[str, Path]) -> None:
    sheet = load_workbook(books["en"])["Summary"]
    by_label = {r[0]: r[1:] for r in rows(sheet) if r[0] is not None}
    assert by_label["Run"][0] == demo.run_id
    assert by_label["Business date"][0] == datetime(2026, 11, 20)
    assert by_label["Channels"][0] == "ali, wx, epay, card"
    assert by_label["Started at"][0] == demo.started_at.astimezone(SHANGHAI).replace(tzinfo=None, microsecond=0)
    assert Decimal(str(by_label["Match rate"][0])) == demo.match_rate
    cells = {(r[0].value, r[1].value): r for r in sheet.iter_rows() if r[0].value in ("ali", "card")}
    ali = cells[("ali", "amount mismatch")]
    assert [c.value for c in ali[2:6]] == [1, 9.9, 9.9, "CNY"]
    assert ali[3].data_type == "n" and ali[3].number_format == CNY
    shop_only = cells[("ali", "shop only (no channel record)")]
    assert shop_only[4].value == -88 and shop_only[4].data_type == "n"
    usd = cells[("card", "currency mismatch")]
    assert (usd[3].number_format, usd[5].value) == ("#,##0.00", "USD")
    values = rows(sheet)
    start = values.index(["Open exceptions by priority", None, None, None, None, None])
    assert values[start + 1][:2] == ["Priority", "Count"]
    priorities = {r[0]: r[1] for r in values[start + 2:start + 6]}
    assert priorities == demo.open_by_priority
    assert values[start + 6][:2] == ["Total", demo.exceptions.height]
    assert ["No repairs in this run"] == [r[0] for r in values if r[0] == "No repairs in this run"]


def test_every_exception_sheet_shows_both_sides_with_real_types(demo: ReportData, books: dict[str, Path]) -> None:
    book = load_workbook(books["en"])
    code_sheets = book.worksheets[1:-2]
    assert sum(ws.max_row - 1 for ws in code_sheets) == demo.exceptions.height
    for ws in code_sheets:
        assert ws.freeze_panes == "A2"
        assert ws.auto_filter.ref == f"A1:V{ws.max_row}"
    sheet = book["trade no mismatch"]
    head = header(sheet)
    got = dict(zip(head, sheet[2], strict=True))
    exc = demo.exceptions.filter(pl.col("code") == "trade_no_mismatch").row(0, named=True)
    for column in ("Shop amount", "Channel amount", "Difference"):
        assert got[column].data_type == "n" and got[column].number_format == CNY
    assert got["Shop amount"].value == 18 and got["Difference"].value == 0
    for column, key in (("Ordered at", "created_at"), ("Channel time", "occurred_at")):
        assert isinstance(got[column].value, datetime)
        assert got[column].value == exc[key].astimezone(SHANGHAI).replace(tzinfo=None)
    assert got["Ordered at"].value == datetime(2026, 11, 20, 16, 10, 10)  # 08:10:10 UTC
    for column in ("Channel txn id", "Shop's txn id", "Order no"):
        assert got[column].data_type == "s"
    assert got["Channel txn id"].value == exc["channel_txn_id"]
    assert got["Shop's txn id"].value != got["Channel txn id"].value
    assert got["Suggested action"].value == "investigate now: the shop recorded another transaction id"
    assert (got["Priority"].value, got["Age (days)"].value, got["Auto-repairable"].value) == (1, 0, "no")
    usd = dict(zip(head, book["currency mismatch"][2], strict=True))
    assert (usd["Currency"].value, usd["Channel amount"].number_format) == ("USD", "#,##0.00")
    zh = load_workbook(books["zh-CN"])[label("trade_no_mismatch", "zh-CN")]
    assert header(zh)[:8] == ["编号", "渠道", "优先级", "订单号", "店铺金额", "渠道金额", "差额", "币种"]
    assert zh["U2"].value == "立即核查：店铺记录的交易号与渠道不同"


def test_trend_sheet_holds_the_table_and_two_native_charts(demo: ReportData, tmp_path: Path) -> None:
    days = [date(2026, 11, 18), date(2026, 11, 19), date(2026, 11, 20)]
    trend = pl.DataFrame(
        {"run_id": [1, 1, 1, 2, 2, 3], "business_date": [days[0]] * 3 + [days[1]] * 2 + [days[2]],
         "code": ["matched", "matched", "shop_only", "matched", "pending", None], "count": [3, 0, 1, 1, 3, 0]},
        schema={"run_id": pl.Int64, "business_date": pl.Date, "code": pl.String, "count": pl.Int64},
    )
    [path] = render(dataclasses.replace(demo, trend=trend), tmp_path, "en")
    sheet = load_workbook(path)["Trend"]
    values = rows(sheet)
    assert values[0][:4] == ["Run", "Business date", "Match rate", label(EXCEPTION_CODES[0], "en")]
    assert values[0][3:] == [label(c, "en") for c in EXCEPTION_CODES]
    shop_only, pending = 3 + EXCEPTION_CODES.index("shop_only"), 3 + EXCEPTION_CODES.index("pending")
    assert [r[:3] for r in values[1:4]] == [[1, datetime(2026, 11, 18), 0.75], [2, datetime(2026, 11, 19), 0.25],
                                           [3, datetime(2026, 11, 20), None]]
    assert (values[1][shop_only], values[2][pending], sum(values[3][3:])) == (1, 3, 0)
    assert sheet["C2"].number_format == "0.00%"
    with zipfile.ZipFile(path) as archive:
        line = archive.read("xl/charts/chart1.xml").decode()
        bars = archive.read("xl/charts/chart2.xml").decode()
        trend_xml = archive.read(f"xl/worksheets/sheet{len(load_workbook(path).sheetnames)}.xml").decode()
    assert "<drawing" in trend_xml
    assert "<lineChart>" in line and "<v>Match rate</v>" in line and "'Trend'!$C$2:$C$4" in line
    assert "<barChart>" in bars and '<grouping val="stacked"' in bars
    assert all(f"<v>{label(c, 'en')}</v>" in bars for c in EXCEPTION_CODES)
    assert "'Trend'!$B$2:$B$4" in bars


def test_a_sheet_over_the_row_limit_continues_on_numbered_sheets(demo: ReportData, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert part_sizes(4, 5) == [4] and part_sizes(10, 5) == [3, 3, 4] and part_sizes(0, 5) == [0]
    monkeypatch.setattr(reports.xlsx_sheets, "ROW_LIMIT", 5)
    monkeypatch.setattr(reports.xlsx_stream, "SLICE_ROWS", 2)  # rows spliced two at a time, in their order
    one = demo.exceptions.filter(pl.col("code") == "shop_only")
    many = pl.concat([one.with_columns(pl.lit(i).alias("id")) for i in range(10)])
    [path] = render(dataclasses.replace(demo, exceptions=many), tmp_path, "en")
    book = load_workbook(path)
    names = ["shop only (no channel record)", "shop only (no channel record) (2)", "shop only (no channel record) (3)"]
    assert book.sheetnames == ["Summary", names[0], "shop only (2)", "shop only (3)", "Repairs", "Trend"]
    names[1:] = ["shop only (2)", "shop only (3)"]
    ids = []
    for k, name in enumerate(names):
        sheet = book[name]
        values = rows(sheet)
        assert sheet.max_row <= 5 and sheet.freeze_panes == "A2" and values[0][0] == "ID"
        data_rows = [r for r in values[1:] if isinstance(r[0], int)]
        ids += [r[0] for r in data_rows]
        assert sheet.auto_filter.ref == f"A1:V{len(data_rows) + 1}"
        if k + 1 < len(names):
            assert values[-1][0] == f"Excel row limit reached: continued on sheet '{names[k + 1]}'"
        if k:
            assert values[0][-1] == f"Continued from sheet '{names[k - 1]}'"
    assert ids == list(range(10))


def test_repairs_sheet_lists_the_journal(demo: ReportData, tmp_path: Path) -> None:
    at = datetime(2026, 11, 21, 1, 2, 3, tzinfo=timezone.utc)
    journal = pl.DataFrame(
        {"repair_id": [1, 2], "idempotency_key": ["k1", "k2"], "exception_id": [3, 4], "shop": ["main", "main"],
         "order_no": ["000123", "=1+1"], "channel_txn_id": ["0042", None], "action": ["complete", "redeliver"],
         "state": ["applied", "unknown"], "actor": ["auto", "ops"], "reason": [None, "@SUM(1)"],
         "created_at": [at, at], "updated_at": [at + timedelta(seconds=5), at], "detail": ["ok", "-2+3"]},
    )
    [path] = render(dataclasses.replace(demo, repairs=journal), tmp_path, "zh-CN")
    book = load_workbook(path)
    sheet = book["补单记录"]
    assert header(sheet)[:4] == ["补单编号", "异常编号", "订单号", "渠道交易号"]
    assert sheet.freeze_panes == "A2" and sheet.auto_filter.ref == "A1:M3"
    first, second = sheet[2], sheet[3]
    assert (first[2].value, first[2].data_type, first[3].value) == ("000123", "s", "0042")
    assert first[9].value == datetime(2026, 11, 21, 9, 2, 3) and first[10].value == datetime(2026, 11, 21, 9, 2, 8)
    assert [(c.value, c.data_type, c.quotePrefix) for c in (second[2], second[8], second[11])] == [
        ("=1+1", "s", True), ("@SUM(1)", "s", True), ("-2+3", "s", True)]
    summary = rows(book["汇总"])
    start = summary.index(["已执行补单", None, None, None, None, None])
    assert [r[:3] for r in summary[start + 1:start + 4]] == [["操作", "执行状态", "笔数"], ["complete", "applied", 1],
                                                             ["redeliver", "unknown", 1]]


@pytest.fixture
def hostile_data(scenario: Scenario) -> Iterator[ReportData]:
    """Hostile order numbers on both sides, hostile goods titles and buyer emails in the shop."""
    for i, text in enumerate(HOSTILE):
        scenario.order(text, f"{i + 1}.50")
    scenario.order("000123", "9.90")
    con = sqlite3.connect(scenario.shop_path)
    con.executemany("UPDATE orders SET title = ?, email = ? WHERE order_sn = ?",
                    [(text, text, text) for text in HOSTILE])
    con.commit()
    con.close()
    # a CR inside a statement field is the parser's business (it rejects the file), so not here
    rows_ = [{"txn": f"T{i}", "order": f"X{text}" if i % 2 else text, "amount": f"-{i}.25" if i else "5.00"}
             for i, text in enumerate(HOSTILE) if "\r" not in text]
    scenario.import_(scenario.statement(rows_))
    scenario.run()
    with open_store(scenario.config, write=False) as con_:
        yield load_report(con_, DAY, None, "Asia/Shanghai")


def test_hostile_text_from_the_data_stays_inert(hostile_data: ReportData, tmp_path: Path) -> None:
    frame = hostile_data.exceptions
    extra = frame.head(1).with_columns(
        pl.lit("\t=1").alias("order_no"), pl.lit("#N/A").alias("goods_title"), pl.lit("\r=1").alias("buyer_contact"),
        pl.lit("bell\x07" + "x" * 40_000).alias("detail"), pl.lit(999, dtype=pl.Int64).alias("id"))
    [path] = render(dataclasses.replace(hostile_data, exceptions=pl.concat([frame, extra])), tmp_path, "en")
    assert not any("<f>" in xml or "<f " in xml for xml in worksheet_xml(path))
    book = load_workbook(path)
    seen: dict[str, list[object]] = {"Order no": [], "Goods": [], "Buyer": []}
    for sheet in book.worksheets[1:-2]:
        head = header(sheet)
        for row in sheet.iter_rows(min_row=2):
            cells = dict(zip(head, row, strict=False))
            for column, found in seen.items():
                cell = cells[column]
                if cell.value is not None:
                    assert cell.data_type == "s", (sheet.title, column, cell.value)
                    found.append(cell.value)
                    if str(cell.value)[0] in "=+-@\t\r":
                        assert cell.quotePrefix, (sheet.title, column, cell.value)
            for column in ("Shop amount", "Channel amount", "Difference"):
                assert cells[column].data_type == "n"
            if cells["ID"].value == 999:
                detail = cells["Detail"].value
                assert "\x07" not in detail and detail.endswith("…[truncated]") and len(detail) == 32767
    # the shop and statement readers strip surrounding whitespace ("\t=1" arrives as "=1"); the
    # synthetic row brings the TAB and CR forms in
    arrived = {text.strip() for text in HOSTILE}
    assert arrived | {"\t=1", "000123", "X+1+1", "X@SUM(1)"} <= set(seen["Order no"])
    assert arrived | {"#N/A"} <= set(seen["Goods"])
    # a CR is stored as is; XML parsers (openpyxl's and Excel's) read it back as LF
    assert arrived | {"\n=1"} <= set(seen["Buyer"])
    negatives = [c.value for ws in book.worksheets[1:-2] for c in ws["G"][1:] if isinstance(c.value, int | float)]
    assert any(v < 0 for v in negatives)


def test_sheet_names_are_legal_and_unique() -> None:
    used: set[str] = set()
    assert sheet_name("a/b:c*d?[e]", used) == "a_b_c_d__e_"
    assert sheet_name("A_B_C_D__E_", used) == "A_B_C_D__E_~2"
    long = sheet_name("x" * 40, used)
    assert len(long) == 31 and long.endswith("…")
    assert sheet_name("missing callback (paid, shop unaware)", used) == "missing callback"


def test_an_empty_run_still_gives_a_readable_workbook(demo: ReportData, tmp_path: Path) -> None:
    empty = dataclasses.replace(demo, counts=[], exceptions=demo.exceptions.clear(), results=None, currencies={},
                                trend=demo.trend.clear())
    [path] = render(empty, tmp_path, "en")
    book = load_workbook(path)
    assert book.sheetnames == ["Summary", "Repairs", "Trend"]
    labels = [r[0] for r in rows(book["Summary"])]
    assert "No open exceptions" in labels and "No repairs in this run" in labels
    with zipfile.ZipFile(path) as archive:
        assert not [n for n in archive.namelist() if n.startswith("xl/charts/")]


def test_exception_sheets_are_compressed_like_any_workbook(demo: ReportData, tmp_path: Path) -> None:
    """The streamed sheets are deflated: a day of many exceptions is a workbook finance can mail, not raw XML."""
    one = demo.exceptions.filter(pl.col("code") == "shop_only")
    many = pl.concat([one.with_columns(pl.lit(i).alias("id")) for i in range(2000)])
    [path] = render(dataclasses.replace(demo, exceptions=many), tmp_path, "en")
    with zipfile.ZipFile(path) as archive:
        sheets = [i for i in archive.infolist() if i.filename.startswith("xl/worksheets/sheet")]
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in sheets)
        biggest = max(sheets, key=lambda i: i.file_size)
        assert biggest.file_size > 500_000 and biggest.compress_size * 5 < biggest.file_size
    assert [r[0] for r in rows(load_workbook(path)["shop only (no channel record)"])[1:]] == list(range(2000))


TEXTS = st.one_of(st.sampled_from(["matched", "T2026112022001", "buyer@example.com", "", " padded ", "a&b<c>",
                                   "=1+1", "#N/A", "x\x01y", "卡密", "@SUM(1)", "-2"]), st.text(max_size=8))


@given(st.lists(st.one_of(st.none(), TEXTS), min_size=1, max_size=150), st.booleans())
def test_text_cells_made_once_per_value_or_as_they_are_match_the_cells_made_one_by_one(
        values: list[str | None], repeat: bool) -> None:
    """The workbook's shortcuts for text columns (plain values, few distinct values) write the same cells."""
    if repeat:
        values = (values * (200 // len(values) + 1))[:200]
    frame = pl.DataFrame({"text": values}, schema={"text": pl.String})
    styles = {name: str(i) for i, name in enumerate(reports.xlsx_stream.PLACEHOLDER_STYLES)}
    number = pl.int_range(2, 2 + pl.len(), dtype=pl.Int64).cast(pl.String)

    def cells(few: pl.Series | None, plain: bool) -> list[str]:
        cell = reports.xlsx_stream._cell(pl.String(), "text", "B", number, pl.lit(None, pl.String), styles,
                                         "Asia/Shanghai", "yes", "no", few, plain)
        return frame.select(cell.alias("xml"))["xml"].to_list()

    one_by_one = cells(None, False)
    assert cells(reports.xlsx_stream._few_values(frame, "text"), reports.xlsx_stream._plain(frame, "text")) == one_by_one
    assert cells(frame["text"].unique(), False) == one_by_one
