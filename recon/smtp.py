"""One SMTP attempt, shared by the finance mail (reports/mail.py) and the buyer mail (recon/repair_mail.py).

Transient failures (connection lost, timeouts, 4xx answers) become ``Retryable`` for the caller's
bounded retry loop; an authentication failure, a 5xx refusal or a certificate error propagate.
"""

from __future__ import annotations

import base64
import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage

from recon.config import MailConfig


class Retryable(Exception):
    """An SMTP failure worth another attempt."""


def connect(mail: MailConfig) -> smtplib.SMTP:
    """A connection per ``mail.security``: SMTP over TLS for ``ssl``, plain (upgraded later) otherwise."""
    if mail.security == "ssl":
        return smtplib.SMTP_SSL(mail.host, mail.port, timeout=mail.timeout_seconds,
                                context=ssl.create_default_context())
    return smtplib.SMTP(mail.host, mail.port, timeout=mail.timeout_seconds)


def deliver_once(mail: MailConfig, password: str | None, msg: EmailMessage,
                 factory: Callable[[MailConfig], smtplib.SMTP] = connect) -> dict[str, tuple[int, bytes]]:
    """Send ``msg`` once; returns the recipients the server refused (empty when all were accepted)."""
    try:
        with factory(mail) as smtp:
            if mail.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if mail.username and password:
                smtp.login(mail.username, password)
            return smtp.send_message(msg)
    except smtplib.SMTPAuthenticationError:
        raise
    except smtplib.SMTPRecipientsRefused as exc:
        codes = {code for code, _ in exc.recipients.values()}
        if codes and all(400 <= c < 500 for c in codes):
            raise Retryable(f"SMTP {sorted(codes)} for the recipient") from None
        raise
    except smtplib.SMTPResponseException as exc:
        if 400 <= exc.smtp_code < 500:
            raise Retryable(f"SMTP {exc.smtp_code}") from None
        raise
    except (TimeoutError, smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, ConnectionError) as exc:
        raise Retryable(type(exc).__name__) from None
    except OSError as exc:
        if isinstance(exc, ssl.SSLCertVerificationError):
            raise
        raise Retryable(type(exc).__name__) from None


def password_forms(username: str, password: str) -> list[str]:
    """The password and the encodings an SMTP dialogue may carry it in (AUTH PLAIN / LOGIN)."""
    plain = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
    return [password, plain, base64.b64encode(password.encode()).decode()]
