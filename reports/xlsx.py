"""The exception workbook finance opens: a summary sheet, then every open exception."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from reports.atomic import write_atomically
from reports.labels import headings
from reports.model import EXCEPTION_COLUMNS, ReportData
from reports.safe_cell import clean_text
from recon.taxonomy import label

MONEY_FORMAT = '#,##0.00;-#,##0.00'
TIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
BOLD = Font(bold=True)


def render(data: ReportData, out_dir: Path, lang: str) -> list[Path]:
    """Write ``recon_<date>_run<id>.xlsx`` atomically; return its path."""
    target = out_dir / f"recon_{data.business_date.isoformat()}_run{data.run_id}.xlsx"
    return [write_atomically(target, lambda tmp: _build(data, lang).save(tmp))]


def _build(data: ReportData, lang: str) -> Workbook:
    h = headings(lang)
    book = Workbook(write_only=True)
    summary = book.create_sheet(h["summary"])
    summary.append([_bold(summary, h["run"]), data.run_id])
    summary.append([_bold(summary, h["business_date"]), data.business_date.isoformat()])
    summary.append([_bold(summary, h["channels"]), ", ".join(data.channels)])
    rate = data.match_rate
    summary.append([_bold(summary, h["match_rate"]), _percent(summary, rate)])
    summary.append([])
    summary.append([_bold(summary, h[k]) for k in ("channel", "code", "count", "amount", "difference")])
    for row in data.counts:
        summary.append([_text(summary, row["channel"]), _text(summary, label(row["code"], lang)), row["count"],
                        _money(summary, row["amount"]), _money(summary, row["difference"])])
    sheet = book.create_sheet(h["exceptions"])
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(EXCEPTION_COLUMNS))}{data.exceptions.height + 1}"
    sheet.append([_bold(sheet, h[c]) for c in EXCEPTION_COLUMNS])
    zone = ZoneInfo(data.zone)
    for chunk in data.exceptions.iter_slices(10_000):
        for exc in chunk.iter_rows(named=True):
            sheet.append([_cell(sheet, c, exc[c], lang, zone, h) for c in EXCEPTION_COLUMNS])
    return book


def _cell(sheet: Worksheet, column: str, value: Any, lang: str, zone: ZoneInfo, h: dict[str, str]) -> Any:
    if value is None:
        return None
    if column == "code":
        return _text(sheet, label(value, lang))
    if isinstance(value, bool):
        return h["yes"] if value else h["no"]
    if isinstance(value, Decimal):
        return _money(sheet, value)
    if isinstance(value, datetime):
        cell = WriteOnlyCell(sheet, value=value.astimezone(zone).replace(tzinfo=None))
        cell.number_format = TIME_FORMAT
        return cell
    if isinstance(value, str):
        return _text(sheet, value)
    return value


def _text(sheet: Worksheet, value: str) -> WriteOnlyCell:
    """Data text is always stored as a string cell: a leading '=' never becomes a formula."""
    cell = WriteOnlyCell(sheet, value=clean_text(value))
    cell.data_type = "s"
    cell.quotePrefix = True
    return cell


def _bold(sheet: Worksheet, value: str) -> WriteOnlyCell:
    cell = WriteOnlyCell(sheet, value=value)
    cell.font = BOLD
    return cell


def _money(sheet: Worksheet, value: Decimal | None) -> WriteOnlyCell | None:
    if value is None:
        return None
    cell = WriteOnlyCell(sheet, value=value)
    cell.number_format = MONEY_FORMAT
    return cell


def _percent(sheet: Worksheet, value: Decimal | None) -> WriteOnlyCell | None:
    if value is None:
        return None
    cell = WriteOnlyCell(sheet, value=value)
    cell.number_format = "0.00%"
    return cell
