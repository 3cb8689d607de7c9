"""dujiaoka as a ShopRepairer: the locked completion transaction (recon/shops/dujiaoka_repair.py) and buyer mail."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from recon.config import RepairConfig
from recon.repair_mail import send_cards
from recon.shops.base import ActResult, ShopOrderState
from recon.shops.dujiaoka_repair import (
    STATUS_PENDING,
    RedeliveryRefused,
    Dialect,
    OrderState,
    complete_order,
    deliver_after_restock,
    read_order,
    redeliver_cards,
)

TYPE_MANUAL = 2


class DujiaokaRepairer:
    """Completes and delivers dujiaoka orders in the shop's own database, one locked transaction each."""

    def __init__(self, connect: Callable[[], Any], dialect: Dialect, zone: str, repair: RepairConfig) -> None:
        self.name = "dujiaoka"
        self._connect = connect
        self._dialect = dialect
        self._zone = zone
        self._repair = repair

    def _order(self, order_no: str) -> OrderState | None:
        return read_order(self._connect, self._dialect, order_no)

    def read(self, order_no: str) -> ShopOrderState | None:
        order = self._order(order_no)
        if order is None:
            return None
        cards = _cards(order)
        delivered = bool(cards) or (order.type == TYPE_MANUAL and order.status == STATUS_PENDING)
        return ShopOrderState(order.order_sn, str(order.status), delivered, order.actual_price,
                              order.trade_no or None, order.email, order.title, cards)

    def complete(self, order_no: str, amount: Decimal, channel_txn_id: str) -> ActResult:
        done = complete_order(self._connect, self._dialect, order_no, amount, channel_txn_id, self._zone)
        return ActResult(done.outcome in ("completed", "manual"), _describe(done.outcome, done.reason),
                         list(done.cards))

    def deliver_after_restock(self, order_no: str) -> ActResult:
        done = deliver_after_restock(self._connect, self._dialect, order_no, self._zone)
        return ActResult(done.outcome == "completed", _describe(done.outcome, done.reason), list(done.cards))

    def mail_buyer(self, order_no: str, cards: list[str], action: str) -> str:
        """Send the order's cards to its buyer (whatever ``action`` delivered them); a short outcome line."""
        mail = self._repair.mail
        order = self._order(order_no)
        if mail is None:
            return "no [repair.mail] configured: the buyer was not mailed"
        if order is None or not cards:
            return "nothing to mail"
        sent = send_cards(mail, order, cards, self._repair.shop_name, self._repair.shop_url)
        return f"mail to buyer {sent.status}" + (f": {sent.detail}" if sent.detail else "")


def _cards(order: OrderState) -> list[str]:
    """The cards the order holds, or none when it has not been delivered."""
    try:
        return redeliver_cards(order)
    except RedeliveryRefused:
        return []


def _describe(outcome: str, reason: str) -> str:
    return f"{outcome}: {reason}" if reason else outcome
