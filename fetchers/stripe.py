"""Stripe: the balance (itemized balance change) report CSV, and the API client (fetchers/stripe_api.py).

Format: reference/channel-formats.md §5.1. Columns are matched by header name, so a report run with
extra or reordered ``columns[]`` parses the same. The report must include
``payment_metadata[<key>]`` (key: ``api.order_metadata_key``, default ``order_no``): it is the only
place the shop's order number appears, so a report without it is refused with a message saying so.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from fetchers.base import MONEY, ParsedStatement
from fetchers.stripe_api import DEFAULT_METADATA_KEY, StripeFetcher, kind_of_category
from fetchers.tabular import (
    amount,
    canonical,
    check_amounts,
    check_complete,
    decode,
    line_frame,
    natural_key,
    parse_times,
    pick_columns,
    split_csv,
    split_lines,
    text,
)
from recon.config import ChannelConfig
from recon.errors import InputError

# Exports are UTF-8, some with a BOM (channel-formats.md §5.1, §7).
ENCODINGS = ("utf-8-sig",)
# `*_utc` columns: 'YYYY-MM-DD HH:MM:SS' in UTC, no 'T', no zone (DOC "CSV and API monetary formats differ").
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
TIME_ZONE = "UTC"
# A report requested with decimal_separator=',' writes '45,91'; the shared amount reader would take the
# comma for a thousands separator and read 4591, so a comma in an amount cell is refused instead.
DECIMAL_COMMA = ","


def columns(metadata_key: str) -> dict[str, tuple[str, ...]]:
    """Canonical name → the report's header names (first present wins)."""
    return {
        "balance_transaction_id": ("balance_transaction_id",),
        "created": ("created_utc",),
        "currency": ("currency",),
        "gross": ("gross",),
        "fee": ("fee",),
        "reporting_category": ("reporting_category",),
        "order_no": (f"payment_metadata[{metadata_key}]",),
        "payment_intent_id": ("payment_intent_id",),
        "charge_id": ("charge_id",),
        "source_id": ("source_id",),
        "counterparty": ("customer_email", "customer_id"),
    }


REQUIRED = ("balance_transaction_id", "created", "gross", "reporting_category", "order_no")


def parse_balance_report(path: Path, raw: bytes, channel: ChannelConfig) -> ParsedStatement:
    """Parse a Stripe balance / itemized balance change report (amounts in major units, times in UTC)."""
    if not raw.strip():
        raise InputError(path, "the file is empty (an interrupted download?)", 1)
    lines = split_lines(decode(raw, path, ENCODINGS))
    if lines.is_empty():
        raise InputError(path, "the file holds no header line", 1)
    key = channel.api.get("order_metadata_key") or DEFAULT_METADATA_KEY
    cells = split_csv(path, lines[0], line_frame(lines, 1, len(lines)))
    cols = pick_columns(path, cells, columns(key), REQUIRED, 1)
    money = [cols[c] for c in ("gross", "fee") if c in cols]
    _refuse_decimal_comma(path, cells, money)
    cells = check_amounts(path, cells, money)
    frame = parse_times(path, cells, cols["created"], TIME_FORMAT, TIME_ZONE)
    category = text(cols["reporting_category"]).str.to_lowercase()
    ids = [text(cols[c]) for c in ("payment_intent_id", "charge_id", "source_id") if c in cols]
    frame = frame.with_columns(
        kind=kind_of_category(category),
        amount=amount(cols["gross"], cleaned=True),
        fee=amount(cols["fee"], cleaned=True) if "fee" in cols else pl.lit(None, MONEY),
        currency=(text(cols["currency"]).str.to_uppercase() if "currency" in cols else pl.lit(None, pl.String))
        .fill_null(channel.currency),
        status=pl.lit("success"),
        order_no=text(cols["order_no"]),
        txn=text(cols["balance_transaction_id"]),
        counterparty=text(cols["counterparty"]) if "counterparty" in cols else pl.lit(None, pl.String),
        # Stripe reports times in UTC; the business date is the date in the channel's zone.
        business_date=pl.col("occurred_at").dt.convert_time_zone(channel.zone).dt.date(),
    )
    missing_id = frame.filter(pl.col("txn").is_null())
    if missing_id.height:
        raise InputError(path, "balance_transaction_id is empty", int(missing_id["line_no"][0]))
    frame = frame.with_columns(
        # The payment the row belongs to: its PaymentIntent (what shops record), else its charge.
        channel_txn_id=pl.coalesce([*ids, pl.col("txn")]),
        refund_id=pl.when(pl.col("kind") == "refund")
        .then(text(cols["source_id"]) if "source_id" in cols else pl.col("txn")).otherwise(None),
    )
    # balance_transaction_id names one movement of the balance: the record's key.
    return ParsedStatement(rows=check_complete(path, canonical(frame.with_columns(natural_key=natural_key(["txn"])))))


def _refuse_decimal_comma(path: Path, cells: pl.DataFrame, money: list[str]) -> None:
    for col in money:
        bad = cells.filter(pl.col(col).str.contains(DECIMAL_COMMA, literal=True))
        if bad.height:
            raise InputError(path, f"{col}: {bad[col][0]!r} uses a decimal comma; run the report with "
                                   f"decimal_separator='.'", int(bad["line_no"][0]))


__all__ = ["StripeFetcher", "parse_balance_report"]
