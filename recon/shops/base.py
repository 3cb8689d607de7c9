"""The shop-adapter protocol: read the shop's orders as canonical rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
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

    def orders_by_no(self, order_nos: Sequence[str]) -> pl.DataFrame:
        """The named orders that exist, as SHOP_SCHEMA rows."""
        ...
