"""DESIGN §6.4 (a): complete a 掉单 by replaying a correctly signed payment notify to the shop's own notify URL.

Only for dujiaoka gateways whose notify is signed with a shared secret kept in the shop's ``pays`` row
(reference/shop-platforms.md §5, §7 A):

* 易支付 / Epay (``pay_handleroute`` ``/pay/yipay``): an HTTP **GET** of the V1 notify parameters as
  彩虹易支付's ``creat_callback`` sends them (channel-formats.md §3.2), MD5-signed with the Epay key.
  dujiaoka keeps that key in ``pays.merchant_pem`` (``merchant_id`` = pid, ``merchant_key`` = the
  submit URL: YipayController signs and verifies with ``merchant_pem``). The shop answers ``success``.
* epusdt (``pay/epusdt``): a JSON **POST** of the callback epusdt sends (shop-platforms.md §9),
  signed with the epusdt API token, which dujiaoka keeps in ``pays.merchant_id`` (EpusdtController
  ``epusdtSign($data, $payGateway->merchant_id)``). The shop answers ``ok``.

The replay runs the shop's own ``completedOrder``: cards, ``info``, its own buyer mail, pushes, ApiHook,
sales_volume. Any other gateway (Alipay RSA, WeChat, PayPal, …) is completed by the locked DB
transaction of the wrapped ``DujiaokaRepairer`` instead: a per-order choice.

Safety: the order must be status 1 or -1 with ``actual_price`` equal to the amount (dujiaoka's handler
checks neither paid status nor the order's state, so recon does); the ``pays`` row must be open and
not deleted (else the shop answers ``fail`` to every notify); the request is sent **once**: a timeout or
a lost answer is a ShopError, so the engine records ``unknown`` and decides by reading the shop.
Success is only the exact expected body; the engine then re-reads the order (DESIGN §6.5).
The signing key never appears in a detail, an error or a log line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import urlencode

import requests

from fetchers.epay import epusdt_sign, notify_sign
from fetchers.http import ChannelSession
from recon.errors import FetchError, ShopError
from recon.secrets import redact
from recon.shops.base import ActResult, ShopOrderState
from recon.shops.dujiaoka_repair import Dialect, STATUS_EXPIRED, STATUS_WAIT_PAY
from recon.shops.dujiaoka_repairer import DujiaokaRepairer

log = logging.getLogger(__name__)

Gateway = Literal["epay", "epusdt"]
# pay_handleroute (slashes stripped) → gateway; dujiaoka's notify URL is url(pay_handleroute . '/notify_url').
ROUTES: dict[str, Gateway] = {"pay/yipay": "epay", "pay/epusdt": "epusdt"}
# The exact body each handler answers when it accepted the notify.
EXPECTED: dict[Gateway, str] = {"epay": "success", "epusdt": "ok"}
EPAY_TRADE_STATUS = "TRADE_SUCCESS"
EPUSDT_PAID = 2
NOTIFY_TIMEOUT = 30.0  # seconds to wait for the shop's answer (read at call time)
CONNECT_TIMEOUT = 5.0
SNIPPET = 80
CENT = Decimal("0.01")
COMPLETABLE = (STATUS_WAIT_PAY, STATUS_EXPIRED)


@dataclass(frozen=True)
class PayRow:
    """The order's ``pays`` row: what the shop's notify handler loads with ``PayService::detail``."""

    id: int
    pay_check: str
    merchant_id: str = field(repr=False)  # epusdt: the API token
    merchant_pem: str = field(repr=False)  # Epay: the MD5 key
    handleroute: str
    is_open: int
    deleted: bool

    @property
    def gateway(self) -> Gateway | None:
        return ROUTES.get(self.handleroute.strip("/"))

    def key(self) -> str:
        """The shared secret the handler verifies with (see the module docstring)."""
        return self.merchant_pem if self.gateway == "epay" else self.merchant_id


@dataclass(frozen=True)
class NotifyTarget:
    order_sn: str
    title: str
    status: int
    actual_price: Decimal
    pay_id: int | None
    pay: PayRow | None


def read_target(connect: Callable[[], Any], dialect: Dialect, order_no: str) -> NotifyTarget | None:
    """The order (case-insensitive, live) and its ``pays`` row (even closed or soft-deleted), or None."""
    match = "o.order_sn = %s" if dialect == "mysql" else "upper(o.order_sn) = upper(?)"
    price = "CAST(o.actual_price AS TEXT)" if dialect == "sqlite" else "o.actual_price"
    sql = (f"SELECT o.order_sn, o.title, o.status, {price}, o.pay_id, p.id, p.pay_check, p.merchant_id,"
           " p.merchant_pem, p.pay_handleroute, p.is_open, p.deleted_at FROM orders o"
           f" LEFT JOIN pays p ON p.id = o.pay_id WHERE {match} AND o.deleted_at IS NULL")
    if dialect == "postgresql":
        sql = sql.replace("?", "%s")
    try:
        con = connect()
    except ShopError:
        raise
    except Exception as exc:
        raise ShopError(f"cannot connect to the dujiaoka database: {type(exc).__name__}") from exc
    try:
        cur = con.cursor()
        cur.execute(sql, (order_no,))
        rows = cur.fetchall()
        con.rollback()
    except Exception as exc:
        raise ShopError(f"dujiaoka order {order_no}: reading its pays row failed: {type(exc).__name__}") from exc
    finally:
        con.close()
    if len(rows) != 1:
        if rows:
            raise ShopError(f"dujiaoka order {order_no}: {len(rows)} orders match case-insensitively")
        return None
    sn, title, status, amount, pay_id, pid, check, mid, pem, route, is_open, deleted = rows[0]
    pay = None if pid is None else PayRow(int(pid), str(check or ""), str(mid or ""), str(pem or ""),
                                          str(route or ""), int(is_open or 0), deleted is not None)
    return NotifyTarget(str(sn), str(title or ""), int(status), Decimal(str(amount)),
                        None if pay_id is None else int(pay_id), pay)


def epay_params(target: NotifyTarget, amount: Decimal, txn: str) -> dict[str, str]:
    """The V1 notify query exactly as 彩虹易支付 sends it: sorted fields, then ``sign`` and ``sign_type``."""
    assert target.pay is not None
    fields = {"pid": target.pay.merchant_id, "trade_no": txn, "out_trade_no": target.order_sn,
              "type": target.pay.pay_check, "name": target.title, "money": str(amount.quantize(CENT)),
              "trade_status": EPAY_TRADE_STATUS}
    kept = {k: v for k, v in fields.items() if v != ""}  # paraFilter drops empty values before signing
    ordered = {k: kept[k] for k in sorted(kept, key=lambda k: k.encode("utf-8"))}
    return {**ordered, "sign": notify_sign(ordered, target.pay.key()), "sign_type": "MD5"}


def epusdt_body(target: NotifyTarget, amount: Decimal, txn: str) -> str:
    """epusdt's callback JSON. ``amount`` is a JSON number in Go's shortest form (12.50 → 12.5), the text
    PHP's json_decode + string conversion signs over; the USDT amount, wallet and chain hash are not known
    to recon and are sent empty (both sides leave empty values out of the signature)."""
    assert target.pay is not None
    number = Decimal(format(amount.normalize(), "f"))
    fields: dict[str, str | int | Decimal] = {
        "trade_id": txn, "order_id": target.order_sn, "amount": number, "actual_amount": "", "token": "",
        "block_transaction_id": "", "status": EPUSDT_PAID}
    fields["signature"] = epusdt_sign(fields, target.pay.key())
    return _json_object(fields)


class NotifyRepairer:
    """A ShopRepairer that completes Epay/epusdt orders through the shop's own notify handler and
    everything else through the wrapped DujiaokaRepairer (reads, redelivery after restock, buyer mail)."""

    def __init__(self, db: DujiaokaRepairer, connect: Callable[[], Any], dialect: Dialect, base_url: str,
                 timeout: float | None = None) -> None:
        self.name = db.name  # the same journal and idempotency keys as the DB path: never both for one order
        self._db = db
        self._connect = connect
        self._dialect = dialect
        self._base = base_url.rstrip("/")
        self._timeout = timeout

    def read(self, order_no: str) -> ShopOrderState | None:
        return self._db.read(order_no)

    def deliver_after_restock(self, order_no: str) -> ActResult:
        return self._db.deliver_after_restock(order_no)

    def mail_buyer(self, order_no: str, cards: list[str], action: str) -> str:
        # ``complete`` sends every order of a shared-secret gateway through the shop's notify handler, never
        # through the DB: whichever run completed it (this one, or one a crash or a lost answer ended),
        # the shop's own completedOrder mailed the buyer. Deliveries after restock and resends are recon's.
        if action == "complete":
            target = read_target(self._connect, self._dialect, order_no)
            if target is not None and target.pay is not None and target.pay.gateway is not None:
                return "the shop's own completion mails the buyer (notify replay)"
        return self._db.mail_buyer(order_no, cards, action)

    def complete(self, order_no: str, amount: Decimal, channel_txn_id: str) -> ActResult:
        target = read_target(self._connect, self._dialect, order_no)
        if target is None:
            return ActResult(False, "refused: no such order (or soft-deleted)")
        pay = target.pay
        gateway = pay.gateway if pay is not None else None
        if pay is None or gateway is None:
            which = f"pays {pay.id} ({pay.handleroute})" if pay else f"pay_id {target.pay_id} (no pays row)"
            done = self._db.complete(order_no, amount, channel_txn_id)
            return ActResult(done.done, f"{which} is not a shared-secret gateway: locked DB transaction: "
                                        f"{done.detail}", done.cards)
        refusal = _refusal(target, pay, amount, channel_txn_id)
        if refusal:
            return ActResult(False, f"refused: {refusal}")
        return self._send(target, pay, gateway, amount, channel_txn_id)

    def _send(self, target: NotifyTarget, pay: PayRow, gateway: Gateway, amount: Decimal, txn: str) -> ActResult:
        key = pay.key()
        url = f"{self._base}/{pay.handleroute.strip('/')}/notify_url"
        session = ChannelSession("shop notify", secrets=[key] if key else [], connect_timeout=CONNECT_TIMEOUT,
                                 read_timeout=self._timeout or NOTIFY_TIMEOUT, max_attempts=1)
        what = f"{gateway} notify for order {target.order_sn} (pays {pay.id})"
        log.info("replaying the %s to %s", what, url)
        # From here the shop may complete the order (and mail its buyer) whatever answer comes back.
        try:
            if gateway == "epay":
                response = session.request("GET", f"{url}?{urlencode(epay_params(target, amount, txn))}")
            else:
                response = session.request("POST", url, data=epusdt_body(target, amount, txn).encode("utf-8"),
                                           headers={"Content-Type": "application/json"})
            body = response.text
        except (FetchError, requests.RequestException) as exc:
            reason = redact(str(exc), [key]) if isinstance(exc, FetchError) else type(exc).__name__
            log.warning("the shop's answer to the %s was lost: %s", what, reason)
            raise ShopError(f"{what}: the shop's answer was lost ({reason}); "
                            "it may have been applied: read the order") from None
        finally:
            session.session.close()
        expected = EXPECTED[gateway]
        if response.status_code == 200 and body == expected:
            log.info("the shop accepted the %s", what)
            return ActResult(True, f"{what} replayed: the shop answered {expected!r}")
        snippet = redact(body.strip(), [key])[:SNIPPET]
        log.warning("the shop refused the %s: HTTP %s", what, response.status_code)
        return ActResult(False, f"{what} not accepted: HTTP {response.status_code} {snippet!r}, expected "
                                f"{expected!r} (wrong key in pays, closed gateway or handleroute?)")


def _refusal(target: NotifyTarget, pay: PayRow, amount: Decimal, txn: str) -> str | None:
    """Why a notify must not be replayed for this order now (None: go ahead)."""
    if pay.deleted or pay.is_open != 1:
        return (f"pays {pay.id} ({pay.handleroute}) is {'deleted' if pay.deleted else 'closed (is_open=0)'}: "
                "the shop refuses every notify for it; reopen it or use repair.method = \"db\"")
    if target.status not in COMPLETABLE:
        return f"status {target.status} is not 1 or -1"
    if amount != target.actual_price or amount != amount.quantize(CENT):
        return f"amount {amount} differs from the order's actual_price {target.actual_price}"
    if not txn:
        return "no channel transaction id to send (dujiaoka refuses a notify without trade_no)"
    return None


def _json_object(fields: dict[str, str | int | Decimal]) -> str:
    """A flat JSON object; Decimal values as JSON numbers written exactly (json cannot dump Decimal)."""
    parts = [f"{json.dumps(k)}:{format(v, 'f') if isinstance(v, Decimal) else json.dumps(v, ensure_ascii=False)}"
             for k, v in fields.items()]
    return "{" + ",".join(parts) + "}"
