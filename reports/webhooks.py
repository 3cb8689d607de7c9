"""Chat robots and a generic JSON endpoint, each in its own payload format and signature scheme.

* DingTalk custom robot: ``{"msgtype":"markdown","markdown":{"title","text"}}``; with a signing secret
  the URL gets ``timestamp`` (ms) and ``sign`` = base64(HMAC-SHA256(secret, f"{timestamp}\\n{secret}"))
  (https://open.dingtalk.com/document/robots/customize-robot-security-settings). Success: ``errcode`` 0.
* WeCom group robot: ``{"msgtype":"markdown","markdown":{"content"}}``
  (https://developer.work.weixin.qq.com/document/path/91770). Success: ``errcode`` 0.
* Feishu custom bot: ``{"msg_type":"text","content":{"text"}}``; with a secret the body gets
  ``timestamp`` (s) and ``sign`` = base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b""))
  (https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot). Success: ``code`` 0.
* Slack incoming webhook: ``{"text"}``, & < > escaped as Slack requires
  (https://api.slack.com/reference/surfaces/formatting#escaping). Success: HTTP 200.
* ``json``: a structured object (amounts as strings). With a secret, headers ``X-Recon-Timestamp`` (s)
  and ``X-Recon-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>``. Success: HTTP 2xx.

The chat APIs answer HTTP 200 with an error code for most failures (DingTalk ``{"errcode":310000}``
for a bad sign): such answers are failures. Transport errors, 429 and 5xx are retried by
fetchers.http.ChannelSession (bounded); a webhook POST is not idempotent, so a retry after a lost
answer may post twice, which is better than an alert never seen.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests

from recon.config import WebhookConfig
from recon.money import money_str
from recon.secrets import redact
from reports.alerts import AlertOutcome, Digest, SessionFactory, record
from reports.notices import Notice

# Path segments at least this long are treated as tokens (Slack, Feishu put them in the path).
TOKEN_SEGMENT = 16
_MARKDOWN_SAFE = str.maketrans("[]()<>`*#!|~", "［］（）＜＞｀＊＃！｜～")


@dataclass(frozen=True)
class WebhookRequest:
    params: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's sign (base64 text; requests URL-encodes it as a query parameter)."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu's sign: the HMAC key is the string to sign, the message is empty."""
    mac = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def json_signature(secret: str, timestamp_s: int, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp_s}.".encode() + body, hashlib.sha256).hexdigest()


def build_request(kind: str, digest: Digest | Notice, secret: str | None, now: float) -> WebhookRequest:
    """The request one webhook kind expects for ``digest`` (signed when ``secret`` is given)."""
    if kind == "dingtalk":
        text = "\n\n".join([f"#### {digest.title}", *(f"- {line}" for line in digest.lines(_markdown))])
        req = WebhookRequest(body={"msgtype": "markdown", "markdown": {"title": digest.title, "text": text}})
        if secret:
            stamp = int(now * 1000)
            req.params.update(timestamp=str(stamp), sign=dingtalk_sign(secret, stamp))
        return req
    if kind == "wecom":
        text = "\n".join([f"**{digest.title}**", *(f"> {line}" for line in digest.lines(_markdown))])
        return WebhookRequest(body={"msgtype": "markdown", "markdown": {"content": text}})
    if kind == "feishu":
        req = WebhookRequest(body={"msg_type": "text", "content": {"text": digest.text(_no_tags)}})
        if secret:
            stamp = int(now)
            req.body.update(timestamp=str(stamp), sign=feishu_sign(secret, stamp))
        return req
    if kind == "slack":
        return WebhookRequest(body={"text": _slack(digest.title) + "\n" + "\n".join(digest.lines(_slack))})
    if kind == "json":
        return WebhookRequest(body=json_payload(digest))
    raise ValueError(f"unknown webhook kind {kind!r}")


def json_payload(digest: Digest | Notice) -> dict[str, Any]:
    """The generic webhook's object: codes stay codes, amounts are exact decimal strings."""
    if isinstance(digest, Notice):
        return digest.payload()
    return {
        "source": "recon", "run_id": digest.run_id, "business_date": digest.business_date.isoformat(),
        "title": digest.title,
        "match_rate": None if digest.match_rate is None else str(digest.match_rate),
        "needing_person": digest.needing, "counts": digest.by_code,
        "top": [{"order_no": t.order_no, "code": t.code, "label": t.label, "channel": t.channel,
                 "priority": t.priority, "amount": money_str(t.amount), "difference": money_str(t.difference),
                 "currency": t.currency} for t in digest.top],
        "reports": digest.reports,
    }


