"""Repairs through the shop's admin API (``shop.kind = "http"``).

``complete`` POSTs ``complete_path`` exactly once (no retry: a lost answer is not a refusal); a timeout
or transport failure raises ShopError, so the repair engine records ``unknown`` and settles by reading
``order_path``. ``read`` counts an order as delivered when its normalised status is delivered or paid.
"""

from __future__ import annotations

import json
from decimal import Decimal

from fetchers.http import CONNECT_TIMEOUT, ChannelSession
from recon.config import Config
from recon.shops.base import ActResult, ShopOrderState
from recon.shops.http import HttpShop, http_shop

# Seconds to wait for the answer to a completion POST (read at open time; tests shorten it).
COMPLETE_TIMEOUT = 30.0
DONE_STATUSES = ("delivered", "paid")


class HttpRepairer:
    name = "http"

    def __init__(self, shop: HttpShop, complete_path: str, timeout: float = COMPLETE_TIMEOUT) -> None:
        self._shop = shop
        self._complete_path = complete_path
        self._post = ChannelSession(shop.session.channel, secrets=list(shop.session.secrets), max_attempts=1,
                                    connect_timeout=min(CONNECT_TIMEOUT, timeout), read_timeout=timeout)

    def read(self, order_no: str) -> ShopOrderState | None:
        record = self._shop.order_record(order_no)
        if record is None:
            return None
        frame = self._shop.frame([record])
        row = frame.row(0, named=True)
        return ShopOrderState(order_no=row["order_no"], shop_status=row["shop_status"],
                              delivered=row["status"] in DONE_STATUSES, amount=row["amount"],
                              channel_txn_id=row["channel_txn_id"], buyer_contact=row["buyer_contact"],
                              goods=row["title"])

    def complete(self, order_no: str, amount: Decimal, channel_txn_id: str) -> ActResult:
        url = self._shop.url(self._complete_path, order_no)
        body = json.dumps({"amount": _money(amount), "channel_txn_id": channel_txn_id})
        response = self._shop.send(self._post, "POST", url, headers={"Content-Type": "application/json"}, data=body)
        if 200 <= response.status_code < 300:
            return ActResult(True, f"completed through the shop API (HTTP {response.status_code})")
        text = " ".join(response.text[:200].split())
        return ActResult(False, self._shop.safe(f"the shop API refused: HTTP {response.status_code}: {text}"))

    def deliver_after_restock(self, order_no: str) -> ActResult:
        return ActResult(False, "not supported")


def _money(amount: Decimal) -> str:
    """12.000000 (MONEY's scale) → "12.00"; 12.345 stays "12.345": never rounded, at least two decimals."""
    exact = amount.normalize()
    if exact.as_tuple().exponent > -2:  # type: ignore[operator]
        exact = exact.quantize(Decimal("0.01"))
    return format(exact, "f")


def open_http_repairer(config: Config) -> HttpRepairer:
    return HttpRepairer(http_shop(config), config.shop.complete_path, COMPLETE_TIMEOUT)
