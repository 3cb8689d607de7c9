"""PayPal: the STL settlement report file, and the API client (fetchers/paypal_api.py).

Format: reference/channel-formats.md §5.2. Every line starts with its record type:

    RH report header   "RH",<generated at>,<window>,<account id>,<version>
    FH file header     "FH",<file sequence 01, 02 …>
    SH section header  "SH",<start>,<end>,<account id>,…
    CH column header   "CH","Transaction ID","Invoice ID",…          (one per section, matched by name)
    SB section body    one transaction; amounts unsigned minor units, direction in the CR/DR columns
    SF section footer  "SF",<currency>,<gross CR total>,<gross DR total>,<fee CR total>,<fee DR total>,…
    SC section count   "SC",<SB lines in the section>
    RF report footer   like SF, over the whole report (in the report's last file only)
    RC report count    "RC",<SB lines in the report>
    FF file footer     "FF",<records in this file>

The footer layout is our reading of PayPal's settlement-report spec, not checked against a real file (the
fixtures are synthetic); fields after the four fee/gross totals (balances) are not used. A file whose
lines do not add up to its footers, or that does not end in FF, is refused with the footer's line.
"""

from __future__ import annotations

import csv
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl

from fetchers.base import MONEY, ParsedStatement
from fetchers.paypal_api import PaypalFetcher, exponent_expr, order_field
from fetchers.tabular import (
    canonical,
    check_complete,
    decode,
    line_frame,
    natural_key,
    pick_columns,
    split_csv,
    split_lines,
    text,
)
from recon.config import ChannelConfig
from recon.errors import InputError

# UTF-8 since v7 (older files were UTF-16 and are not read); spec 9.0.3 notes a BOM may be present.
ENCODINGS = ("utf-8-sig",)
# Date-times carry an offset without a colon: 2024/08/20 00:01:17 -0700.
TIME_FORMAT = "%Y/%m/%d %H:%M:%S %z"
RECORD_TYPES = ("RH", "FH", "SH", "CH", "SB", "SF", "SC", "RF", "RC", "FF")
# ASCII digits: the regex engine's \d also takes other scripts' digits, which the integer cast refuses.
# Minor units are cast to DECIMAL(20,6) before scaling, which holds 14 integer digits: longer is refused.
UNSIGNED = r"^[0-9]{1,14}$"
DIRECTIONS = ("CR", "DR")

COLUMNS = {
    "txn": ("Transaction ID",),
    "invoice_id": ("Invoice ID",),
    "reference_id": ("PayPal Reference ID",),
    "reference_type": ("PayPal Reference ID Type",),
    "event_code": ("Transaction Event Code",),
    "completed": ("Transaction Completion Date",),
    "initiated": ("Transaction Initiation Date",),
    "direction": ("Transaction Debit or Credit",),
    "gross": ("Gross Transaction Amount",),
    "currency": ("Gross Transaction Currency",),
    "fee_direction": ("Fee Debit or Credit",),
    "fee": ("Fee Amount",),
    "custom_field": ("Custom Field",),
    "counterparty": ("Consumer ID",),
}
REQUIRED = ["txn", "event_code", "completed", "direction", "gross", "currency"]


def parse_settlement_report(path: Path, raw: bytes, channel: ChannelConfig) -> ParsedStatement:
    """Parse a PayPal STL settlement report (STL-yyyymmdd.NN.VVV.CSV)."""
    if not raw.strip():
        raise InputError(path, "the file is empty (an interrupted download?)", 1)
    lines = split_lines(decode(raw, path, ENCODINGS))
    records = _records(path, lines)
    headers = records.filter(pl.col("type") == "CH")
    if headers.is_empty():
        raise InputError(path, "no CH column-header line", 1)
    if headers["text"].n_unique() > 1:
        raise InputError(path, "the sections' CH column headers differ", int(headers["line_no"][1]))
    body = records.filter(pl.col("type") == "SB")
    cells = split_csv(path, headers["text"][0], body.select("text", "line_no"))
    field = order_field(channel)
    spec = {**COLUMNS, "order_no": COLUMNS[field]}
    cols = pick_columns(path, cells, spec, [*REQUIRED, "order_no"], int(headers["line_no"][0]))
    cells = cells.with_columns(section=body["section"])
    frame = _transactions(path, cells, cols, channel)
    _check_footers(path, records, frame)
    merchant, merchant_line = _merchant(records)
    return ParsedStatement(rows=check_complete(path, canonical(frame)), period=_period(path, records, channel.zone),
                           merchant_id=merchant, merchant_line=merchant_line)


def _merchant(records: pl.DataFrame) -> tuple[str | None, int | None]:
    """The account id of the RH record (else of the first SH) and its line."""
    for kind in ("RH", "SH"):
        account = _field(records, kind, 3)
        if account:
            return account, int(records.filter(pl.col("type") == kind)["line_no"][0])
    return None, None