def check_answer(kind: str, response: requests.Response) -> str | None:
    """None when the endpoint accepted the message, else why not (status and the API's own code)."""
    if not 200 <= response.status_code < 300:
        return f"HTTP {response.status_code}"
    if kind in ("slack", "json"):
        return None
    try:
        answer = response.json()
    except ValueError:
        return f"HTTP {response.status_code} with a body that is not JSON"
    if not isinstance(answer, dict):
        return "an answer that is not a JSON object"
    code = answer.get("errcode") if kind in ("dingtalk", "wecom") else answer.get("code", answer.get("StatusCode"))
    if code == 0:
        return None
    message = answer.get("errmsg") or answer.get("msg") or answer.get("StatusMessage") or ""
    return f"{kind} error {code}: {str(message)[:200]}"


def post_webhook(index: int, hook: WebhookConfig, digest: Digest | Notice, session_factory: SessionFactory,
                 clock: Callable[[], float] = time.time) -> AlertOutcome:
    """Send ``digest`` to webhook number ``index``; never raises, never reveals the URL or secret."""
    target = f"{hook.kind}#{index}"
    secrets: list[str] = []
    attempts = 0
    try:
        url = hook.url.reveal(f"alerts.webhooks[{index}].url")
        secrets += url_secrets(url)
        target += f" {urlsplit(url).hostname or '?'}"
        signing = hook.secret.reveal(f"alerts.webhooks[{index}].secret") if hook.secret else None
        if signing:
            secrets.append(signing)
        req = build_request(hook.kind, digest, signing, clock())
        body = json.dumps(req.body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {"Content-Type": "application/json; charset=utf-8", **req.headers}
        if hook.kind == "json" and signing:
            stamp = int(clock())
            headers.update({"X-Recon-Timestamp": str(stamp), "X-Recon-Signature": json_signature(signing, stamp, body)})
        session = session_factory(target, secrets)
        try:
            with redacting_http_logs(secrets):
                response = session.request("POST", url, params=req.params or None, data=body, headers=headers)
            problem = check_answer(hook.kind, response)
        finally:
            attempts = len(session.attempts_log)
            session.session.close()
    except Exception as exc:  # noqa: BLE001 (an alert must never fail the run)
        return record(AlertOutcome(target, "failed", attempts, f"{type(exc).__name__}: {exc}"), secrets)
    return record(AlertOutcome(target, "failed" if problem else "sent", attempts, problem or ""), secrets)


class _Redact(logging.Filter):
    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = list(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage(), self.secrets), None
        return True


@contextmanager
def redacting_http_logs(secrets: Sequence[str]) -> Iterator[None]:
    """urllib3 logs every request line at DEBUG, query token and all: redact it while we post."""
    logger = logging.getLogger("urllib3.connectionpool")
    guard = _Redact(secrets)
    logger.addFilter(guard)
    try:
        yield
    finally:
        logger.removeFilter(guard)


def url_secrets(url: str) -> list[str]:
    """The parts of a webhook URL that are its credentials: the URL, query values, long path segments."""
    parts = urlsplit(url)
    found = [url, url.split("?", 1)[0]]
    found += [v for _, v in parse_qsl(parts.query) if len(v) >= 4]
    found += [s for s in parts.path.split("/") if len(s) >= TOKEN_SEGMENT]
    return sorted(set(found), key=len, reverse=True)  # longest first, so a part never hides the whole


def _markdown(text: str) -> str:
    """Untrusted text in DingTalk/WeCom markdown: no links, images, code, emphasis or tags.

    The robots' markdown does not honour backslash escapes everywhere, so the characters that
    build markup are swapped for their full-width forms (still readable, never markup).
    """
    return text.translate(_MARKDOWN_SAFE)


def _no_tags(text: str) -> str:
    """Feishu text turns ``<at user_id="all">`` into @everyone: no tags from untrusted text."""
    return text.replace("<", "＜").replace(">", "＞")


def _slack(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
