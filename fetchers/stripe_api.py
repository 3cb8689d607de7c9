"""Stripe API client: a business date's balance transactions, and order queries by PaymentIntent metadata.

Config: ``credentials.secret_key`` (sent as a Bearer token), ``api_base`` (default
https://api.stripe.com), ``api.order_metadata_key`` (the PaymentIntent metadata key holding the shop's
order number, default ``order_no``).

Amounts from the API are integers in minor units (reference/channel-formats.md §5.1); they become exact
Decimals with the currency's exponent (JPY has none).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import polars as pl

from fetchers.base import CANONICAL_SCHEMA, FetchedStatement, QueryResult
from fetchers.http import ChannelSession
from fetchers.json_api import JsonAnswer, call_json, minor_to_major, quote_error
from recon.config import ChannelConfig
from recon.errors import FetchError

DEFAULT_API_BASE = "https://api.stripe.com"
DEFAULT_METADATA_KEY = "order_no"
PAGE_LIMIT = 100
# A day with more than this many pages of 100 is not a small shop's day: stop rather than loop forever.
MAX_PAGES = 2000
# https://docs.stripe.com/currencies#zero-decimal and #three-decimal; every other currency has two.
ZERO_DECIMAL = frozenset({"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
                          "XAF", "XOF", "XPF"})
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
# reporting_category (API and report) → canonical kind; anything else (payout, transfer, dispute …) is an
# adjustment: it moves the balance but belongs to no order.
CATEGORY_KINDS = {"charge": "payment", "payment": "payment", "refund": "refund", "refund_failure": "refund",
                  "fee": "fee"}
# PaymentIntent status → payment state (https://docs.stripe.com/payments/paymentintents/lifecycle).
INTENT_STATES = {
    "succeeded": ("paid", ""),
    "canceled": ("closed", ""),
    "requires_payment_method": ("unpaid", "waiting for a (new) payment method; an earlier attempt may have failed"),
    "requires_confirmation": ("unpaid", "created but not confirmed by the buyer"),
    "requires_action": ("unpaid", "waiting for the buyer to authenticate (3-D Secure or a redirect)"),
    "processing": ("unknown", "the payment is processing; its outcome is not known yet"),
    "requires_capture": ("unknown", "authorised but not captured: no money moves until it is captured"),
}


def exponent(currency: str) -> int:
    """Digits after the decimal point in Stripe's minor units for ``currency``."""
    code = currency.upper()
    return 0 if code in ZERO_DECIMAL else 3 if code in THREE_DECIMAL else 2


def kind_of_category(category: pl.Expr) -> pl.Expr:
    """Canonical kind of a lower-case reporting_category (or type) expression."""
    return category.replace_strict(CATEGORY_KINDS, default="adjustment", return_dtype=pl.String)


