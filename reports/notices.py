"""Short alerts of the scheduled jobs (a bill that never came, a lost payment the sweep could not
repair), sent to the same webhooks and mail as the run digest, in the report language."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from recon.config import Config
from reports.alerts import AlertOutcome, SessionFactory, default_session


@dataclass(frozen=True)
class Notice:
    """Title and lines like reports.alerts.Digest, so every webhook kind and the mail can carry it."""

    event: str  # bill_missing | sweep_found
    lang: str
    title: str
    body: list[str]
    facts: dict[str, Any] = field(default_factory=dict)  # the generic JSON webhook's structured part
    reports: list[str] = field(default_factory=list)

    def lines(self, esc: Callable[[str], str] = str) -> list[str]:
        return [esc(line) for line in self.body]

    def text(self, esc: Callable[[str], str] = str) -> str:
        return "\n".join([self.title, *self.lines(esc)])

    def payload(self) -> dict[str, Any]:
        return {"source": "recon", "event": self.event, "title": self.title, "lines": self.body, **self.facts}


def send_notice(config: Config, notice: Notice,
                session_factory: SessionFactory = default_session) -> list[AlertOutcome]:
    """Post ``notice`` to every webhook and mail it (no attachments); never raises."""
    from reports.mail import send_mail
    from reports.webhooks import post_webhook

    outcomes = [post_webhook(i, hook, notice, session_factory) for i, hook in enumerate(config.alerts.webhooks)]
    if config.alerts.mail is not None:
        outcomes.append(send_mail(config, None, [], digest=notice))
    return outcomes
