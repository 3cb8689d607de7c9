"""Tell people when a run leaves exceptions that need them: chat webhooks (reports.webhooks) and mail
(reports.mail), decided by ``[alerts]`` in recon.toml.

An alert is due when the open exceptions at or above ``min_priority`` (1 most urgent; only ``codes``
when given, otherwise every code except those that merely wait for evidence, i.e. ``pending``) number
at least ``min_count``. Then every webhook gets a short digest and, when ``[alerts.mail]`` is set, the
mail goes out with the report files attached. Nothing here raises to the run: each target's result is
an ``AlertOutcome`` (sent or failed, attempts, a detail that never holds a secret), and is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Literal

import polars as pl

from fetchers.http import ChannelSession
from recon.config import AlertsConfig, Config
from recon.money import money_str
from recon.secrets import redact
from recon.taxonomy import WAITING_CODES, label
from reports.model import ReportData

log = logging.getLogger("recon.alerts")

SessionFactory = Callable[[str, Sequence[str]], ChannelSession]
# Untrusted text (order numbers of strangers' transfers) is cut to this length in a message.
MAX_FIELD = 64
# Webhook requests: a chat robot answers quickly or not at all.
WEBHOOK_CONNECT_TIMEOUT = 5.0
WEBHOOK_READ_TIMEOUT = 10.0
WEBHOOK_ATTEMPTS = 3


def default_session(name: str, secrets: Sequence[str]) -> ChannelSession:
    """A ChannelSession (timeouts, bounded retries on 429/5xx/connection errors, redaction)."""
    return ChannelSession(name, list(secrets), connect_timeout=WEBHOOK_CONNECT_TIMEOUT,
                          read_timeout=WEBHOOK_READ_TIMEOUT, max_attempts=WEBHOOK_ATTEMPTS)


@dataclass(frozen=True)
class AlertOutcome:
    """What happened to one alert target. ``target`` names the kind and host, never the URL's token."""

    target: str  # e.g. "dingtalk#0 oapi.dingtalk.com", "mail smtp.example.com"
    status: Literal["sent", "failed", "skipped"]
    attempts: int
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "sent"


@dataclass(frozen=True)
class TopException:
    order_no: str
    code: str
    label: str
    channel: str
    priority: int
    amount: Decimal
    difference: Decimal
    currency: str


@dataclass(frozen=True)
class Digest:
    """What an alert says, in the report language; the same facts for every target."""

    run_id: int
    business_date: date
    lang: str
    match_rate: Decimal | None
    needing: int                  # open exceptions selected by [alerts]
    by_code: dict[str, int]       # code → count among them, most urgent code first
    top: list[TopException]
    reports: list[str]            # file names of the run's reports

    @property
    def title(self) -> str:
        if self.lang == "en":
            return f"recon {self.business_date.isoformat()}: {self.needing} exception(s) need a person"
        return f"对账 {self.business_date.isoformat()}：{self.needing} 笔异常待处理"

    def lines(self, esc: Callable[[str], str] = str) -> list[str]:
        """The body as plain lines; ``esc`` makes untrusted text inert in the target's markup."""
        en = self.lang == "en"
        rate = "-" if self.match_rate is None else f"{(self.match_rate * 100).quantize(Decimal('0.01'))}%"
        out = [f"{'Run' if en else '批次'} {self.run_id}, {'match rate' if en else '匹配率'} {rate}"]
        out += [f"{label(code, self.lang)}: {n}" for code, n in self.by_code.items()]
        if self.top:
            out.append("Top:" if en else "重点：")
            out += [f"{esc(t.order_no)} | {t.label} | {money_str(t.amount)} {esc(t.currency)}" for t in self.top]
        return out

    def text(self, esc: Callable[[str], str] = str) -> str:
        return "\n".join([self.title, *self.lines(esc)])


