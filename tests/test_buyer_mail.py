"""The buyer's receipt with the cards, sent to a real SMTP server (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from recon.config import MailConfig
from recon.repair_mail import MailOutcome, send_cards
from recon.shops.dujiaoka_repair import OrderState

CARDS = ["KEY-AAAA-1111", "KEY-BBBB-2222 <b>&amp;</b>", "KEY-CCCC-3333"]
PASSWORD = "s3cret-Pa55word!"


class Inbox:
    """Keeps every accepted message; answers DATA with the scripted replies first (e.g. a 421)."""

    def __init__(self, replies: list[str] | None = None) -> None:
        self.envelopes: list[Envelope] = []
        self.replies = list(replies or [])
        self.data_calls = 0
        self.auth_attempts = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.data_calls += 1
        if self.replies:
            return self.replies.pop(0)
        self.envelopes.append(envelope)
        return "250 Message accepted"

    def auth(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        self.auth_attempts += 1
        ok = isinstance(data, LoginPassword) and data.login == b"shop" and data.password == PASSWORD.encode()
        return AuthResult(success=ok, handled=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def smtp_server(inbox: Inbox, with_auth: bool = False) -> Iterator[int]:
    port = free_port()
    extra: dict[str, Any] = {"authenticator": inbox.auth, "auth_require_tls": False} if with_auth else {}
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **extra)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def mail_config(port: int, **kw: Any) -> MailConfig:
    return MailConfig(host="127.0.0.1", port=port, security="none", sender="shop@example.com",
                      to=["finance@example.com"], timeout_seconds=5, **kw)


def order(goods_name: str | None = "Steam 充值卡 ¥50", email: str = "buyer@example.com") -> OrderState:
    return OrderState(id="7", order_sn="DJ7F3A9C2E11B04D", status=4, type=1, goods_id="3", buy_amount=3,
                      actual_price=Decimal("150.00"), trade_no="2024050122001", info="\n".join(CARDS), email=email,
                      title="Steam 充值卡 ¥50 x 3", created_at="2024-05-01 12:34:56", goods_name=goods_name)


def parts(envelope: Envelope) -> tuple[EmailMessage, str, str]:
    msg = message_from_bytes(envelope.original_content or b"", policy=policy.default)
    assert isinstance(msg, EmailMessage)
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert text is not None and html is not None
    # SMTP carries CRLF line ends
    return msg, text.get_content().replace("\r\n", "\n"), html.get_content().replace("\r\n", "\n")


def no_sleep(_seconds: float) -> None:
    pass


def test_the_cards_reach_the_buyer_with_every_placeholder_filled() -> None:
    inbox = Inbox()
    with smtp_server(inbox) as port:
        outcome = send_cards(mail_config(port), order(), CARDS, "独角数卡", "https://shop.example.com/")
    assert outcome == MailOutcome("sent", "buyer@example.com", 1)
    [envelope] = inbox.envelopes
    assert envelope.rcpt_tos == ["buyer@example.com"] and envelope.mail_from == "shop@example.com"
    msg, text, html = parts(envelope)
    assert msg["Subject"] == "【独角数卡】感谢您的购买，请查收您的收据"
    assert msg["To"] == "buyer@example.com"
    for body in (text, html):
        for value in ("DJ7F3A9C2E11B04D", "2024-05-01 12:34:56", "Steam 充值卡 ¥50", "150.00", "独角数卡"):
            assert value in body
    assert "\n".join(CARDS) in text  # one per line
    assert 'x 3' in html and 'href="https://shop.example.com/"' in html
    assert '<div class="card">KEY-AAAA-1111</div>' in html
    assert '<div class="card">KEY-BBBB-2222 &lt;b&gt;&amp;amp;&lt;/b&gt;</div>' in html  # a card is text too
    assert "{" not in html.split("</style>")[-1] and "{" not in text  # no placeholder left unfilled


def test_a_hostile_goods_name_is_rendered_as_text() -> None:
    inbox = Inbox()
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    with smtp_server(inbox) as port:
        outcome = send_cards(mail_config(port), order(goods_name=hostile), CARDS, 'Shop "<b>"', "https://s.example/")
    assert outcome.sent
    _, text, html = parts(inbox.envelopes[0])
    assert "<script>" not in html and "<img" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert hostile in text  # the text part is plain text


def test_a_temporary_421_is_retried_then_delivered() -> None:
    inbox = Inbox(replies=["421 4.3.2 Service not available, try again later"])
    slept: list[float] = []
    with smtp_server(inbox) as port:
        outcome = send_cards(mail_config(port), order(), CARDS, "独角数卡", "https://s.example/", sleep=slept.append)
    assert (outcome.status, outcome.attempts) == ("sent", 2)
    assert inbox.data_calls == 2 and len(inbox.envelopes) == 1 and slept == [1.0]


def test_retries_are_bounded() -> None:
    inbox = Inbox(replies=["451 4.7.1 greylisted"] * 10)
    with smtp_server(inbox) as port:
        outcome = send_cards(mail_config(port), order(), CARDS, "独角数卡", "https://s.example/", sleep=no_sleep)
    assert (outcome.status, outcome.attempts, inbox.data_calls) == ("failed", 3, 3)
    assert "451" in outcome.detail


def test_an_auth_failure_is_not_retried_and_the_password_never_shows(monkeypatch: pytest.MonkeyPatch,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("SHOP_SMTP_PASSWORD", "wrong-" + PASSWORD)
    inbox = Inbox()
    caplog.set_level(logging.DEBUG)
    with smtp_server(inbox, with_auth=True) as port:
        config = mail_config(port, username="shop", password="env:SHOP_SMTP_PASSWORD")
        outcome = send_cards(config, order(), CARDS, "独角数卡", "https://s.example/", sleep=no_sleep)
        assert (outcome.status, outcome.attempts) == ("failed", 1)
        # one connection: smtplib offers PLAIN, then LOGIN, and gives up; no second attempt
        assert inbox.auth_attempts == 2 and not inbox.envelopes
        assert "SMTPAuthenticationError" in outcome.detail
        assert PASSWORD not in repr(outcome) and PASSWORD not in caplog.text

        monkeypatch.setenv("SHOP_SMTP_PASSWORD", PASSWORD)
        assert send_cards(config, order(), CARDS, "独角数卡", "https://s.example/").sent
    assert len(inbox.envelopes) == 1


def test_an_unreachable_server_and_bad_input_are_outcomes_not_exceptions() -> None:
    port = free_port()  # nothing listens there
    outcome = send_cards(mail_config(port), order(), CARDS, "独角数卡", "https://s.example/", sleep=no_sleep)
    assert (outcome.status, outcome.attempts) == ("failed", 3) and "ConnectionRefusedError" in outcome.detail
    assert send_cards(mail_config(port), order(), [], "独角数卡", "https://s.example/").detail == "no cards to send"
    assert "e-mail" in send_cards(mail_config(port), order(email="not an address"), CARDS, "x", "https://s/").detail
    assert "http" in send_cards(mail_config(port), order(), CARDS, "x", "javascript:alert(1)").detail
