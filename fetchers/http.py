"""The one way recon talks HTTP to a channel: timeouts always, bounded retries, secrets redacted.

Retried: connection errors, timeouts, 429 and 5xx (honouring Retry-After), with capped exponential
backoff. Not retried: any other status; the response goes back to the channel module, which knows
whether a 400 is an error or a business answer (WeChat's NO_STATEMENT_EXIST is a 400).

The read timeout bounds each socket read, not a whole body: a server that trickles a few bytes at a
time would hold a fetch (and the store's lock) for as long as it likes. So each attempt, headers and
body, must also finish within ``response_deadline``, else it counts as a timeout and is retried.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
import urllib3

from recon.errors import TransientFetchError
from recon.secrets import redact

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
# Seconds one attempt may take from sending to the last byte of the body; generous for a large bill.
RESPONSE_DEADLINE = 300.0
BODY_CHUNK = 65536
MAX_ATTEMPTS = 4
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0
# A Retry-After longer than this is not waited for: the attempt fails as transient instead.
RETRY_AFTER_CAP = 60.0
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Never follow a redirect silently: a bill URL that moves to another host is not the channel's.
ALLOW_REDIRECTS = False


# Every secret a session was given, so that library logging (urllib3 logs whole URLs at DEBUG) can
# be scrubbed too.
_KNOWN_SECRETS: set[str] = set()


class _ScrubUrls(logging.Filter):
    """Drop query strings and known secrets from urllib3's log records before anyone formats them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_scrub(a) if isinstance(a, str) else a for a in record.args)
        return True


def _scrub(text: str) -> str:
    return redact(text.split("?", 1)[0], sorted(_KNOWN_SECRETS))


logging.getLogger("urllib3.connectionpool").addFilter(_ScrubUrls())


@dataclass
class ChannelSession:
    """A requests.Session for one channel with the rules above; ``sleep`` is injectable for tests."""

    channel: str
    secrets: Sequence[str] = ()
    connect_timeout: float = CONNECT_TIMEOUT
    read_timeout: float = READ_TIMEOUT
    response_deadline: float = RESPONSE_DEADLINE
    max_attempts: int = MAX_ATTEMPTS
    sleep: Callable[[float], None] = time.sleep
    session: requests.Session = field(default_factory=requests.Session)
    attempts_log: list[tuple[str, str, str]] = field(default_factory=list)  # (method, url, outcome)

    def __post_init__(self) -> None:
        _KNOWN_SECRETS.update(s for s in self.secrets if s)

    def add_secret(self, value: str) -> None:
        """A secret learnt at run time (an OAuth token): redacted from now on like the configured ones."""
        if value:
            self.secrets = [*self.secrets, value]
            _KNOWN_SECRETS.add(value)

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Send with retries; return the first non-retryable response or raise TransientFetchError.

        Unless the caller streams (``stream=True``: it reads the body itself), the body is read here,
        within ``response_deadline`` of sending.
        """
        kwargs.setdefault("timeout", (self.connect_timeout, self.read_timeout))
        kwargs.setdefault("allow_redirects", ALLOW_REDIRECTS)
        streamed = bool(kwargs.pop("stream", False))
        last = "no attempt"
        for attempt in range(1, self.max_attempts + 1):
            wait = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
            started = time.monotonic()
            try:
                response = self.session.request(method, url, stream=True, **kwargs)
                if not streamed:
                    self._read_body(response, started)
            except (requests.ConnectionError, requests.Timeout, _PastDeadline) as exc:
                last = "slow body" if isinstance(exc, _PastDeadline) else f"{type(exc).__name__}"
                self.attempts_log.append((method, self._safe(url), last))
            else:
                if response.status_code not in RETRY_STATUSES:
                    self.attempts_log.append((method, self._safe(url), str(response.status_code)))
                    return response
                last = f"HTTP {response.status_code}"
                self.attempts_log.append((method, self._safe(url), last))
                retry_after = _retry_after(response.headers.get("Retry-After"))
                if retry_after is not None:
                    if retry_after > RETRY_AFTER_CAP:
                        break
                    wait = retry_after
            if attempt < self.max_attempts:
                self.sleep(wait)
        raise TransientFetchError(self.channel, f"{method} {self._safe(url)} failed after "
                                                f"{len(self.attempts_log)} attempt(s): {last}")

    def _safe(self, text: str) -> str:
        return redact(text.split("?", 1)[0], list(self.secrets))

    def _read_body(self, response: requests.Response, started: float) -> None:
        """Read the whole body into ``response`` (as requests would), or raise _PastDeadline.

        ``read1`` returns what one socket read brings, so the deadline is checked between trickled bytes.
        """
        if response.raw is None:  # an adapter that answered from memory (no socket to trickle)
            return
        parts = []
        try:
            while chunk := response.raw.read1(BODY_CHUNK, decode_content=True):
                parts.append(chunk)
                if time.monotonic() - started > self.response_deadline:
                    raise _PastDeadline
        except (_PastDeadline, urllib3.exceptions.HTTPError, OSError) as exc:
            response.close()  # drop the half-read connection
            if isinstance(exc, _PastDeadline):
                raise
            if isinstance(exc, urllib3.exceptions.ReadTimeoutError | TimeoutError):
                raise requests.ReadTimeout(f"the body stalled: {type(exc).__name__}") from None
            raise requests.ConnectionError(f"the body broke off: {type(exc).__name__}") from None
        response._content = b"".join(parts)  # what Response.content would have read
        response._content_consumed = True
        response.raw.release_conn()


class _PastDeadline(Exception):
    """An attempt took longer than ``response_deadline`` (a body trickling in)."""


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