def _records(path: Path, lines: pl.Series) -> pl.DataFrame:
    """Non-blank lines with their record type and section number; RH first and FF last or refused."""
    frame = line_frame(lines, 0, len(lines)).with_columns(
        type=pl.col("text").str.extract(r'^\ufeff?\s*"?([A-Z]{2})"?\s*(?:,|$)', 1))
    if frame.is_empty():
        raise InputError(path, "the file holds no records", 1)
    bad = frame.filter(pl.col("type").is_null() | ~pl.col("type").is_in(RECORD_TYPES))
    if bad.height:
        raise InputError(path, f"not a settlement record (expected one of {', '.join(RECORD_TYPES)}): "
                               f"{bad['text'][0][:40]!r}", int(bad["line_no"][0]))
    if frame["type"][0] != "RH":
        raise InputError(path, "not a PayPal settlement report: the first record is not RH", int(frame["line_no"][0]))
    if frame["type"][-1] != "FF":
        raise InputError(path, "truncated: the file does not end with its FF file footer", int(frame["line_no"][-1]))
    return frame.with_columns(section=(pl.col("type") == "SH").cum_sum())


def _transactions(path: Path, cells: pl.DataFrame, cols: dict[str, str], channel: ChannelConfig) -> pl.DataFrame:
    for key in ("gross", "fee"):
        if key in cols:
            bad = cells.filter(text(cols[key]).is_not_null() & ~text(cols[key]).str.contains(UNSIGNED))
            if bad.height:
                raise InputError(path, f"{cols[key]}: {bad[cols[key]][0]!r} is not an unsigned amount in minor units "
                                 "(at most 14 digits)",
                                 int(bad["line_no"][0]))
    for key in ("direction", "fee_direction"):
        if key in cols:
            # The transaction's direction is always written; a fee's only when there is a fee.
            given = text(cols[key]).is_not_null() | pl.lit(key == "direction")
            bad = cells.filter(given & ~text(cols[key]).fill_null("").is_in(DIRECTIONS))
            if bad.height:
                raise InputError(path, f"{cols[key]}: {bad[cols[key]][0]!r} is neither CR nor DR",
                                 int(bad["line_no"][0]))
    times = {c: text(cols[c]).str.strptime(pl.Datetime("us", "UTC"), TIME_FORMAT, strict=False)
             for c in ("completed", "initiated") if c in cols}
    for key, parsed in times.items():
        bad = cells.filter(text(cols[key]).is_not_null() & parsed.is_null())
        if bad.height:
            raise InputError(path, f"{cols[key]}: {bad[cols[key]][0]!r} is not a time like 2024/08/20 00:01:17 -0700",
                             int(bad["line_no"][0]))
    frame = cells.with_columns(
        # Settled money counts on its completion date; the initiation date stands in when it is blank.
        occurred_at=pl.coalesce(list(times.values())),
        gross_minor=text(cols["gross"]).cast(pl.Int64).fill_null(0),
        fee_minor=(text(cols["fee"]).cast(pl.Int64) if "fee" in cols else pl.lit(0, pl.Int64)).fill_null(0),
        credit=text(cols["direction"]) == "CR",
        fee_credit=((text(cols["fee_direction"]) == "CR") if "fee_direction" in cols else pl.lit(False))
        .fill_null(False),
        currency=text(cols["currency"]).str.to_uppercase().fill_null(channel.currency),
        event=text(cols["event_code"]).fill_null(""),
    )
    bad = frame.filter(pl.col("occurred_at").is_null())
    if bad.height:
        raise InputError(path, "the transaction has no completion or initiation date", int(bad["line_no"][0]))
    scale = exponent_expr(pl.col("currency"))
    gross = pl.col("gross_minor").cast(MONEY) / pl.lit(10).pow(scale).cast(MONEY)
    fee = pl.col("fee_minor").cast(MONEY) / pl.lit(10).pow(scale).cast(MONEY)
    refund = pl.col("event").str.starts_with("T11")
    reference = text(cols["reference_id"]) if "reference_id" in cols else pl.lit(None, pl.String)
    is_txn_ref = (text(cols["reference_type"]) == "TXN") if "reference_type" in cols else pl.lit(False)
    frame = frame.with_columns(txn=text(cols["txn"]))
    if frame["txn"].null_count():
        raise InputError(path, f"{cols['txn']} is empty", int(frame.filter(pl.col("txn").is_null())["line_no"][0]))
    return frame.with_columns(
        # T00xx received = a payment; T11xx = reversals and refunds; T01xx = fees; the rest moves money
        # for no order (withdrawals, transfers, holds).
        kind=pl.when(pl.col("event").str.starts_with("T00") & pl.col("credit")).then(pl.lit("payment"))
        .when(refund).then(pl.lit("refund"))
        .when(pl.col("event").str.starts_with("T01")).then(pl.lit("fee"))
        .otherwise(pl.lit("adjustment")),
        amount=pl.when(pl.col("credit")).then(gross).otherwise(-gross).cast(MONEY),
        # Canonical fee is positive when charged: a DR fee is charged, a CR fee returned.
        fee=pl.when(pl.col("fee_credit")).then(-fee).otherwise(fee).cast(MONEY),
        status=pl.lit("success"),
        order_no=text(cols["order_no"]),
        channel_txn_id=pl.when(refund & is_txn_ref & reference.is_not_null()).then(reference)
        .otherwise(text(cols["txn"])),
        refund_id=pl.when(refund).then(text(cols["txn"])).otherwise(None),
        counterparty=text(cols["counterparty"]) if "counterparty" in cols else pl.lit(None, pl.String),
        business_date=pl.col("occurred_at").dt.convert_time_zone(channel.zone).dt.date(),
        # A transaction id may appear twice (balance-affecting and not); with its event code it is unique.
        natural_key=natural_key(["txn", "event"]),
    )


