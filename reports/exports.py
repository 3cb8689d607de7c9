"""Flat exports of a run for other tools: every result row and every open exception, as CSV and Parquet.

Files: ``recon_<date>_run<id>_results.{csv,parquet}`` and ``recon_<date>_run<id>_exceptions.{csv,parquet}``,
each written atomically (reports.atomic).

CSV is for people with a spreadsheet: UTF-8 with a BOM (Excel then reads Chinese text), CRLF line ends,
every cell quoted, one header row in the report language (the canonical English column names for
``en``, the zh-CN headings otherwise; there is no second "machine" header row, it would break filters
and CSV readers), a ``code_label`` column beside ``code`` with the code in that language. Text cells
are untrusted (payer names, memos, order numbers of strangers): control characters are replaced,
over-long text is cut visibly, and a cell starting with = + - @ TAB CR LF gets a leading ``'``
(OWASP CSV injection; exactly ``reports.safe_cell.csv_text``). Numbers are never escaped: amounts are
exact decimal text (``-88.00``, ``0.00012``; never through float), times are ISO 8601 with the shop
zone's offset, dates ISO, booleans yes/no (是/否).

Parquet is for machines: always the canonical English column names, typed columns (money
``Decimal(20,6)``, timestamps with the shop's time zone, dates, integers, booleans, strings), raw
codes and raw text (a Parquet reader does not evaluate formulas).

Everything is built with polars expressions over whole columns, never a Python loop per row.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import polars as pl

from recon.taxonomy import BY_CODE
from reports.atomic import write_atomically
from reports.labels import headings
from reports.model import MONEY_COLUMNS, ReportData
from reports.safe_cell import EXCEL_CELL_LIMIT, FORMULA_TRIGGERS

MONEY_TYPE = pl.Decimal(20, 6)
# Columns of the results table that reports.labels has no heading for.
_EXTRA_HEADINGS = {
    "zh-CN": {"run_id": "对账批次", "unit_key": "对账键", "diff": "差额", "shop_currency": "店铺币种",
              "fee": "手续费", "expected_fee": "应收手续费", "code_label": "差异说明", "last_seen": "最近发现"},
    "en": {"code_label": "code_label"},
}
_ILLEGAL = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"  # the characters reports.safe_cell.clean_text replaces
_TRUNCATED = "…[truncated]"
_FORMULA_START = "^[" + "".join("\\" + c if c in "-\\]^" else c for c in FORMULA_TRIGGERS) + "]"
# Sub-cent digits are kept, trailing zeros beyond the cents dropped: 88.000000 → 88.00 (recon.money.money_str).
_TRAILING_ZEROS = (r"^(-?\d+\.\d\d\d*?)0+$", "${1}")


def render_csv(data: ReportData, out_dir: Path, lang: str) -> list[Path]:
    """Write the results and exceptions CSV files of ``data``'s run; return their paths."""
    return [_write_csv(frame, _target(data, out_dir, part, "csv"), data.zone, lang)
            for part, frame in _parts(data)]


def render_parquet(data: ReportData, out_dir: Path, lang: str) -> list[Path]:
    """Write the results and exceptions Parquet files (canonical column names whatever ``lang``)."""
    del lang  # Parquet is for machines: column names and codes are never translated
    return [write_atomically(_target(data, out_dir, part, "parquet"),
                             partial(_write_parquet, typed_frame(frame, data.zone)))
            for part, frame in _parts(data)]


def _parts(data: ReportData) -> list[tuple[str, pl.DataFrame]]:
    assert data.results is not None, "load_report(..., with_results=True) for the exports"
    return [("results", data.results), ("exceptions", data.exceptions)]


def _target(data: ReportData, out_dir: Path, part: str, ext: str) -> Path:
    return out_dir / f"recon_{data.business_date.isoformat()}_run{data.run_id}_{part}.{ext}"


