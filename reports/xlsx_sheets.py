"""Cells and the streamed sheets of the exception workbook: one sheet per difference code, the repairs.

Every text that comes from the data goes through :meth:`Cells.text`: control characters replaced,
over-long text cut with a marker, and always a string cell (never a formula, never an error value).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ERROR_CODES
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from recon.taxonomy import BY_CODE, EXCEPTION_CODES, action, label
from reports.safe_cell import clean_text, is_formula_like
from reports.xlsx_stream import Splice, placeholder_row

# Excel's hard limit of rows per sheet (header included). Tests lower it to exercise the split.
ROW_LIMIT = 1_048_576
SHEET_NAME_LIMIT = 31
SLICE_ROWS = 10_000
CNY_FORMAT = "¥#,##0.00"
MONEY_FORMAT = "#,##0.00"
TIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
DATE_FORMAT = "yyyy-mm-dd"
PERCENT_FORMAT = "0.00%"
BOLD = Font(bold=True)
ITALIC = Font(italic=True)
_BAD_SHEET_CHARS = re.compile(r"[\\/?*\[\]:]")
_TRAILING_NOTE = re.compile(r"\s*[（(][^（()）]*[)）]\s*$")

# The columns of an exception sheet: both sides next to each other (the code is the sheet itself).
EXCEPTION_SHEET_COLUMNS = (
    "id", "channel", "priority", "order_no", "shop_amount", "channel_amount", "difference", "currency",
    "created_at", "occurred_at", "shop_channel_txn_id", "channel_txn_id", "shop_status", "status",
    "buyer_contact", "goods_title", "business_date", "first_seen", "age_days", "auto_repairable",
    "suggested_action", "detail",
)
REPAIR_COLUMNS = (
    "repair_id", "exception_id", "order_no", "channel_txn_id", "shop", "action", "state", "actor", "reason",
    "created_at", "updated_at", "detail", "idempotency_key",
)
# repairs column → heading key (the repair's own times and state are not the order's)
REPAIR_HEADINGS = {"state": "repair_state", "created_at": "repair_at"}
WIDTHS = {
    "id": 8, "channel": 10, "priority": 8, "order_no": 24, "currency": 8, "shop_status": 10, "status": 10,
    "channel_txn_id": 30, "shop_channel_txn_id": 30, "buyer_contact": 26, "goods_title": 24, "age_days": 8,
    "auto_repairable": 10, "suggested_action": 40, "detail": 50, "business_date": 12, "repair_id": 10,
    "exception_id": 10, "shop": 10, "action": 14, "state": 10, "actor": 12, "reason": 30,
    "idempotency_key": 34,
}
MONEY_WIDTH, TIME_WIDTH = 14, 20


def money_format(currency: str | None) -> str:
    """``¥`` for yuan; any other currency a plain number (its code stands in the column beside)."""
    return CNY_FORMAT if currency == "CNY" else MONEY_FORMAT


def code_label(code: str, lang: str) -> str:
    """The code's label; an unknown code (a newer store) shows as itself rather than failing."""
    return label(code, lang) if code in BY_CODE else code


