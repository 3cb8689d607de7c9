"""Exception rows written into the saved workbook as sheet XML built by polars, a slice at a time.

openpyxl spends tens of microseconds per cell; a day with half a million exceptions is ten million
cells. So openpyxl writes each exception sheet with its header, its notes and one placeholder row of
styled cells (which registers the number formats and the quote prefix in the workbook's styles), and
the rows themselves are spliced in afterwards: every cell built by vectorised string expressions,
streamed into the archive in slices (bounded memory), with the same values, types and styles the
per-cell path (``Cells.value``) gives:

* null → no cell; integers → numbers; booleans → the language's yes/no text;
* decimals → numbers with the money format of the row's currency (their exact decimal text);
* times → Excel serials of the shop's wall clock, whole seconds; dates → serial days;
* text → control characters replaced and over-long text cut (``clean_text``), a formula-like value
  or an error code kept as text with Excel's quote prefix.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from itertools import islice
from decimal import Decimal
from pathlib import Path

import polars as pl
from openpyxl.cell.cell import ERROR_CODES
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from reports.safe_cell import EXCEL_CELL_LIMIT, FORMULA_TRIGGERS

# Rows built and written per step: bounds memory whatever the number of exceptions.
SLICE_ROWS = 50_000
# zlib level of the spliced sheets: level 1 deflates sheet XML ninefold at 350 MB/s (level 6: tenfold at 100 MB/s),
# so compressing a slice takes less than building the next one beside it.
SHEET_COMPRESSION = 1
# Slices built side by side: building a slice's XML is most of the work and polars runs one slice on one core.
BUILDERS = 2
# A slice's text column with at most a quarter as many distinct values as rows has each value's cell made once.
FEW_VALUES_FROM = 64
# Excel's day zero (the 1900 date system, as openpyxl writes it) and the seconds in a day.
EXCEL_EPOCH = datetime(1899, 12, 30)
SECONDS_PER_DAY = 86_400
# The placeholder row's cells, in order: the styles the spliced cells reuse.
PLACEHOLDER_STYLES = ("money_cny", "money", "time", "date", "quoted")
ILLEGAL_CHARS = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"  # as safe_cell._ILLEGAL
# A text value that _text_after_ref would change or quote: an illegal control character, markup, a formula's start.
NOT_PLAIN = ILLEGAL_CHARS[:-1] + "&<>]|^[" + "".join(rf"\x{ord(c):02x}" for c in FORMULA_TRIGGERS) + "]"
TRUNCATED = "…[truncated]"
# Compression of the spliced sheets: level 1 is several times faster than zlib's default for a few % more bytes.
SPLICE_COMPRESSLEVEL = 1
_ROW = re.compile(r'<row r="(\d+)"[^>]*>.*?</row>', re.S)
_STYLE = re.compile(r'<c r="[A-Z]+\d+" s="(\d+)"')


@dataclass(frozen=True)
class Splice:
    """Rows to put in place of the placeholder row of one sheet (its 1-based position in the book)."""

    sheet: int
    rows: pl.DataFrame
    columns: tuple[str, ...]


def placeholder_row(sheet: WriteOnlyWorksheet, cells: object) -> list[object]:
    """The styled cells whose style ids the spliced rows reuse (see PLACEHOLDER_STYLES)."""
    return [cells.money(sheet, Decimal(0), "CNY"), cells.money(sheet, Decimal(0), None),  # type: ignore[attr-defined]
            cells.time(sheet, datetime(2000, 1, 1)), cells.day(sheet, date(2000, 1, 1)),  # type: ignore[attr-defined]
            cells.text_cell(sheet, "=")]  # type: ignore[attr-defined]


def splice(path: Path, splices: list[Splice], zone: str, yes: str, no: str) -> None:
    """Rewrite the saved workbook at ``path`` with each splice's rows in its sheet."""
    if not splices:
        return
    by_name = {f"xl/worksheets/sheet{s.sheet}.xml": s for s in splices}
    out = path.with_name(path.name + ".splice")
    try:
        with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED,
                                                           compresslevel=SHEET_COMPRESSION) as dst:
            for info in src.infolist():
                found = by_name.get(info.filename)
                if found is None:
                    dst.writestr(info, src.read(info.filename))
                    continue
                xml = src.read(info.filename).decode("utf-8")
                # Opened by name, so the entry takes the archive's compression (a ZipInfo made here would be stored).
                with dst.open(info.filename, "w", force_zip64=True) as fh:
                    _write_sheet(fh, xml, found, zone, yes, no)
        os.replace(out, path)
    except BaseException:
        out.unlink(missing_ok=True)
        raise


