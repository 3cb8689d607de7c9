"""PayPal API client: a business date's transactions from Transaction Search.

Config: ``api.client_id``, ``credentials.client_secret``, ``api_base`` (default https://api-m.paypal.com),
``api.order_field``: which transaction field holds the shop's order number, ``invoice_id`` (default; what
the Orders API's ``purchase_units[].invoice_id`` becomes) or ``custom_field`` (``custom_id``).

Facts (reference/channel-formats.md §5.2, developer.paypal.com/docs/api/transaction-search/v1/): an OAuth2
client-credentials token; at most 31 days per request; transactions appear up to three hours after they
happen (the answer's ``last_refreshed_datetime`` says how far the data goes); amounts are signed decimal
strings; a transaction id may appear twice (balance-affecting and not).
"""

from __future__ import annotations

import time as clock
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from fetchers.base import CANONICAL_SCHEMA, FetchedStatement, QueryResult
from fetchers.http import ChannelSession
from fetchers.json_api import call_json, quote_error
from recon.config import ChannelConfig
from recon.errors import ConfigError, FetchError, NotReady
from recon.secrets import basic_credential

DEFAULT_API_BASE = "https://api-m.paypal.com"
ORDER_FIELDS = {"invoice_id": ("Invoice ID",), "custom_field": ("Custom Field",)}
PAGE_SIZE = 500
MAX_WINDOW = timedelta(days=31)
MAX_PAGES = 1000
# What the store's DECIMAL(20,6) holds.
MAX_AMOUNT = Decimal(10) ** 14
SMALLEST_UNIT = Decimal("0.000001")
# ISO times with an offset without a colon: 2019-06-04T01:27:43+0000 (strptime's %z reads both forms).
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
# PayPal's currencies without decimals (developer.paypal.com/api/rest/reference/currency-codes/).
NO_DECIMALS = frozenset({"HUF", "JPY", "TWD"})
# transaction_status: S success, P pending, V reversed/refunded, D denied.
STATUSES = {"S": "success", "P": "pending", "V": "refunded", "D": "failed"}
# A token is renewed this long before PayPal says it expires.
TOKEN_MARGIN = 60.0


def order_field(channel: ChannelConfig) -> str:
    """The configured order-number field (``invoice_id`` or ``custom_field``)."""
    field = channel.api.get("order_field") or "invoice_id"
    if field not in ORDER_FIELDS:
        raise ConfigError(f"channels.{channel.id}.api.order_field",
                          f"{field!r} is not one of {', '.join(ORDER_FIELDS)}")
    return field


def exponent_expr(currency: pl.Expr) -> pl.Expr:
    """Digits of PayPal's minor units for a currency column."""
    return pl.when(currency.is_in(list(NO_DECIMALS))).then(pl.lit(0)).otherwise(pl.lit(2))


def kind_of(code: str, amount: Decimal) -> str:
    """Canonical kind of a T-code: T00xx received payments, T11xx refunds/reversals, T01xx fees."""
    if code.startswith("T00"):
        return "payment" if amount > 0 else "adjustment"
    if code.startswith("T11"):
        return "refund"
    return "fee" if code.startswith("T01") else "adjustment"


