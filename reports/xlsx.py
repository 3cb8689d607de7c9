"""The exception workbook finance opens every morning and acts on without asking anyone.

Sheets, in order: the summary (run, counts and amounts per channel × code, match rate, open
exceptions by priority, repairs done); one sheet per difference code with both sides of each open
exception (split at Excel's row limit into "<name> (2)" …); the repair journal; the trend of the last
runs with native charts. Streamed (write-only workbook), written atomically.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from reports.atomic import write_atomically
from reports.labels import headings
from reports.model import ReportData
from reports.xlsx_charts import add_trend_sheet
from reports.xlsx_sheets import Cells, add_exception_sheets, add_repairs_sheet, code_label, code_order, sheet_name
from reports.xlsx_stream import Splice, splice

SUMMARY_WIDTHS = (26, 34, 12, 16, 16, 10)


def render(data: ReportData, out_dir: Path, lang: str) -> list[Path]:
    """Write ``recon_<date>_run<id>.xlsx`` atomically; return its path."""
    target = out_dir / f"recon_{data.business_date.isoformat()}_run{data.run_id}.xlsx"

    def write(tmp: Path) -> None:
        splices: list[Splice] = []
        cells = _cells(data, lang)
        build(data, lang, splices).save(tmp)
        splice(tmp, splices, data.zone, cells.h["yes"], cells.h["no"])

    return [write_atomically(target, write)]


def _cells(data: ReportData, lang: str) -> Cells:
    return Cells(lang="en" if lang == "en" else "zh-CN", zone=ZoneInfo(data.zone), h=headings(lang))


def build(data: ReportData, lang: str, splices: list[Splice] | None = None) -> Workbook:
    """The whole workbook, not yet saved (its sheets stream when it is).

    With ``splices``, the exception rows are left for ``reports.xlsx_stream.splice`` to write into the
    saved file (see there); without, every cell goes through openpyxl.
    """
    cells = _cells(data, lang)
    book = Workbook(write_only=True)
    used: set[str] = set()
    summary = book.create_sheet(sheet_name(cells.h["summary"], used))
    # the other sheets' names are needed on the summary, which is written first: reserve them now
    reserved = set(used)
    names = {code: sheet_name(code_label(code, cells.lang), reserved) for code in code_order(data.exceptions)}
    _summary(summary, data, cells, names)
    add_exception_sheets(book, data.exceptions, cells, used, splices=splices)
    add_repairs_sheet(book, data.repairs, cells, used)
    add_trend_sheet(book, data, cells, used)
    return book


def _summary(sheet: WriteOnlyWorksheet, data: ReportData, cells: Cells, sheets: dict[str, str]) -> None:
    h = cells.h
    for i, width in enumerate(SUMMARY_WIDTHS, 1):
        sheet.column_dimensions[get_column_letter(i)].width = width
    sheet.append([cells.bold(sheet, h["title"])])
    sheet.append([cells.bold(sheet, h["run"]), data.run_id])
    sheet.append([cells.bold(sheet, h["business_date"]), cells.day(sheet, data.business_date)])
    sheet.append([cells.bold(sheet, h["channels"]), cells.text(sheet, ", ".join(data.channels))])
    sheet.append([cells.bold(sheet, h["started_at"]), cells.time(sheet, data.started_at)])
    sheet.append([cells.bold(sheet, h["finished_at"]), cells.time(sheet, data.finished_at)])
    sheet.append([cells.bold(sheet, h["zone"]), cells.text(sheet, data.zone)])
    sheet.append([cells.bold(sheet, h["match_rate"]), cells.percent(sheet, data.match_rate)])
    sheet.append([])

    sheet.append([cells.bold(sheet, h["by_channel_code"])])
    sheet.append([cells.bold(sheet, h[k]) for k in ("channel", "code", "count", "amount", "difference", "currency")])
    currencies = data.currencies
    for row in data.counts:
        found = currencies.get((row["channel"], row["code"]), [])
        currency = found[0] if len(found) == 1 else None
        sheet.append([cells.text(sheet, row["channel"]), cells.text(sheet, code_label(row["code"], cells.lang)),
                      row["count"], cells.money(sheet, row["amount"], currency),
                      cells.money(sheet, row["difference"], currency), cells.text(sheet, "/".join(found))])
    sheet.append([])

    sheet.append([cells.bold(sheet, h["by_priority"])])
    by_priority = data.open_by_priority
    if by_priority:
        sheet.append([cells.bold(sheet, h["priority"]), cells.bold(sheet, h["count"])])
        for priority, count in by_priority.items():
            sheet.append([priority, count])
        sheet.append([cells.bold(sheet, h["total"]), sum(by_priority.values())])
    else:
        sheet.append([cells.note(sheet, h["no_open_exceptions"])])
    sheet.append([])

    if sheets:
        sheet.append([cells.bold(sheet, h["open_exceptions"])])
        sheet.append([cells.bold(sheet, h[k]) for k in ("code", "count", "sheet")])
        per_code = Counter(data.exceptions["code"].to_list())
        for code, name in sheets.items():
            sheet.append([cells.text(sheet, code_label(code, cells.lang)), per_code[code], cells.text(sheet, name)])
        sheet.append([])

    sheet.append([cells.bold(sheet, h["repairs_done"])])
    if data.repairs.is_empty():
        sheet.append([cells.note(sheet, h["no_repairs"])])
        return
    sheet.append([cells.bold(sheet, h["action"]), cells.bold(sheet, h["repair_state"]), cells.bold(sheet, h["count"])])
    grouped = data.repairs.group_by(["action", "state"]).len().sort(["action", "state"])
    for act, state, count in grouped.iter_rows():
        sheet.append([cells.text(sheet, str(act)), cells.text(sheet, str(state)), count])