def _write_sheet(fh: object, xml: str, job: Splice, zone: str, yes: str, no: str) -> None:
    rows = list(_ROW.finditer(xml))
    placeholder = next(m for m in rows if m.group(1) == "2")
    styles = dict(zip(PLACEHOLDER_STYLES, _STYLE.findall(placeholder.group(0)), strict=True))
    shift = job.rows.height - 1  # rows after the placeholder move down by this much
    tail = xml[placeholder.end():]
    for m in _ROW.finditer(tail):
        old = int(m.group(1))
        moved = re.sub(r'(<c r="[A-Z]+)' + str(old) + '"', lambda c: f'{c.group(1)}{old + shift}"', m.group(0))
        tail = tail.replace(m.group(0), moved.replace(f'<row r="{old}"', f'<row r="{old + shift}"', 1), 1)
    write = fh.write  # type: ignore[attr-defined]
    write(xml[:placeholder.start()].encode("utf-8"))

    def build(offset: int) -> bytes:
        part = job.rows.slice(offset, SLICE_ROWS)
        built = part.select(_row_xml(part, job.columns, 2 + offset, styles, zone, yes, no).alias("xml"))
        # As UTF-8 bytes straight from polars: a Python string of the slice would be built only to be encoded.
        return built["xml"].str.join("").cast(pl.Binary).item()  # type: ignore[no-any-return]

    # Slices are built on threads while this one is compressed and written: polars and zlib both let go of the
    # GIL. BUILDERS slices ahead, no more, to keep memory bounded.
    offsets = iter(range(0, job.rows.height, SLICE_ROWS))
    with ThreadPoolExecutor(BUILDERS, thread_name_prefix="sheet") as pool:
        ahead = deque(pool.submit(build, offset) for offset in islice(offsets, BUILDERS))
        while ahead:
            built = ahead.popleft().result()
            ahead.extend(pool.submit(build, offset) for offset in islice(offsets, 1))
            write(built)
            del built
    write(tail.encode("utf-8"))


def _row_xml(frame: pl.DataFrame, columns: tuple[str, ...], first: int, styles: dict[str, str], zone: str,
             yes: str, no: str) -> pl.Expr:
    number = pl.int_range(first, first + pl.len(), dtype=pl.Int64).cast(pl.String)
    currency = pl.col("currency") if "currency" in frame.columns else pl.lit(None, pl.String)
    plain = {c: _plain(frame, c) for c in columns}  # a plain column's values go in as they are: none looked up
    cells = [_cell(frame.schema[c], c, get_column_letter(i), number, currency, styles, zone, yes, no,
                   None if plain[c] else _few_values(frame, c), plain[c]) for i, c in enumerate(columns, 1)]
    return pl.concat_str([pl.lit('<row r="'), number, pl.lit('">'), *cells, pl.lit("</row>")])


def _few_values(frame: pl.DataFrame, column: str) -> pl.Series | None:
    """The distinct values of a text column that repeats them (a code, a channel, a status), else None."""
    if frame.schema[column] != pl.String or frame.height < FEW_VALUES_FROM:
        return None
    distinct = frame[column].unique()
    return distinct if distinct.len() * 4 <= frame.height else None


def _plain(frame: pl.DataFrame, column: str) -> bool:
    """True when no value of a text column needs cleaning, escaping, quoting, truncating or its spaces kept:
    the values then go into their cells as they are (an order number, a transaction id, an address)."""
    if frame.schema[column] != pl.String:
        return False
    values = frame[column].drop_nulls()
    return not (values.str.contains(NOT_PLAIN).any() or (values.str.len_bytes() > EXCEL_CELL_LIMIT).any()
                or values.is_in(sorted(ERROR_CODES)).any() or (values.str.strip_chars() != values).any()
                or (values == "").any())