def _check_footers(path: Path, records: pl.DataFrame, frame: pl.DataFrame) -> None:
    """SF/SC per section, RF/RC per report, FF per file must match the SB lines."""
    sums = frame.group_by("section", "currency").agg(
        gross_cr=pl.col("gross_minor").filter(pl.col("credit")).sum(),
        gross_dr=pl.col("gross_minor").filter(~pl.col("credit")).sum(),
        fee_cr=pl.col("fee_minor").filter(pl.col("fee_credit")).sum(),
        fee_dr=pl.col("fee_minor").filter(~pl.col("fee_credit")).sum(),
    )
    counts = dict(frame.group_by("section").len().iter_rows())
    sequence = _field(records, "FH", 1)
    whole_report = sequence is None or sequence.lstrip("0") in ("", "1")
    footers = records.filter(pl.col("type").is_in(["SF", "SC", "RF", "RC", "FF"]))
    for line, line_no, kind, section in footers.select("text", "line_no", "type", "section").iter_rows():
        cells = next(csv.reader([line]))  # footer lines only: a few per section
        if kind in ("SF", "RF") and (kind == "SF" or whole_report):
            _check_totals(path, cells, line_no, sums if kind == "RF" else sums.filter(pl.col("section") == section))
        elif kind == "SC":
            _check_count(path, cells, line_no, "SC section record count", [counts.get(section, 0)])
        elif kind == "RC" and whole_report:
            _check_count(path, cells, line_no, "RC report record count", [frame.height])
        elif kind == "FF":
            # Whether FF counts body lines or every record is not settled (§10 of the reference): accept both.
            _check_count(path, cells, line_no, "FF file record count", [frame.height, records.height])


def _check_totals(path: Path, cells: list[str], line_no: int, sums: pl.DataFrame) -> None:
    if len(cells) < 6 or not all(_is_count(c) for c in cells[2:6]):
        raise InputError(path, f"{cells[0]} footer: expected currency and four unsigned totals", line_no)
    currency = cells[1].strip().upper()
    mine = sums.filter(pl.col("currency") == currency).select("gross_cr", "gross_dr", "fee_cr", "fee_dr").sum()
    found = [int(mine[c][0] or 0) for c in mine.columns]
    stated = [int(c.strip()) for c in cells[2:6]]
    if found != stated:
        names = ("gross CR", "gross DR", "fee CR", "fee DR")
        diff = ", ".join(f"{n} {s} vs {f}" for n, s, f in zip(names, stated, found, strict=True) if s != f)
        raise InputError(path, f"{cells[0]} footer totals for {currency} do not match the SB lines "
                               f"(footer vs lines, minor units): {diff}", line_no)


def _check_count(path: Path, cells: list[str], line_no: int, label: str, accepted: list[int]) -> None:
    value = cells[1].strip() if len(cells) > 1 else ""
    if not _is_count(value):
        raise InputError(path, f"{label}: {value!r} is not a count", line_no)
    if int(value) not in accepted:
        raise InputError(path, f"{label} says {int(value)}, but the file holds {accepted[0]}", line_no)


def _is_count(cell: str) -> bool:
    """ASCII digits only (str.isdigit also accepts '²' and other digits int() refuses)."""
    value = cell.strip()
    return value.isascii() and value.isdigit()


def _field(records: pl.DataFrame, kind: str, index: int) -> str | None:
    """Cell ``index`` of the first record of ``kind``."""
    found = records.filter(pl.col("type") == kind)
    if found.is_empty():
        return None
    cells = next(csv.reader([found["text"][0]]), [])
    value = cells[index].strip() if len(cells) > index else ""
    return value or None


def _period(path: Path, records: pl.DataFrame, zone: str) -> tuple[date, date] | None:
    """Business dates (in ``zone``) that the first section's start..end window covers whole."""
    start_text, end_text = _field(records, "SH", 1), _field(records, "SH", 2)
    if not start_text or not end_text:
        return None
    try:
        start = datetime.strptime(start_text, TIME_FORMAT).astimezone(ZoneInfo(zone))
        end = (datetime.strptime(end_text, TIME_FORMAT) + timedelta(seconds=1)).astimezone(ZoneInfo(zone))
    except (ValueError, OverflowError):
        line = int(records.filter(pl.col("type") == "SH")["line_no"][0])
        raise InputError(path, f"SH section dates {start_text!r}..{end_text!r} are not times", line) from None
    first = start.date() if start.time() == datetime.min.time() else start.date() + timedelta(days=1)
    last = end.date() - timedelta(days=1)
    return (first, last) if first <= last else None


__all__ = ["PaypalFetcher", "parse_settlement_report"]
