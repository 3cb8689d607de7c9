"""Mail the run's reports to finance over SMTP (``[alerts.mail]``).

Security ``ssl`` uses SMTP over TLS (port 465), ``starttls`` upgrades a plain connection before any
login, ``none`` sends in the clear (a relay on localhost only). Certificates are verified.
Connection errors, timeouts and 4xx answers are retried a bounded number of times; an
authentication failure or a 5xx refusal is not. Nothing raises to the run and the password never
appears in an outcome or a log line.
"""

from __future__ import annotations

import html
import smtplib
import time
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from recon.config import Config, MailConfig
from recon.smtp import Retryable, connect, deliver_once, password_forms
from reports.alerts import AlertOutcome, Digest, make_digest, record
from reports.model import ReportData
from reports.notices import Notice

MAX_ATTEMPTS = 3
BACKOFF = (2.0, 8.0)  # seconds before the second and third attempts
# Larger attachments are left out (named in the body): most mail servers refuse messages over 25 MB.
MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024
MIME_TYPES = {
    ".xlsx": ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ".html": ("text", "html"),
    ".csv": ("text", "csv"),
    ".parquet": ("application", "vnd.apache.parquet"),
}


def build_message(mail: MailConfig, digest: Digest | Notice, reports: Sequence[Path]) -> EmailMessage:
    """The message: subject with the date and the number needing a person, text + HTML body, attachments."""
    msg = EmailMessage()
    msg["From"] = mail.sender
    msg["To"] = ", ".join(mail.to)
    msg["Subject"] = digest.title
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=mail.sender.rpartition("@")[2] or None)
    chosen = [Path(p) for p in reports if Path(p).suffix.lstrip(".") in mail.attach and Path(p).is_file()]
    too_big = [p for p in chosen if p.stat().st_size > MAX_ATTACHMENT_BYTES]
    lines = digest.lines()
    if too_big:
        note = "Too large to attach" if digest.lang == "en" else "附件过大，未附上"
        lines.append(f"{note}: {', '.join(p.name for p in too_big)}")
    msg.set_content("\n".join([digest.title, "", *lines]) + "\n")
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    msg.add_alternative(f"<html><body><h3>{html.escape(digest.title)}</h3><ul>{items}</ul></body></html>\n",
                        subtype="html")
    for path in chosen:
        if path in too_big:
            continue
        maintype, subtype = MIME_TYPES.get(path.suffix.lower(), ("application", "octet-stream"))
        # The default policy writes a non-ASCII file name as RFC 2231 filename*=utf-8''…
        msg.add_attachment(path.read_bytes(), maintype=maintype, subtype=subtype, filename=path.name)
    return msg


def send_mail(config: Config, data: ReportData | None, reports: Sequence[Path], digest: Digest | Notice | None = None,
              smtp_factory: Callable[[MailConfig], smtplib.SMTP] | None = None,
              sleep: Callable[[float], None] = time.sleep) -> AlertOutcome:
    """Mail ``reports`` (the ``attach`` formats among them) to ``mail.to``; never raises.

    Sent whatever the alert threshold (call it for a daily mail); ``digest`` defaults to one built
    from ``data`` even when no alert is due.
    """
    mail = config.alerts.mail
    if mail is None:
        return AlertOutcome("mail", "skipped", 0, "no [alerts.mail] configured")
    target = f"mail {mail.host}:{mail.port}"
    secrets: list[str] = []
    attempts = 0
    try:
        password = mail.password.reveal("alerts.mail.password") if mail.password else None
        if password:
            secrets += password_forms(mail.username or "", password)
        if digest is None:
            assert data is not None, "a mail needs a run's data or a notice"
            digest = make_digest(config, data, reports)
        msg = build_message(mail, digest, reports)
        factory = smtp_factory or connect
        for attempts in range(1, MAX_ATTEMPTS + 1):
            try:
                refused = deliver_once(mail, password, msg, factory)
            except Retryable as exc:
                if attempts == MAX_ATTEMPTS:
                    return record(AlertOutcome(target, "failed", attempts, str(exc)), secrets)
                sleep(BACKOFF[min(attempts - 1, len(BACKOFF) - 1)])
                continue
            detail = f"refused: {', '.join(sorted(refused))}" if refused else ""
            return record(AlertOutcome(target, "sent", attempts, detail), secrets)
    except Exception as exc:  # noqa: BLE001 (mail must never fail the run)
        return record(AlertOutcome(target, "failed", attempts, f"{type(exc).__name__}: {exc}"), secrets)
    raise AssertionError("unreachable")  # pragma: no cover