def typed_frame(frame: pl.DataFrame, zone: str) -> pl.DataFrame:
    """The Parquet schema: money Decimal(20,6), timestamps in ``zone``, everything else as stored."""
    exprs = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if name in MONEY_COLUMNS or isinstance(dtype, pl.Decimal):
            exprs.append(col.cast(MONEY_TYPE))
        elif isinstance(dtype, pl.Datetime):
            exprs.append((col if dtype.time_zone else col.dt.replace_time_zone("UTC")).dt.convert_time_zone(zone))
        elif dtype == pl.Null:
            exprs.append(col.cast(pl.String))
        else:
            exprs.append(col)
    return frame.select(exprs)


def csv_frame(frame: pl.DataFrame, zone: str, lang: str) -> pl.DataFrame:
    """Every column as the text its CSV cell holds (nulls as empty text), headed in ``lang``."""
    yes_no = headings(lang)
    exprs: list[pl.Expr] = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if isinstance(dtype, pl.Decimal) or name in MONEY_COLUMNS and dtype.is_numeric():
            text = col.cast(MONEY_TYPE).cast(pl.String).str.replace(*_TRAILING_ZEROS)
        elif isinstance(dtype, pl.Datetime):
            aware = col if dtype.time_zone else col.dt.replace_time_zone("UTC")
            text = aware.dt.convert_time_zone(zone).dt.strftime("%Y-%m-%dT%H:%M:%S%.f%:z")
        elif dtype == pl.Date:
            text = col.dt.strftime("%Y-%m-%d")
        elif dtype == pl.Boolean:
            text = pl.when(col).then(pl.lit(yes_no["yes"])).otherwise(pl.lit(yes_no["no"]))
        elif dtype.is_numeric():
            text = col.cast(pl.String)
        else:  # untrusted text (and anything unexpected, rendered as text)
            text = safe_text(col.cast(pl.String))
        exprs.append(text.fill_null("").alias(name))
        if name == "code":
            exprs.append(code_label(col, lang).fill_null("").alias("code_label"))
    return frame.select(exprs).rename(_headings(frame.columns, lang))


def safe_text(col: pl.Expr) -> pl.Expr:
    """``reports.safe_cell.csv_text`` over a whole column: clean, cut visibly, defuse formulas."""
    cleaned = col.str.replace_all(_ILLEGAL, "\ufffd")
    cut = (pl.when(cleaned.str.len_chars() > EXCEL_CELL_LIMIT)
           .then(cleaned.str.slice(0, EXCEL_CELL_LIMIT - len(_TRUNCATED)) + pl.lit(_TRUNCATED))
           .otherwise(cleaned))
    return pl.when(cut.str.contains(_FORMULA_START)).then(pl.lit("'") + cut).otherwise(cut)


def code_label(col: pl.Expr, lang: str) -> pl.Expr:
    """The code in ``lang``; an unknown code is shown as itself (made safe like any text)."""
    mapping = {c.code: (c.en if lang == "en" else c.zh) for c in BY_CODE.values()}
    return safe_text(col.replace_strict(mapping, default=col, return_dtype=pl.String))


def _headings(columns: list[str], lang: str) -> dict[str, str]:
    if lang == "en":
        return {}
    known = {**headings(lang), **_EXTRA_HEADINGS["zh-CN"]}
    names = [*columns[: columns.index("code") + 1], "code_label", *columns[columns.index("code") + 1:]] \
        if "code" in columns else columns
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        title = known.get(name, name)
        if title in used:  # two columns with one heading: the second keeps its canonical name
            title = f"{title} ({name})"
        used.add(title)
        out[name] = title
    return out


def _write_parquet(frame: pl.DataFrame, tmp: Path) -> None:
    frame.write_parquet(tmp, compression="zstd")


def _write_csv(frame: pl.DataFrame, target: Path, zone: str, lang: str) -> Path:
    text = csv_frame(frame, zone, lang)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            text.write_csv(fh, include_bom=True, quote_style="always", line_terminator="\r\n")

    return write_atomically(target, write)
