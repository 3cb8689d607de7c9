"""Mail a repaired order's goods to the buyer, as dujiaoka's ``card_send_user_email`` would.

The shop's SMTP settings live only in its Laravel cache, so recon uses its own ``MailConfig`` (the
``to`` list is not used: the recipient is the order's e-mail). The message has dujiaoka's subject
``【{webname}】感谢您的购买，请查收您的收据``, an HTML part rendered with autoescaping from
``templates/card_send_user_email.html.j2`` and a plain-text part, the cards one per line in both.
Unlike dujiaoka, ``created_at`` is filled in.

Connection errors, timeouts and 4xx replies are retried a bounded number of times; an
authentication failure or a 5xx refusal is not. ``send_cards`` returns a ``MailOutcome`` and never
raises; the password never appears in an outcome or a log line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import Literal

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from recon.config import MailConfig
from recon.smtp import Retryable, deliver_once, password_forms
from recon.secrets import redact
from recon.shops.dujiaoka_repair import OrderState

log = logging.getLogger(__name__)

TEMPLATE = "card_send_user_email.html.j2"
SUBJECT = "【{webname}】感谢您的购买，请查收您的收据"
MAX_ATTEMPTS = 3
BACKOFF = (1.0, 4.0)  # seconds before the second and third attempts

_env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                   autoescape=select_autoescape(["html", "j2"], default=True), undefined=StrictUndefined,
                   keep_trailing_newline=True)


@dataclass(frozen=True)
class MailOutcome:
    """``sent`` or ``failed``; ``detail`` says why (never with the password)."""

    status: Literal["sent", "failed"]
    recipient: str
    attempts: int
    detail: str = ""

    @property
    def sent(self) -> bool:
        return self.status == "sent"


def placeholders(order: OrderState, cards: Sequence[str], shop_name: str, shop_url: str) -> dict[str, object]:
    """dujiaoka's placeholders ({created_at}{product_name}{webname}{weburl}{ord_info}{ord_title}{order_id}
    {buy_amount}{ord_price}); ``ord_info`` is the cards joined by newlines (dujiaoka: ``<br/>``)."""
    return {
        "created_at": order.created_at,
        "product_name": order.goods_name or order.title,
        "webname": shop_name,
        "weburl": shop_url,
        "ord_info": "\n".join(cards),
        "ord_title": order.title,
        "order_id": order.order_sn,
        "buy_amount": order.buy_amount,
        "ord_price": f"{order.actual_price:.2f}",
    }


def build_message(mail: MailConfig, order: OrderState, cards: Sequence[str], shop_name: str,
                  shop_url: str) -> EmailMessage:
    """The buyer's receipt: text + autoescaped HTML, addressed to ``order.email``."""
    values = placeholders(order, cards, shop_name, shop_url)
    subject = SUBJECT.format(webname=shop_name)
    msg = EmailMessage()
    msg["From"] = mail.sender
    msg["To"] = order.email
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=mail.sender.rpartition("@")[2] or None)
    text = [str(values["ord_title"]), "感谢您的购买。", "", f"订单号: {values['order_id']}",
            f"下单时间: {values['created_at']}", f"商品: {values['product_name']} x {values['buy_amount']}",
            f"总价: {values['ord_price']} ¥", "", "以下是您的卡密信息：", *cards, "", f"{shop_name} {shop_url}"]
    msg.set_content("\n".join(text) + "\n")
    html = _env.get_template(TEMPLATE).render(subject=subject, cards=list(cards), **values)
    msg.add_alternative(html, subtype="html")
    return msg


def send_cards(mail: MailConfig, order: OrderState, cards: list[str], shop_name: str, shop_url: str, *,
               sleep: Callable[[float], None] = time.sleep) -> MailOutcome:
    """Mail ``cards`` to the order's buyer; bounded retries; never raises."""
    recipient = order.email
    secrets: list[str] = []
    attempts = 0
    try:
        problem = _check(order, cards, shop_url)
        if problem:
            return _done(MailOutcome("failed", recipient, 0, problem), secrets)
        password = mail.password.reveal("mail.password") if mail.password else None
        if password:
            secrets += password_forms(mail.username or "", password)
        msg = build_message(mail, order, cards, shop_name, shop_url)
        for attempts in range(1, MAX_ATTEMPTS + 1):
            try:
                refused = deliver_once(mail, password, msg)
            except Retryable as exc:
                if attempts == MAX_ATTEMPTS:
                    return _done(MailOutcome("failed", recipient, attempts, f"gave up: {exc}"), secrets)
                log.info("mail to %s: attempt %d failed (%s); retrying", recipient, attempts, redact(str(exc), secrets))
                sleep(BACKOFF[min(attempts - 1, len(BACKOFF) - 1)])
                continue
            if refused:
                return _done(MailOutcome("failed", recipient, attempts, f"refused: {sorted(refused)}"), secrets)
            return _done(MailOutcome("sent", recipient, attempts), secrets)
    except Exception as exc:  # noqa: BLE001 (an outcome, never an exception)
        return _done(MailOutcome("failed", recipient, attempts, f"{type(exc).__name__}: {exc}"), secrets)
    raise AssertionError("unreachable")  # pragma: no cover


def _check(order: OrderState, cards: Sequence[str], shop_url: str) -> str:
    if not cards:
        return "no cards to send"
    name, address = parseaddr(order.email)
    if "@" not in address or address != order.email.strip():
        return f"order {order.order_sn} has no usable e-mail address"
    if not shop_url.startswith(("https://", "http://")):
        return "shop_url must start with http:// or https://"
    return ""


def _done(outcome: MailOutcome, secrets: list[str]) -> MailOutcome:
    safe = MailOutcome(outcome.status, outcome.recipient, outcome.attempts, redact(outcome.detail, secrets))
    log.info("mail to %s: %s after %d attempt(s) %s", safe.recipient, safe.status, safe.attempts, safe.detail)
    return safe