@dataclass(frozen=True)
class Cells:
    """Makes the cells of one workbook: language, shop zone, headings."""

    lang: str
    zone: ZoneInfo
    h: dict[str, str]

    def text(self, sheet: WriteOnlyWorksheet, value: str) -> WriteOnlyCell | str:
        """A string cell whatever the text: '=…' never a formula, '#N/A' never an error value.

        Plain text stays a plain ``str`` (openpyxl stores it as a string cell): a styled cell object
        costs several times more to stream, and most cells are plain.
        """
        cleaned = clean_text(value)
        if is_formula_like(cleaned) or cleaned in ERROR_CODES:
            return self.text_cell(sheet, cleaned)
        return cleaned

    def text_cell(self, sheet: WriteOnlyWorksheet, value: str) -> WriteOnlyCell:
        cleaned = clean_text(value)
        cell = WriteOnlyCell(sheet, value=cleaned)
        cell.data_type = "s"
        if is_formula_like(cleaned) or cleaned in ERROR_CODES:
            cell.quotePrefix = True
        return cell

    def bold(self, sheet: WriteOnlyWorksheet, value: str) -> WriteOnlyCell:
        cell = self.text_cell(sheet, value)
        cell.font = BOLD
        return cell

    def note(self, sheet: WriteOnlyWorksheet, value: str) -> WriteOnlyCell:
        cell = self.text_cell(sheet, value)
        cell.font = ITALIC
        return cell

    def money(self, sheet: WriteOnlyWorksheet, value: Decimal | None, currency: str | None) -> WriteOnlyCell | None:
        if value is None:
            return None
        cell = WriteOnlyCell(sheet, value=value)
        cell.number_format = money_format(currency)
        return cell

    def time(self, sheet: WriteOnlyWorksheet, value: datetime | None) -> WriteOnlyCell | None:
        """An Excel datetime showing the shop's wall clock (Excel has no zones: stored naive).

        Whole seconds, as shown: Excel keeps milliseconds at best, so a cell equals what it displays.
        """
        if value is None:
            return None
        local = value.astimezone(self.zone) if value.tzinfo is not None else value
        cell = WriteOnlyCell(sheet, value=local.replace(tzinfo=None, microsecond=0))
        cell.number_format = TIME_FORMAT
        return cell

    def day(self, sheet: WriteOnlyWorksheet, value: date | None) -> WriteOnlyCell | None:
        if value is None:
            return None
        cell = WriteOnlyCell(sheet, value=value)
        cell.number_format = DATE_FORMAT
        return cell

    def percent(self, sheet: WriteOnlyWorksheet, value: Decimal | None) -> WriteOnlyCell | None:
        if value is None:
            return None
        cell = WriteOnlyCell(sheet, value=value)
        cell.number_format = PERCENT_FORMAT
        return cell

    def value(self, sheet: WriteOnlyWorksheet, value: Any, currency: str | None = None) -> Any:
        """Any value of a data row, by its type."""
        if value is None or isinstance(value, int | float) and not isinstance(value, bool):
            return value
        if isinstance(value, bool):
            return self.h["yes"] if value else self.h["no"]
        if isinstance(value, Decimal):
            return self.money(sheet, value, currency)
        if isinstance(value, datetime):
            return self.time(sheet, value)
        if isinstance(value, date):
            return self.day(sheet, value)
        return self.text(sheet, str(value))


def sheet_name(wanted: str, used: set[str], limit: int = SHEET_NAME_LIMIT) -> str:
    """A legal, unused sheet name: no ``\\ / ? * [ ] :``, at most ``limit`` characters."""
    base = name = fit_name(wanted, limit)
    n = 1
    while name.casefold() in used:
        n += 1
        suffix = f"~{n}"
        name = base[: limit - len(suffix)] + suffix
    used.add(name.casefold())
    return name


def fit_name(wanted: str, limit: int = SHEET_NAME_LIMIT) -> str:
    """``wanted`` without illegal characters, shortened to ``limit``: a trailing note in brackets goes first."""
    name = _BAD_SHEET_CHARS.sub("_", wanted).strip().strip("'") or "_"
    if len(name) > limit:
        name = _TRAILING_NOTE.sub("", name) or name  # "missing callback (paid, shop unaware)" → "missing callback"
    if len(name) > limit:
        name = name[: limit - 1].rstrip() + "…"
    return name


def part_sizes(rows: int, limit: int) -> list[int]:
    """Data rows per part: a part that continues keeps one row for its note; the last one fills up."""
    if limit < 3:
        raise ValueError(f"row limit {limit} leaves no room for a header, a row and a note")
    sizes: list[int] = []
    while rows > limit - 1:
        sizes.append(limit - 2)
        rows -= limit - 2
    return [*sizes, rows]


def code_order(frame: pl.DataFrame) -> list[str]:
    """The codes with open exceptions: most urgent first, then in taxonomy order."""
    present = frame["code"].unique().to_list() if not frame.is_empty() else []

    def key(code: str) -> tuple[int, int, str]:
        known = BY_CODE.get(code)
        rank = EXCEPTION_CODES.index(code) if code in EXCEPTION_CODES else len(EXCEPTION_CODES)
        return (known.priority or 9) if known else 9, rank, code

    return sorted(present, key=key)


def add_exception_sheets(book: Workbook, frame: pl.DataFrame, cells: Cells, used: set[str],
                         row_limit: int | None = None, splices: list[Splice] | None = None) -> dict[str, list[str]]:
    """One sheet per code (split at the row limit); returns code → its sheet names.

    With ``splices``, each sheet gets a placeholder row and its rows are appended to ``splices``, to be
    written into the saved file by ``reports.xlsx_stream.splice`` (vectorised); else they stream cell by cell.
    """
    limit = ROW_LIMIT if row_limit is None else row_limit
    out: dict[str, list[str]] = {}
    for code in code_order(frame):
        rows = frame.filter(pl.col("code") == code)
        out[code] = _code_sheets(book, code, rows, cells, used, limit, splices)
    return out


