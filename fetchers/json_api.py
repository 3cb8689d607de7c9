"""Calling a JSON API through a ChannelSession: whole body within a deadline, exact decimals, secrets redacted.

Shared by the Stripe and PayPal clients. ChannelSession bounds each socket read but not the whole body,
so a server that trickles a few bytes at a time would hold a fetch for minutes; here the body must be
complete within ``BODY_DEADLINE_FACTOR`` read timeouts, else the request is tried again (bounded).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests
import urllib3

from fetchers.http import ChannelSession
from recon.errors import FetchError, TransientFetchError
from recon.secrets import redact

# A body slower than this many read timeouts is abandoned (per-read timeouts never fire on a trickle).
BODY_DEADLINE_FACTOR = 2.0
CHUNK = 16384
# How much of an error body is quoted in a message: enough for the channel's error code and text.
ERROR_QUOTE = 200
# What the store's DECIMAL(20,6) holds.
MAX_AMOUNT = Decimal(10) ** 14


@dataclass(frozen=True)
class JsonAnswer:
    """A decoded answer: HTTP status and the JSON value (floats as Decimal)."""

    status: int
    payload: Any


def call_json(session: ChannelSession, method: str, url: str, secrets: Sequence[str], **kwargs: Any) -> JsonAnswer:
    """Send through ``session``; a body that is not JSON or arrives too slowly is a FetchError.

    Args:
        secrets: values to redact from any message, besides those the session knows.
    Returns:
        the status (any non-retryable one, so the caller can read a 4xx error body) and the JSON.
    """
    hidden = [*session.secrets, *secrets]
    where = redact(f"{method} {url.split('?', 1)[0]}", hidden)
    for attempt in range(1, session.max_attempts + 1):
        response = session.request(method, url, stream=True, **kwargs)
        try:
            body = _read_body(response, BODY_DEADLINE_FACTOR * session.read_timeout)
        except (TimeoutError, requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            response.close()  # drop the half-read connection
            outcome = "slow body" if isinstance(exc, TimeoutError) else type(exc).__name__
            session.attempts_log.append((method, redact(url.split("?", 1)[0], hidden), outcome))
            if attempt == session.max_attempts:
                raise TransientFetchError(session.channel, f"{where}: the response body did not arrive completely "
                                                           f"after {attempt} attempt(s) ({outcome})") from None
            session.sleep(min(8.0, 0.5 * 2 ** (attempt - 1)))
            continue
        response.raw.release_conn()  # read to the end: the connection goes back to the pool
        try:
            payload = json.loads(body, parse_float=Decimal)
        except (ValueError, RecursionError):
            kind = response.headers.get("Content-Type", "no content type")
            raise FetchError(session.channel, f"{where} answered HTTP {response.status_code} with a body that is "
                                              f"not JSON ({redact(kind, hidden)[:60]})") from None
        return JsonAnswer(response.status_code, payload)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def _read_body(response: requests.Response, deadline_seconds: float) -> bytes:
    """The whole body, or TimeoutError once ``deadline_seconds`` have passed.

    ``read1`` returns whatever one socket read brings, so the deadline is checked between trickled
    bytes; ``iter_content`` would block until a whole chunk had arrived.
    """
    start = time.monotonic()
    parts = []
    while chunk := response.raw.read1(CHUNK, decode_content=True):
        parts.append(chunk)
        if time.monotonic() - start > deadline_seconds:
            raise TimeoutError
    return b"".join(parts)


def quote_error(payload: Any, secrets: Sequence[str]) -> str:
    """A short, redacted rendering of an error body for a message."""
    text = json.dumps(payload, ensure_ascii=False, default=str)
    return redact(text, list(secrets))[:ERROR_QUOTE]


def minor_to_major(value: Any, exponent: int, what: str, channel: str) -> Decimal:
    """An integer amount in minor units as an exact Decimal in major units (within the store's DECIMAL(20,6))."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise FetchError(channel, f"{what}: {str(value)[:40]!r} is not an integer amount in minor units")
    amount = Decimal(value).scaleb(-exponent)
    if abs(amount) >= MAX_AMOUNT:
        raise FetchError(channel, f"{what}: {value} minor units is out of range")
    return amount
