"""The shop-adapter protocol: read the shop's orders as canonical rows."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

import polars as pl

from fetchers.base import MONEY

SHOP_SCHEMA: dict[str, pl.DataType] = {
    "order_no": pl.String(),
    "amount": MONEY,
    "currency": pl.String(),
    "status": pl.String(),
    "shop_status": pl.String(),
    "pay_method": pl.String(),
    "channel_txn_id": pl.String(),
    "created_at": pl.Datetime("us", "UTC"),
    "paid_at": pl.Datetime("us", "UTC"),
    "buyer_contact": pl.String(),
    "goods_kind": pl.String(),
    "quantity": pl.Int32(),
    "title": pl.String(),
}
SHOP_STATUSES = ("pending", "paid", "delivered", "delivery_failed", "expired", "refunded", "canceled")
# Normalised statuses under which the shop believes the buyer's money came in.
MONEY_IN = ("paid", "delivered", "delivery_failed", "refunded")


Window = tuple[datetime, datetime]  # [start, end), aware


class ShopAdapter(Protocol):
    """Reads a window of orders, or named orders, from the shop in bulk."""

    name: str
    # dujiaoka's order_sn column is utf8_unicode_ci: 'abc' and 'ABC' are the same order.
    case_insensitive: bool
    # code → shop_status values from which recon may repair that code automatically (DESIGN §6).
    repairable: dict[str, tuple[str, ...]]

    def orders_created_between(self, start: datetime, end: datetime) -> pl.DataFrame:
        """Orders created in [start, end) (aware datetimes), as SHOP_SCHEMA rows."""
        ...

    def order_batches(self, start: datetime, end: datetime) -> Iterator[pl.DataFrame]:
        """The rows of ``orders_created_between``, a batch at a time: a run stores each batch as it comes,
        so a day of millions of orders is never held whole."""
        ...

    def orders_by_no(self, order_nos: Sequence[str], loaded: Window | None = None) -> pl.DataFrame:
        """The named orders that exist, as SHOP_SCHEMA rows.

        ``loaded`` is a window whose orders the caller read just before (through ``order_batches``): orders
        created in it may be left out. An adapter that cannot tell them apart cheaply ignores it.
        """
        ...


@dataclass(frozen=True)
class ShopOrderState:
    """An order as the shop holds it right now, read for a repair decision or its verification."""

    order_no: str
    shop_status: str
    delivered: bool  # the shop shows it completed with its goods (dujiaoka: 4 with cards, or 2 for manual goods)
    amount: Decimal
    channel_txn_id: str | None
    buyer_contact: str | None
    goods: str | None
    cards: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ActResult:
    done: bool
    detail: str
    cards: list[str] = field(default_factory=list)


class ShopRepairer(Protocol):
    """Changes the shop the safest way it offers (DESIGN §6.4); every call is one atomic act."""

    name: str

    def read(self, order_no: str) -> ShopOrderState | None:
        """The order now, or None when the shop has no such (live) order."""
        ...

    def complete(self, order_no: str, amount: Decimal, channel_txn_id: str) -> ActResult:
        """Mark a paid order completed and deliver its goods, as the shop's own completion would."""
        ...

    def deliver_after_restock(self, order_no: str) -> ActResult:
        """Deliver the goods of a paid order that was out of stock (dujiaoka status 6)."""
        ...
