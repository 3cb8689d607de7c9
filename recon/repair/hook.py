"""DESIGN §6.4 (c): complete or deliver a paid order through an HTTP hook the shop provides.

recon POSTs ``{"order_no", "amount" (decimal string), "channel_txn_id", "action"}`` as JSON, with
``Authorization: Bearer <repair.hook.token>`` when a token is configured. ``action`` is the engine's:
``complete`` (a 掉单: mark paid and deliver) or ``deliver_after_restock`` (a paid order that was out of
stock). The act counts as done when the answer's status is one of ``repair.hook.success_status``; the
engine then re-reads the order from the shop's database (the wrapped DujiaokaRepairer) and records
``applied`` only when it shows completed and delivered.

The POST is sent once: a timeout, a dropped connection or a 5xx is a lost answer (ShopError), since the
shop may have acted; the engine records ``unknown`` and settles by reading the order. The hook's URL and
token are secrets: they never appear in a detail, an error or a log line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from decimal import Decimal

import requests

from fetchers.http import ChannelSession
from recon.errors import FetchError, ShopError
from recon.money import money_str
from recon.secrets import redact
from recon.shops.base import ActResult, ShopOrderState
from recon.shops.dujiaoka_repairer import DujiaokaRepairer

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
SNIPPET = 80


class HookRepairer:
    """A ShopRepairer that acts through the configured hook and reads through a DujiaokaRepairer."""

    def __init__(self, db: DujiaokaRepairer, url: str, token: str | None, success_status: Sequence[int],
                 timeout: float) -> None:
        self.name = db.name  # same journal and idempotency keys as the other methods
        self._db = db
        self._url = url
        self._token = token
        self._success = frozenset(success_status)
        self._timeout = timeout

    def read(self, order_no: str) -> ShopOrderState | None:
        return self._db.read(order_no)

    def complete(self, order_no: str, amount: Decimal, channel_txn_id: str) -> ActResult:
        return self._post(order_no, amount, channel_txn_id, "complete")

    def deliver_after_restock(self, order_no: str) -> ActResult:
        state = self._db.read(order_no)
        if state is None:
            return ActResult(False, "refused: no such order (or soft-deleted)")
        return self._post(state.order_no, state.amount, state.channel_txn_id or "", "deliver_after_restock")

    def mail_buyer(self, order_no: str, cards: list[str], action: str) -> str:
        # Completions and deliveries go only through the hook, in this run or in one a crash or a lost
        # answer ended: the shop delivered those to its buyer itself. A resend is recon's own.
        if action in ("complete", "deliver_after_restock"):
            return "the shop's hook delivers to the buyer itself"
        return self._db.mail_buyer(order_no, cards, action)

    def _post(self, order_no: str, amount: Decimal, txn: str, action: str) -> ActResult:
        secrets = [s for s in (self._url, self._token) if s]
        body = json.dumps({"order_no": order_no, "amount": money_str(amount), "channel_txn_id": txn,
                           "action": action}, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        session = ChannelSession("shop hook", secrets=secrets, connect_timeout=CONNECT_TIMEOUT,
                                 read_timeout=self._timeout, max_attempts=1)
        what = f"hook {action} for order {order_no}"
        log.info("calling the repair %s", what)
        try:
            response = session.request("POST", self._url, data=body, headers=headers)
            text = response.text
        except (FetchError, requests.RequestException) as exc:
            # The message names neither URL nor token: the URL itself may carry a token.
            reason = _reason(exc)
            log.warning("the answer to the %s was lost: %s", what, reason)
            raise ShopError(f"{what}: the answer was lost ({reason}); it may have been applied: "
                            "read the order") from None
        finally:
            session.session.close()
        if response.status_code in self._success:
            log.info("the %s answered HTTP %s", what, response.status_code)
            return ActResult(True, f"{what}: HTTP {response.status_code}")
        snippet = redact(text.strip(), secrets)[:SNIPPET]
        log.warning("the %s answered HTTP %s", what, response.status_code)
        return ActResult(False, f"{what} not accepted: HTTP {response.status_code} {snippet!r}")


def _reason(exc: Exception) -> str:
    """What went wrong, without the URL: ChannelSession's message ends with the last attempt's outcome."""
    if isinstance(exc, FetchError):
        return str(exc).rsplit(": ", 1)[-1]
    return type(exc).__name__