def selected(alerts: AlertsConfig, exceptions: pl.DataFrame) -> pl.DataFrame:
    """The open exceptions ``alerts`` counts: priority at or above min_priority, only ``codes`` if given."""
    if exceptions.is_empty():
        return exceptions
    rows = exceptions.filter(pl.col("priority").is_not_null() & (pl.col("priority") <= alerts.min_priority))
    if alerts.codes:
        return rows.filter(pl.col("code").is_in(alerts.codes))
    return rows.filter(~pl.col("code").is_in(list(WAITING_CODES)))


def build_digest(config: Config, data: ReportData, reports: Sequence[Path] = ()) -> Digest | None:
    """The digest of ``data``, or None when ``[alerts]`` says no alert is due."""
    rows = selected(config.alerts, data.exceptions)
    return make_digest(config, data, reports, rows) if rows.height >= config.alerts.min_count else None


def make_digest(config: Config, data: ReportData, reports: Sequence[Path] = (),
                rows: pl.DataFrame | None = None) -> Digest:
    """The digest of ``data`` whatever the threshold: counts per code, the top exceptions first."""
    rows = selected(config.alerts, data.exceptions) if rows is None else rows
    lang = config.reports.language
    amount = (pl.when(pl.col("channel_amount").fill_null(0) != 0).then(pl.col("channel_amount"))
              .otherwise(pl.col("shop_amount")).fill_null(0))
    ranked = (rows.with_columns(amount.alias("_amount"))
              .sort([pl.col("priority"), pl.col("_amount").abs(), pl.col("order_no")],
                    descending=[False, True, False], nulls_last=True))
    by_code = ranked.group_by("code", maintain_order=True).len()
    top = [
        TopException(order_no=_short(r["order_no"] or "-"), code=r["code"], label=label(r["code"], lang),
                     channel=r["channel"], priority=int(r["priority"]), amount=r["_amount"],
                     difference=r["difference"] if r["difference"] is not None else Decimal(0),
                     currency=_short(r["currency"] or ""))
        for r in ranked.head(config.alerts.top).iter_rows(named=True)
    ]
    return Digest(run_id=data.run_id, business_date=data.business_date, lang=lang, match_rate=data.match_rate,
                  needing=rows.height, by_code={c: int(n) for c, n in by_code.iter_rows()}, top=top,
                  reports=[Path(p).name for p in reports])


def send_alerts(config: Config, data: ReportData, reports: Sequence[Path],
                session_factory: SessionFactory = default_session) -> list[AlertOutcome]:
    """Post the digest to every webhook and mail the reports, when an alert is due; never raises.

    Returns one outcome per configured target (webhooks in config order, then mail), or an empty
    list when no alert is due (or none is configured).
    """
    from reports.mail import send_mail  # the target modules import this one's records
    from reports.webhooks import post_webhook

    try:
        digest = build_digest(config, data, reports)
    except Exception as exc:  # a bug here must not fail the run that already committed
        log.exception("alerts: cannot build the digest of run %s", data.run_id)
        return [AlertOutcome("digest", "failed", 0, f"{type(exc).__name__}")]
    if digest is None:
        log.info("alerts: run %s below the alert threshold, nothing sent", data.run_id)
        return []
    outcomes = [post_webhook(i, hook, digest, session_factory) for i, hook in enumerate(config.alerts.webhooks)]
    if config.alerts.mail is not None:
        outcomes.append(send_mail(config, data, reports, digest=digest))
    return outcomes


def record(outcome: AlertOutcome, secrets: Sequence[str]) -> AlertOutcome:
    """``outcome`` with any secret value redacted from its detail, logged at the right level."""
    safe = AlertOutcome(outcome.target, outcome.status, outcome.attempts,
                        redact(outcome.detail, [s for s in secrets if s])[:500])
    level = logging.INFO if safe.ok else logging.WARNING
    log.log(level, "alert %s: %s after %d attempt(s)%s", safe.target, safe.status, safe.attempts,
            f": {safe.detail}" if safe.detail else "")
    return safe


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_FIELD else text[: MAX_FIELD - 1] + "…"