def _cell(dtype: pl.DataType, column: str, letter: str, number: pl.Expr, currency: pl.Expr, styles: dict[str, str],
          zone: str, yes: str, no: str, few: pl.Series | None = None, plain: bool = False) -> pl.Expr:
    """One column's ``<c>`` element per row ('' for a null value). ``few``: the column's distinct values, when
    it has few; each value's cell is then made once and looked up for every row. ``plain``: no value of the
    column needs cleaning (see ``_plain``)."""
    value = pl.col(column)
    ref = pl.lit(f'<c r="{letter}') + number
    if dtype.is_integer():
        body = ref + pl.lit('" t="n"><v>') + value.cast(pl.String) + pl.lit("</v></c>")
    elif isinstance(dtype, pl.Boolean):
        return ref + _text_after_ref(pl.when(value).then(pl.lit(yes)).otherwise(pl.lit(no)), styles)
    elif isinstance(dtype, pl.Decimal):
        style = pl.when(currency == "CNY").then(pl.lit(styles["money_cny"])).otherwise(pl.lit(styles["money"]))
        text = value.cast(pl.String)
        if dtype.scale:
            text = text.str.strip_chars_end("0").str.strip_chars_end(".")
        body = ref + pl.lit('" s="') + style + pl.lit('" t="n"><v>') + text + pl.lit("</v></c>")
    elif isinstance(dtype, pl.Datetime):
        local = value.dt.convert_time_zone(zone) if dtype.time_zone else value
        seconds = (local.dt.replace_time_zone(None).dt.truncate("1s") - pl.lit(EXCEL_EPOCH)).dt.total_seconds()
        serial = (seconds // SECONDS_PER_DAY).cast(pl.Float64) + (seconds % SECONDS_PER_DAY) / SECONDS_PER_DAY
        body = ref + pl.lit(f'" s="{styles["time"]}" t="n"><v>') + serial.cast(pl.String) + pl.lit("</v></c>")
    elif isinstance(dtype, pl.Date):
        days = (value - pl.lit(EXCEL_EPOCH.date())).dt.total_days()
        body = ref + pl.lit(f'" s="{styles["date"]}" t="n"><v>') + days.cast(pl.String) + pl.lit("</v></c>")
    elif dtype.is_float():
        body = ref + pl.lit('" t="n"><v>') + value.cast(pl.String) + pl.lit("</v></c>")
    elif plain:
        body = ref + pl.lit('" t="inlineStr"><is><t>') + value + pl.lit("</t></is></c>")
    elif few is not None:
        made = pl.DataFrame({"value": few.drop_nulls()}).select("value", cell=_text_after_ref(pl.col("value"), styles))
        body = ref + value.replace_strict(made["value"], made["cell"], return_dtype=pl.String)
    else:
        body = ref + _text_after_ref(value.cast(pl.String), styles)
    return pl.when(value.is_null()).then(pl.lit("")).otherwise(body)


def _text_after_ref(value: pl.Expr, styles: dict[str, str]) -> pl.Expr:
    """A string cell after its reference, cleaned like ``safe_cell.clean_text``; formula-like text and error codes
    quoted."""
    cleaned = value.str.replace_all(ILLEGAL_CHARS, "\ufffd")
    cleaned = pl.when(cleaned.str.len_chars() > EXCEL_CELL_LIMIT).then(
        cleaned.str.slice(0, EXCEL_CELL_LIMIT - len(TRUNCATED)) + pl.lit(TRUNCATED)).otherwise(cleaned)
    quoted = cleaned.str.starts_with(FORMULA_TRIGGERS[0])
    for trigger in FORMULA_TRIGGERS[1:]:
        quoted = quoted | cleaned.str.starts_with(trigger)
    quoted = quoted | cleaned.is_in(sorted(ERROR_CODES))
    escaped = cleaned.str.replace_all("&", "&amp;", literal=True).str.replace_all(
        "<", "&lt;", literal=True).str.replace_all(">", "&gt;", literal=True)
    attrs = pl.when(quoted).then(pl.lit(f'" s="{styles["quoted"]}" t="inlineStr')).otherwise(pl.lit('" t="inlineStr'))
    stripped = cleaned.str.strip_chars()
    space = pl.when((stripped != "") & (stripped != cleaned)).then(pl.lit(' xml:space="preserve"')).otherwise(
        pl.lit(""))
    return pl.when(cleaned == "").then(attrs + pl.lit('"/>')).otherwise(
        attrs + pl.lit('"><is><t') + space + pl.lit(">") + escaped + pl.lit("</t></is></c>"))