def windows(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """[start, end) cut into pieces Transaction Search accepts (≤ 31 days each)."""
    out = []
    while start < end:
        out.append((start, min(end, start + MAX_WINDOW)))
        start = out[-1][1]
    return out


class PaypalFetcher:
    """Pulls a business date's transactions for one PayPal channel."""

    def __init__(self, channel: ChannelConfig, session: ChannelSession) -> None:
        self.channel = channel
        self.session = session
        self.base = (channel.api_base or DEFAULT_API_BASE).rstrip("/")
        self.client_id = channel.api_value("client_id")
        self.client_secret = channel.secret("client_secret")
        self.field = order_field(channel)
        self._token: tuple[str, float] | None = None  # (access token, monotonic expiry)
        self._tokens: list[str] = []  # every token issued, redacted from messages

    def fetch(self, day: date) -> list[FetchedStatement]:
        """Every transaction of ``day`` (in the channel's zone); NotReady while PayPal's data lags behind it."""
        zone = ZoneInfo(self.channel.zone)
        start = datetime.combine(day, time(), zone)
        end = datetime.combine(day + timedelta(days=1), time(), zone)
        details: list[dict[str, Any]] = []
        for first, after in windows(start, end):
            details.extend(self._search(first, after))
        rows = pl.DataFrame([self._row(d) for d in details], schema=CANONICAL_SCHEMA, orient="row")
        return [FetchedStatement(name=f"paypal_transactions_{day.isoformat()}.json",
                                 source="api:/v1/reporting/transactions", period=(day, day), rows=rows)]

    def query(self, order_no: str) -> QueryResult:
        """PayPal cannot be asked about one order by its number: the answer is always ``unknown``.

        Transaction Search needs a date window and has no invoice_id or custom_id filter; the Orders
        API needs PayPal's own order id, which the shop may not have recorded.
        """
        return QueryResult(self.channel.id, order_no, "unknown", "", note=(
            "PayPal cannot look an order up by its number (Transaction Search needs a date window and has no "
            f"{self.field} filter); fetch the order's date to see its transactions"))

    def _search(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"start_date": start.strftime(TIME_FORMAT),
                                  # end_date is inclusive: the last second of the window
                                  "end_date": (end - timedelta(seconds=1)).strftime(TIME_FORMAT),
                                  "fields": "all", "page_size": PAGE_SIZE, "balance_affecting_records_only": "Y"}
        found: list[dict[str, Any]] = []
        page, total = 1, 1
        while page <= total:
            if page > MAX_PAGES:
                raise FetchError(self.channel.id, f"transaction search: more than {MAX_PAGES} pages")
            answer = self._get("/v1/reporting/transactions", {**params, "page": page})
            if page == 1:
                self._check_refreshed(answer, end)
            details = answer.get("transaction_details")
            if not isinstance(details, list) or not all(isinstance(d, dict) for d in details):
                raise FetchError(self.channel.id, "transaction search: the answer has no transaction_details list "
                                                  "of objects")
            found.extend(details)
            total = answer.get("total_pages") or 1
            if not isinstance(total, int) or isinstance(total, bool):
                raise FetchError(self.channel.id, f"transaction search: total_pages {total!r} is not a number")
            page += 1
        return found

    def _check_refreshed(self, answer: dict[str, Any], end: datetime) -> None:
        refreshed = answer.get("last_refreshed_datetime")
        if not refreshed:
            return
        at = _time(str(refreshed), self.channel.id, "last_refreshed_datetime")
        if at < end:
            raise NotReady(self.channel.id, f"PayPal's transaction data is refreshed up to {at.isoformat()}, "
                                            f"before the end of the day ({end.isoformat()}); try again later")

    def _row(self, detail: dict[str, Any]) -> dict[str, Any]:
        info = detail.get("transaction_info") if isinstance(detail.get("transaction_info"), dict) else {}
        txn = str(info.get("transaction_id") or "")
        if not txn:
            raise FetchError(self.channel.id, "a transaction without transaction_id")
        money = _object(info.get("transaction_amount"), self.channel.id, f"{txn} transaction_amount")
        amount = _decimal(money.get("value"), self.channel.id, f"{txn} transaction_amount")
        fee_amount = _object(info.get("fee_amount"), self.channel.id, f"{txn} fee_amount")
        fee = _decimal(fee_amount.get("value", "0"), self.channel.id, f"{txn} fee_amount")
        code = str(info.get("transaction_event_code") or "")
        kind = kind_of(code, amount)
        at = _time(str(info.get("transaction_initiation_date") or ""), self.channel.id, f"{txn} initiation date")
        try:
            local = at.astimezone(ZoneInfo(self.channel.zone))
        except OverflowError:
            raise FetchError(self.channel.id, f"{txn} initiation date {at} is out of range") from None
        reference = info.get("paypal_reference_id") if info.get("paypal_reference_id_type") == "TXN" else None
        payer = detail.get("payer_info") if isinstance(detail.get("payer_info"), dict) else {}
        counterparty = payer.get("email_address") or payer.get("account_id")
        return {
            "kind": kind,
            "order_no": str(info[self.field]) if info.get(self.field) else None,
            "channel_txn_id": str(reference) if kind == "refund" and reference else txn,
            "refund_id": txn if kind == "refund" else None,
            "amount": amount,
            "currency": str(money.get("currency_code") or self.channel.currency).upper(),
            "fee": -fee,  # PayPal writes a charged fee negative; canonical fee is positive when charged
            "status": STATUSES.get(str(info.get("transaction_status")), "pending"),
            "occurred_at": at,
            "business_date": local.date(),
            "counterparty": None if counterparty is None else str(counterparty),
            "line_no": None,
            "natural_key": f"{txn}|{code}",
            "upstream_txn_id": None,
        }

    def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        for renewed in (False, True):
            token = self._access_token(renew=renewed)
            answer = call_json(self.session, "GET", self.base + path, self._secrets(), params=params,
                               headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
            if answer.status == 401 and not renewed:
                continue  # the token may have been revoked or expired early: get a new one once
            if answer.status != 200 or not isinstance(answer.payload, dict):
                raise FetchError(self.channel.id, f"GET {path} answered HTTP {answer.status}: "
                                                  f"{quote_error(_paypal_error(answer.payload), self._secrets())}")
            return answer.payload
        raise AssertionError("unreachable")  # pragma: no cover

    def _access_token(self, renew: bool = False) -> str:
        if self._token and not renew and clock.monotonic() < self._token[1]:
            return self._token[0]
        answer = call_json(self.session, "POST", self.base + "/v1/oauth2/token", self._secrets(),
                           auth=(self.client_id, self.client_secret), data={"grant_type": "client_credentials"},
                           headers={"Accept": "application/json"})
        payload = answer.payload if isinstance(answer.payload, dict) else {}
        token = payload.get("access_token")
        if answer.status != 200 or not isinstance(token, str) or not token:
            raise FetchError(self.channel.id, f"OAuth token request refused (HTTP {answer.status}): "
                                              f"{quote_error(_paypal_error(answer.payload), self._secrets())}")
        try:
            lifetime = float(payload.get("expires_in") or 0)
        except (TypeError, ValueError):
            lifetime = 0.0  # renewed on every call rather than trusted
        self._tokens.append(token)
        self._token = (token, clock.monotonic() + max(0.0, lifetime - TOKEN_MARGIN))
        return token

    def _secrets(self) -> list[str]:
        # the token endpoint gets Basic auth: base64(client_id:client_secret), which a server may echo
        return [self.client_secret, basic_credential(self.client_id, self.client_secret), *self._tokens]


def _paypal_error(payload: Any) -> Any:
    """The identifying part of a PayPal error: OAuth's error/error_description or REST's name/message."""
    if not isinstance(payload, dict):
        return payload
    keys = ("error", "error_description", "name", "message", "debug_id")
    return {k: payload[k] for k in keys if k in payload} or payload


def _object(value: Any, channel: str, what: str) -> dict[str, Any]:
    """A JSON object field (absent counts as empty)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FetchError(channel, f"{what}: {str(value)[:40]!r} is not an object")
    return value


def _decimal(value: Any, channel: str, what: str) -> Decimal:
    """An amount that fits the store's DECIMAL(20,6) exactly."""
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise FetchError(channel, f"{what}: {str(value)[:40]!r} is not an amount") from None
    if not result.is_finite() or abs(result) >= MAX_AMOUNT or result != result.quantize(SMALLEST_UNIT):
        raise FetchError(channel, f"{what}: {str(value)[:40]!r} is not an amount")
    return result


def _time(value: str, channel: str, what: str) -> datetime:
    try:
        return datetime.strptime(value, TIME_FORMAT).astimezone(UTC)
    except (ValueError, OverflowError):
        raise FetchError(channel, f"{what}: {value!r} is not a time like 2019-06-04T01:27:43+0000") from None


__all__ = ["PaypalFetcher", "exponent_expr", "order_field", "windows"]
