"""The exceptions page's filtered view as a workbook, however many rows it has.

The rows are copied out of the store in one streamed ``COPY … TO parquet`` (the store is held for
that copy only), then written to a write-only workbook batch by batch: memory stays flat, and a
run that starts meanwhile is not kept waiting. Cells go through reports.xlsx_sheets.Cells, so text
is never a formula (OWASP CSV injection) and money stays exact.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow.parquet as pq
from openpyxl import Workbook
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from recon.ledger_views import ExceptionFilter, list_query
from recon.web.store_access import StoreAccess
from recon.web.text import texts
from reports.labels import headings
from reports.xlsx_sheets import ROW_LIMIT, WIDTHS, Cells, code_label, sheet_name

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
COLUMNS = (
    "id", "code", "channel", "priority", "status", "order_no", "channel_txn_id", "shop_amount", "channel_amount",
    "difference", "currency", "business_date", "first_seen", "last_seen", "auto_repairable", "suggested_action",
    "detail", "closed_by",
)
BATCH_ROWS = 5_000
MONEY = ("shop_amount", "channel_amount", "difference")
TIMES = ("first_seen", "last_seen")


@dataclass(frozen=True)
class ExportRequest:
    flt: ExceptionFilter
    sort: str | None
    descending: bool
    lang: str
    zone: str
    user: str
    at: datetime

    def file_name(self, lang: str | None = None) -> str:
        """``异常明细_2026-11-01_2026-11-20.xlsx`` (``exceptions_…`` in English)."""
        name = texts(lang or self.lang)["export_name"]
        dates = [str(d) for d in (self.flt.date_from, self.flt.date_to) if d is not None]
        if not dates:
            dates = [self.at.astimezone(ZoneInfo(self.zone)).strftime("%Y-%m-%d")]
        return "_".join([name, *dict.fromkeys(dates)]) + ".xlsx"


def discard(path: Path) -> None:
    """Remove an export and its temporary folder once it has been sent."""
    shutil.rmtree(path.parent, ignore_errors=True)


def export_exceptions(store: StoreAccess, job: ExportRequest, row_limit: int = ROW_LIMIT) -> Path:
    """Write the workbook into a fresh temporary folder; the caller sends it, then ``discard``s it."""
    folder = Path(tempfile.mkdtemp(prefix="recon-export-"))
    try:
        rows_file = folder / "rows.parquet"
        sql, params = list_query(job.flt.check(), job.sort, job.descending)
        target = str(rows_file).replace("'", "''")
        with store.reading() as (con, _source):
            con.execute(f"COPY ({sql}) TO '{target}' (FORMAT parquet)", params)
        book_path = folder / "export.xlsx"
        _workbook(rows_file, job, row_limit).save(book_path)
        rows_file.unlink()
        return book_path
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _workbook(rows_file: Path, job: ExportRequest, row_limit: int) -> Workbook:
    lang = "en" if job.lang == "en" else "zh-CN"
    t = texts(lang)
    h = {**headings(lang), "last_seen": t["last_seen"], "closed_by": t["closed_by"]}
    cells = Cells(lang=lang, zone=ZoneInfo(job.zone), h=h)
    book = Workbook(write_only=True)
    used: set[str] = set()
    source = pq.ParquetFile(rows_file)
    total = source.metadata.num_rows
    per_sheet = row_limit - 1
    sheet = _new_sheet(book, t["export_name"], used, cells, min(total, per_sheet))
    written = part = 0
    for batch in source.iter_batches(batch_size=BATCH_ROWS, columns=list(COLUMNS)):
        for row in batch.to_pylist():
            if written == per_sheet:
                part += 1
                sheet = _new_sheet(book, f"{t['export_name']} ({part + 1})", used, cells,
                                   min(total - part * per_sheet, per_sheet))
                written = 0
            sheet.append(_row(sheet, row, cells, t))
            written += 1
    _filter_sheet(book, job, cells, t, used, total)
    return book


def _new_sheet(book: Workbook, name: str, used: set[str], cells: Cells, rows: int) -> WriteOnlyWorksheet:
    """Widths, frozen header and filter first: a write-only sheet takes them before its first row."""
    sheet = book.create_sheet(sheet_name(name, used))
    for i, column in enumerate(COLUMNS, 1):
        width = 14 if column in MONEY else 20 if column in TIMES else WIDTHS.get(column, 12)
        sheet.column_dimensions[get_column_letter(i)].width = width
    sheet.freeze_panes = "A2"
    if rows:
        sheet.auto_filter.ref = f"A1:{get_column_letter(len(COLUMNS))}{rows + 1}"
    sheet.append([cells.bold(sheet, cells.h[c]) for c in COLUMNS])
    return sheet


def _row(sheet: WriteOnlyWorksheet, row: dict[str, Any], cells: Cells, t: dict[str, str]) -> list[Any]:
    values = dict(row)
    values["code"] = code_label(row["code"], cells.lang)
    values["status"] = t.get(f"st_{row['status']}", row["status"])
    return [cells.value(sheet, values[c], row["currency"]) for c in COLUMNS]


def _filter_sheet(book: Workbook, job: ExportRequest, cells: Cells, t: dict[str, str], used: set[str],
                  total: int) -> None:
    """What was exported, by whom and when: a workbook forwarded by mail still says what it is."""
    sheet = book.create_sheet(sheet_name(t["sheet_filter"], used))
    sheet.column_dimensions["A"].width = 18
    sheet.column_dimensions["B"].width = 40
    flt = job.flt
    lines: list[tuple[str, Any]] = [
        (t["exported_at"], job.at),
        (t["exported_by"], job.user),
        (t["date_from"], flt.date_from or t["all_dates"]),
        (t["date_to"], flt.date_to or t["all_dates"]),
        (t["channel"], flt.channel or t["any"]),
        (t["code"], code_label(flt.code, cells.lang) if flt.code else t["any"]),
        (t["status"], t[f"st_{flt.status}"] if flt.status else t["any"]),
        (t["priority"], flt.priority or t["any"]),
        (t["sort"], f"{job.sort} {'desc' if job.descending else 'asc'}" if job.sort else "-"),
        (t["rows"], total),
    ]
    for label, value in lines:
        sheet.append([cells.bold(sheet, label), cells.value(sheet, value)])
