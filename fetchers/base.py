"""The statement-parser protocol every channel module implements, and the canonical row schema."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Protocol

import polars as pl

from recon.config import ChannelConfig

MONEY = pl.Decimal(20, 6)

# Columns of a parsed statement, in the order they are written to ``channel_txn``.
CANONICAL_SCHEMA: dict[str, pl.DataType] = {
    "kind": pl.String(),
    "order_no": pl.String(),
    "channel_txn_id": pl.String(),
    "refund_id": pl.String(),
    "amount": MONEY,
    "currency": pl.String(),
    "fee": MONEY,
    "status": pl.String(),
    "occurred_at": pl.Datetime("us", "UTC"),
    "business_date": pl.Date(),
    "counterparty": pl.String(),
    "line_no": pl.Int64(),
    "natural_key": pl.String(),
}


@dataclass(frozen=True)
class ParsedStatement:
    """What a parser found in one file.

    ``period`` is the span of business dates the file covers completely (a day bill covers its
    day even when empty); ``None`` when the file does not say, in which case the dates of its rows
    are taken.
    """

    rows: pl.DataFrame
    period: tuple[date, date] | None = None
    merchant_id: str | None = None


class StatementParser(Protocol):
    """Turns the bytes of one statement file into canonical channel rows, or raises InputError."""

    def __call__(self, path: Path, raw: bytes, channel: ChannelConfig) -> ParsedStatement: ...