def _code_sheets(book: Workbook, code: str, rows: pl.DataFrame, cells: Cells, used: set[str],
                 limit: int, splices: list[Splice] | None = None) -> list[str]:
    sizes = part_sizes(rows.height, limit)
    first = sheet_name(code_label(code, cells.lang), used)
    names = [first] + [sheet_name(f"{fit_name(first, SHEET_NAME_LIMIT - len(f' ({k})'))} ({k})", used)
                       for k in range(2, len(sizes) + 1)]
    action_text = action(code, cells.lang) if code in BY_CODE else None
    offset = 0
    for k, size in enumerate(sizes):
        sheet = book.create_sheet(names[k])
        _start_table(sheet, EXCEPTION_SHEET_COLUMNS, size, {}, cells.h)
        if k > 0:  # a note cell right of the table, outside the filter
            sheet.append([*_header(sheet, cells, EXCEPTION_SHEET_COLUMNS, {}), None,
                          cells.note(sheet, cells.h["continued_from"].format(sheet=names[k - 1]))])
        else:
            sheet.append(_header(sheet, cells, EXCEPTION_SHEET_COLUMNS, {}))
        if splices is not None and size:
            part = rows.slice(offset, size)
            if action_text is not None:
                part = part.with_columns(suggested_action=pl.lit(action_text, pl.String))
            splices.append(Splice(len(book.worksheets), part, EXCEPTION_SHEET_COLUMNS))
            sheet.append(placeholder_row(sheet, cells))
        for row in _rows(rows.slice(offset, size)) if splices is None else ():
            if action_text is not None:
                row["suggested_action"] = action_text
            currency = row.get("currency")
            sheet.append([cells.value(sheet, row[c], currency) for c in EXCEPTION_SHEET_COLUMNS])
        if k + 1 < len(sizes):
            sheet.append([cells.note(sheet, cells.h["continued_on"].format(sheet=names[k + 1]))])
        offset += size
    return names


def add_repairs_sheet(book: Workbook, repairs: pl.DataFrame, cells: Cells, used: set[str]) -> str:
    """The repair journal of the run's channels, or one line saying there is none."""
    name = sheet_name(cells.h["repairs"], used)
    sheet = book.create_sheet(name)
    _start_table(sheet, REPAIR_COLUMNS, repairs.height, REPAIR_HEADINGS, cells.h)
    sheet.append(_header(sheet, cells, REPAIR_COLUMNS, REPAIR_HEADINGS))
    if repairs.is_empty():
        sheet.append([cells.note(sheet, cells.h["no_repairs"])])
        return name
    for row in _rows(repairs):
        sheet.append([cells.value(sheet, row.get(c)) for c in REPAIR_COLUMNS])
    return name


def _start_table(sheet: WriteOnlyWorksheet, columns: tuple[str, ...], rows: int, keys: dict[str, str],
                 h: dict[str, str]) -> None:
    """Widths, frozen header and filter: all must be set before the first row is streamed."""
    for i, column in enumerate(columns, 1):
        sheet.column_dimensions[get_column_letter(i)].width = _width(column, h[keys.get(column, column)])
    sheet.freeze_panes = "A2"
    if rows:
        sheet.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{rows + 1}"


def _header(sheet: WriteOnlyWorksheet, cells: Cells, columns: tuple[str, ...],
            keys: dict[str, str]) -> list[WriteOnlyCell]:
    return [cells.bold(sheet, cells.h[keys.get(c, c)]) for c in columns]


def _width(column: str, heading: str) -> float:
    if column in ("shop_amount", "channel_amount", "difference"):
        base = MONEY_WIDTH
    elif column.endswith("_at") or column == "first_seen":
        base = TIME_WIDTH
    else:
        base = WIDTHS.get(column, 14)
    # CJK characters take two columns
    return max(base, sum(2 if ord(ch) > 0x2E80 else 1 for ch in heading) + 3)


def _rows(frame: pl.DataFrame) -> Iterator[dict[str, Any]]:
    """The frame's rows in slices: a million exceptions never become a million dicts at once."""
    for chunk in frame.iter_slices(SLICE_ROWS):
        yield from chunk.iter_rows(named=True)
