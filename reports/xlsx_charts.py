"""The trend sheet: one row per recent run (match rate, open exceptions per code) and two native charts."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from openpyxl import Workbook
from openpyxl.chart import BarChart, LineChart, Reference
from openpyxl.chart.data_source import StrData, StrRef, StrVal
from openpyxl.chart.series import Series, SeriesLabel
from openpyxl.utils import get_column_letter, quote_sheetname
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from recon.taxonomy import EXCEPTION_CODES
from reports.model import TREND_RUNS, ReportData
from reports.xlsx_sheets import Cells, code_label, sheet_name

# first columns of the trend table; one column per exception code follows
TREND_KEYS = ("run", "business_date", "match_rate")
CHART_WIDTH, CHART_HEIGHT = 24.0, 9.0  # cm


def trend_table(data: ReportData) -> list[tuple[int, date, Decimal | None, list[int]]]:
    """(run id, business date, match rate, count per exception code) of each recent run, oldest first."""
    counts: dict[int, dict[str, int]] = {}
    for run_id, _day, code, count in data.trend.iter_rows():
        counts.setdefault(int(run_id), {})
        if code is not None:
            counts[int(run_id)][code] = int(count)
    return [(run_id, day, rate, [counts.get(run_id, {}).get(c, 0) for c in EXCEPTION_CODES])
            for day, run_id, rate in data.trend_rates()]


def add_trend_sheet(book: Workbook, data: ReportData, cells: Cells, used: set[str]) -> str:
    """The table of the last runs and, below it, a line chart of the match rate and a stacked bar chart."""
    h = cells.h
    name = sheet_name(h["trend"], used)
    sheet = book.create_sheet(name)
    headings = [h[k] for k in TREND_KEYS] + [code_label(c, cells.lang) for c in EXCEPTION_CODES]
    for i, heading in enumerate(headings, 1):
        sheet.column_dimensions[get_column_letter(i)].width = max(12, min(len(heading) * 2, 24))
    sheet.freeze_panes = "A2"
    rows = trend_table(data)
    sheet.append([cells.bold(sheet, x) for x in headings])
    for run_id, day, rate, per_code in rows:
        sheet.append([run_id, cells.day(sheet, day), cells.percent(sheet, rate), *per_code])
    if not rows:
        return name
    last = len(rows) + 1
    title = h["trend_title"].format(n=TREND_RUNS)
    categories = Reference(sheet, min_col=2, min_row=2, max_row=last)

    line = LineChart()
    line.title = f"{h['match_rate']} · {title}"
    line.y_axis.number_format = "0%"
    line.y_axis.scaling.min = 0
    line.y_axis.scaling.max = 1
    line.add_data(Reference(sheet, min_col=3, min_row=2, max_row=last))
    line.set_categories(categories)
    _name_series(line.series, sheet, 3, [headings[2]])
    _place(line, sheet, f"A{last + 3}")

    bars = BarChart()
    bars.type = "col"
    bars.grouping = "stacked"
    bars.overlap = 100
    bars.title = f"{h['exceptions_per_code']} · {title}"
    first_code = len(TREND_KEYS) + 1
    bars.add_data(Reference(sheet, min_col=first_code, max_col=first_code + len(EXCEPTION_CODES) - 1,
                            min_row=2, max_row=last))
    bars.set_categories(categories)
    _name_series(bars.series, sheet, first_code, headings[first_code - 1:])
    _place(bars, sheet, f"A{last + 23}")
    return name


def _name_series(series: list[Series], sheet: WriteOnlyWorksheet, first_col: int, names: list[str]) -> None:
    """Each series titled by its header cell, with the text cached (what Excel itself writes)."""
    for offset, (one, text) in enumerate(zip(series, names, strict=True)):
        ref = f"{quote_sheetname(sheet.title)}!${get_column_letter(first_col + offset)}$1"
        one.tx = SeriesLabel(strRef=StrRef(f=ref, strCache=StrData(ptCount=1, pt=[StrVal(idx=0, v=text)])))


def _place(chart: LineChart | BarChart, sheet: WriteOnlyWorksheet, anchor: str) -> None:
    chart.width, chart.height = CHART_WIDTH, CHART_HEIGHT
    # openpyxl 3.1 leaves the axes' <c:delete> unset, which current Excel reads as "hidden"
    chart.x_axis.delete = False
    chart.y_axis.delete = False
    sheet.add_chart(chart, anchor)