class StripeFetcher:
    """Pulls balance transactions of a business date and queries PaymentIntents for one channel."""

    def __init__(self, channel: ChannelConfig, session: ChannelSession) -> None:
        self.channel = channel
        self.session = session
        self.base = (channel.api_base or DEFAULT_API_BASE).rstrip("/")
        self.key = channel.secret("secret_key")
        self.metadata_key = channel.api.get("order_metadata_key") or DEFAULT_METADATA_KEY
        self._charge_orders: dict[str, str | None] = {}

    def fetch(self, day: date) -> list[FetchedStatement]:
        """Every balance transaction created on ``day`` (in the channel's zone), as canonical rows."""
        zone = ZoneInfo(self.channel.zone)
        start = datetime.combine(day, time(), zone)
        end = datetime.combine(day + timedelta(days=1), time(), zone)
        records: list[dict[str, Any]] = []
        after: str | None = None
        cursors: set[str] = set()
        for _ in range(MAX_PAGES):
            params: dict[str, Any] = {"created[gte]": int(start.timestamp()), "created[lt]": int(end.timestamp()),
                                      "limit": PAGE_LIMIT, "expand[]": "data.source"}
            if after:
                params["starting_after"] = after
            page = self._get("/v1/balance_transactions", params)
            data = page.get("data")
            if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                raise FetchError(self.channel.id, "balance_transactions: the answer has no 'data' list of objects")
            records.extend(data)
            if not page.get("has_more") or not data:
                break
            after = str(data[-1].get("id"))
            if after in cursors:
                raise FetchError(self.channel.id, "balance_transactions: the same page came back twice; stopped")
            cursors.add(after)
        else:
            raise FetchError(self.channel.id, f"balance_transactions: more than {MAX_PAGES} pages for {day}")
        rows = pl.DataFrame([self._row(r) for r in records], schema=CANONICAL_SCHEMA, orient="row")
        return [FetchedStatement(name=f"stripe_balance_transactions_{day.isoformat()}.json",
                                 source="api:/v1/balance_transactions", period=(day, day), rows=rows)]

    def query(self, order_no: str) -> QueryResult:
        """Search PaymentIntents by the order-number metadata key and map the best one's status."""
        # Search query strings quote values in single quotes; a quote or backslash inside is escaped.
        value = order_no.replace("\\", "\\\\").replace("'", "\\'")
        found = self._get("/v1/payment_intents/search", {"query": f"metadata['{self.metadata_key}']:'{value}'",
                                                         "expand[]": "data.latest_charge"})
        intents = [i for i in found.get("data") or [] if isinstance(i, dict)]
        if not intents:
            return QueryResult(self.channel.id, order_no, "not_found", "", note=(
                "no PaymentIntent carries this order number (Stripe's search index can lag about a minute)"))
        succeeded = [i for i in intents if i.get("status") == "succeeded"]
        intent = (succeeded or sorted(intents, key=lambda i: int(i.get("created") or 0)))[-1]
        status = str(intent.get("status") or "")
        state, note = INTENT_STATES.get(status, ("unknown", f"unrecognised PaymentIntent status {status!r}"))
        if len(succeeded) > 1:
            note = f"{len(succeeded)} PaymentIntents succeeded for this order (a duplicate payment?)"
        currency = str(intent.get("currency") or self.channel.currency).upper()
        received = intent.get("amount_received") if status == "succeeded" else intent.get("amount")
        charge = intent.get("latest_charge") if isinstance(intent.get("latest_charge"), dict) else {}
        if state == "paid" and charge.get("refunded"):
            state = "refunded"
        elif state == "paid" and charge.get("amount_refunded"):
            note = note or "partly refunded"
        paid_at = charge.get("created") if state in ("paid", "refunded") else None
        return QueryResult(
            self.channel.id, order_no, state, status,
            amount=minor_to_major(received, exponent(currency), "amount", self.channel.id) if received is not None
            else None,
            currency=currency, channel_txn_id=str(intent.get("id")),
            paid_at=datetime.fromtimestamp(int(paid_at), UTC) if isinstance(paid_at, int) else None, note=note)

    def _row(self, record: dict[str, Any]) -> dict[str, Any]:
        """One balance transaction as a canonical row."""
        currency = str(record.get("currency") or self.channel.currency).upper()
        places = exponent(currency)
        category = str(record.get("reporting_category") or record.get("type") or "").lower()
        kind = CATEGORY_KINDS.get(category, "adjustment")
        source = record.get("source") if isinstance(record.get("source"), dict) else {}
        source_id = source.get("id") if source else record.get("source")
        instant = _instant(record.get("created"), self.channel.zone)
        if instant is None:
            raise FetchError(self.channel.id, f"balance transaction {str(record.get('id'))[:40]!r}: 'created' "
                                              f"{str(record.get('created'))[:40]!r} is not a time")
        at, day = instant
        payment = source.get("payment_intent") or (source.get("charge") if kind == "refund" else source_id)
        return {
            "kind": kind,
            "order_no": self._order_no(source, kind),
            "channel_txn_id": str(payment or record.get("id")),
            "refund_id": str(source_id) if kind == "refund" and source_id else None,
            "amount": minor_to_major(record.get("amount"), places, "amount", self.channel.id),
            "currency": currency,
            "fee": minor_to_major(record.get("fee", 0), places, "fee", self.channel.id),
            "status": "success",  # pending and available both mean the money moved
            "occurred_at": at,
            "business_date": day,
            "counterparty": None,
            "line_no": None,
            "natural_key": str(record.get("id")),
            "upstream_txn_id": None,
        }

    def _order_no(self, source: dict[str, Any], kind: str) -> str | None:
        """The order number from the source's metadata.

        A PaymentIntent's metadata is copied to its charge when confirmed, but a refund inherits none
        (support.stripe.com/questions/how-metadata-works-with-related-objects): a refund without the key
        is traced to its charge, fetched once per charge.
        """
        metadata = source.get("metadata") if isinstance(source.get("metadata"), dict) else {}
        if metadata.get(self.metadata_key):
            return str(metadata[self.metadata_key])
        charge = source.get("charge")
        if kind != "refund" or not isinstance(charge, str):
            return None
        if charge not in self._charge_orders:
            found = self._get(f"/v1/charges/{quote(charge, safe='')}", {})
            meta = found.get("metadata") if isinstance(found.get("metadata"), dict) else {}
            self._charge_orders[charge] = str(meta[self.metadata_key]) if meta.get(self.metadata_key) else None
        return self._charge_orders[charge]

    def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        answer: JsonAnswer = call_json(self.session, "GET", self.base + path, [self.key], params=params,
                                       headers={"Authorization": f"Bearer {self.key}"})
        if answer.status != 200 or not isinstance(answer.payload, dict):
            raise FetchError(self.channel.id, f"GET {path} answered HTTP {answer.status}: "
                                              f"{_stripe_error(answer.payload, [self.key, *self.session.secrets])}")
        return answer.payload


def _instant(value: Any, zone: str) -> tuple[datetime, date] | None:
    """A Unix timestamp as (UTC instant, its date in ``zone``); None when it is not one."""
    if not isinstance(value, int) or isinstance(value, bool):
        return None
    try:
        at = datetime.fromtimestamp(value, UTC)
        return at, at.astimezone(ZoneInfo(zone)).date()
    except (ValueError, OverflowError, OSError):
        return None


def _stripe_error(payload: Any, secrets: list[str]) -> str:
    """Stripe's error type and message ({"error": {"type", "code", "message"}}), redacted."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict):
        payload = {k: error.get(k) for k in ("type", "code", "message") if error.get(k)}
    return quote_error(payload, secrets)


__all__ = ["DEFAULT_METADATA_KEY", "StripeFetcher", "exponent", "kind_of_category"]
