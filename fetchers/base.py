"""The statement-parser protocol every channel module implements, and the canonical row schema."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
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
    "upstream_txn_id": pl.String(),
}


@dataclass(frozen=True)
class ParsedStatement:
    """What a parser found in one file.

    ``period`` is the span of business dates the file covers completely (a day bill covers its
    day even when empty); ``None`` when the file does not say, in which case the dates of its rows
    are taken. ``merchant_line`` is the line that names ``merchant_id``, for an error about it.
    """

    rows: pl.DataFrame
    period: tuple[date, date] | None = None
    merchant_id: str | None = None
    merchant_line: int | None = None


class StatementParser(Protocol):
    """Turns the bytes of one statement file into canonical channel rows, or raises InputError."""

    def __call__(self, path: Path, raw: bytes, channel: ChannelConfig) -> ParsedStatement: ...


@dataclass(frozen=True)
class FetchedStatement:
    """One pull from a channel, stored like an import.

    Either ``raw`` (a bill file in the channel's native format, parsed by its parser) or ``rows``
    (API records already in CANONICAL_SCHEMA). ``name`` stands for the file name in provenance and
    errors; ``source`` is ``api:<endpoint>``; ``period`` is the span of business dates it covers
    completely (an empty day included).
    """

    name: str
    source: str
    period: tuple[date, date]
    raw: bytes | None = None
    rows: pl.DataFrame | None = None


PAYMENT_STATES = ("paid", "unpaid", "closed", "refunded", "not_found", "unknown")


@dataclass(frozen=True)
class QueryResult:
    """What a channel's order-query API says about one order right now, signature verified."""

    channel: str
    order_no: str
    state: str  # one of PAYMENT_STATES
    raw_status: str  # the channel's own word, e.g. TRADE_SUCCESS
    amount: Decimal | None = None
    currency: str | None = None
    channel_txn_id: str | None = None
    paid_at: datetime | None = None
    note: str = ""  # e.g. why a state is ambiguous


class ChannelFetcher(Protocol):
    """Pulls a business date's records and answers order queries for one configured channel."""

    def fetch(self, day: date) -> list[FetchedStatement]:
        """The channel's records of ``day``; raise NotReady when the bill is not published yet."""
        ...

    def query(self, order_no: str) -> QueryResult:
        """Ask the channel now whether ``order_no`` was paid."""
        ...
