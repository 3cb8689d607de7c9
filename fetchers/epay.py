"""易支付 / Epay (彩虹易支付 and clones): the order list and order query of ``api.php``, and notify signing.

Formats and quirks: reference/channel-formats.md §3. Epay publishes no statement file: a day's records
are the paged ``act=orders`` list (newest first), kept where the pay time falls in the day.

Status mapping (``status`` of an order record):
    "1" 已支付 → payment, success
    "2" 已退款 → payment, refunded (the list gives neither refund time nor amount, so no refund row is
        made; the row says the money went back, the classifier compares it with the shop's status)
    "3" 已冻结 → payment, success (the buyer paid; the aggregator froze the merchant's funds, a
        settlement matter and not an order matter)
    "0" 未支付 → skipped: an abandoned cashier page is no money, and every shop has many of them
Any other status is a FetchError rather than a guess.

The merchant key travels in the query string (V1 design). It is never put into a message: the session
strips query strings from its log, and every message built here is redacted with the key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import requests

from fetchers.base import FetchedStatement, QueryResult
from fetchers.http import ChannelSession
from fetchers.tabular import canonical
from recon.config import ChannelConfig
from recon.errors import ConfigError, FetchError, NotReady
from recon.secrets import redact

ENDPOINT = "api.php"
V1 = "1"  # api.version; V2 ("彩虹易支付V2", RSA-signed api/pay/*) is not implemented
# act=orders refuses more than 50 per page (api.php clamps limit to 50).
PAGE_LIMIT = 50
# Pages overlap by one record: if an old order is deleted between two requests (clones purge unpaid
# orders by cron) the rows shift up, the overlap goes missing, and the page is asked again from further back.
PAGE_OVERLAP = 1
# Upper bounds on every loop: 2000 pages are 100 000 orders; a list that keeps shifting is an error.
MAX_PAGES = 2000
MAX_REWINDS = 20
# Orders are listed by creation (trade_no DESC) but a day holds what was *paid* in it: an order created
# before midnight may be paid after it, so paging continues this far before the day's start.
CREATE_TO_PAY_LOOKBACK = timedelta(hours=24)
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# MySQL zero dates and blanks stand for "no time" (endtime of unpaid orders).
NO_TIME = ("", "0000-00-00 00:00:00")
CODE_OK = 1  # V1 api.php answers code 1 on success (V2 uses 0)
CODE_NOT_FOUND = -1
CODE_BAD_MERCHANT = -3  # 商户ID不存在 / 商户密钥错误 / 该商户只能使用RSA签名类型
PAID, UNPAID, REFUNDED, FROZEN = "1", "0", "2", "3"
ROW_STATUS = {PAID: "success", REFUNDED: "refunded", FROZEN: "success"}
QUERY_STATE = {PAID: "paid", UNPAID: "unpaid", REFUNDED: "refunded", FROZEN: "paid"}
_AMOUNT = re.compile(r"^-?\d{1,14}(\.\d{1,6})?$")
# Printed (redacted, shortened) when an answer is not the JSON expected, so the operator sees what came.
SNIPPET = 120


# ---------------------------------------------------------------------------------------------- signing

def sign_string(params: Mapping[str, str]) -> str:
    """The V1/V2 sign content: drop sign, sign_type and empty values; sort keys by byte order; ``k=v&…``.

    Values are the exact received (URL-decoded) strings: never re-format money (``1.00`` vs ``1``).
    """
    kept = {k: v for k, v in params.items() if k not in ("sign", "sign_type") and v != "" and v is not None}
    return "&".join(f"{k}={kept[k]}" for k in sorted(kept, key=lambda k: k.encode("utf-8")))


def notify_sign(params: Mapping[str, str], key: str) -> str:
    """Epay V1 MD5 notify signature: md5(sign_string + key), lowercase hex (channel-formats.md §3.2)."""
    return hashlib.md5((sign_string(params) + key).encode("utf-8")).hexdigest()


def verify_notify(params: Mapping[str, str], key: str) -> bool:
    """True when ``params['sign']`` is the V1 MD5 signature (case-insensitive, constant-time compare)."""
    given = str(params.get("sign") or "").lower()
    return hmac.compare_digest(given.encode("utf-8"), notify_sign(params, key).encode("utf-8"))


def epusdt_sign(params: Mapping[str, Any], token: str) -> str:
    """epusdt signature: md5(sorted non-empty ``k=v&…`` + api token), lowercase (channel-formats.md §4.2).

    Values are rendered as they arrived: parse the JSON notify with ``parse_float=Decimal`` so that
    ``100`` stays ``100`` and ``7.9104`` stays ``7.9104``.
    """
    text = {k: _text(v) or "" for k, v in params.items() if k != "signature"}
    return notify_sign(text, token)


# ---------------------------------------------------------------------------------------------- fetcher

class EpayFetcher:
    """Reads one Epay merchant's orders through the V1 ``api.php`` (pid + key)."""

    def __init__(self, channel: ChannelConfig, session: ChannelSession,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        if not channel.api_base:
            raise ConfigError(f"channels.{channel.id}.api_base",
                              "an epay channel needs the URL of its panel (there is no official host)")
        if channel.api.get("version", V1) != V1:
            raise ConfigError(f"channels.{channel.id}.api.version",
                              "only Epay V1 (api.php with the MD5 merchant key) is supported; V2 (RSA, api/pay/*) "
                              "is not implemented yet. Merchants whose key type allows MD5 can use V1: remove it")
        self.channel = channel
        self.session = session
        self.pid = channel.api_value("pid")
        self.key = channel.secret("key")
        self.zone = ZoneInfo(channel.zone)
        self.url = channel.api_base.rstrip("/") + "/" + ENDPOINT
        self._now = now

    def fetch(self, day: date) -> list[FetchedStatement]:
        """Orders paid on ``day`` (channel zone), from the paged order list; NotReady before the day ends.

        Args:
            day: the business date.
        Returns:
            one statement with canonical rows (possibly none; the day is still covered).
        """
        start = datetime.combine(day, time(), self.zone)
        end = start + timedelta(days=1)
        if self._now() < end:
            raise NotReady(self.channel.id, f"{day} is not over yet in {self.channel.zone}")
        records = self._list_orders(start - CREATE_TO_PAY_LOOKBACK)
        rows = self._frame(records, day)
        return [FetchedStatement(name=f"epay_{self.pid}_{day.isoformat()}.json", source="api:api.php?act=orders",
                                 period=(day, day), rows=rows)]

    def query(self, order_no: str) -> QueryResult:
        """What ``act=order`` says about ``out_trade_no = order_no`` now."""
        answer = self._get({"act": "order", "out_trade_no": order_no}, "act=order")
        code = _code(answer)
        if code == CODE_NOT_FOUND:
            return QueryResult(self.channel.id, order_no, "not_found", str(answer.get("msg") or ""),
                               note="Epay knows no order with this out_trade_no")
        self._check_code(answer, "act=order")
        status = _text(answer.get("status")) or ""
        state = QUERY_STATE.get(status)
        if state is None:
            raise FetchError(self.channel.id, f"act=order: unknown order status {status!r} for {order_no}")
        paid_at = self._time(_text(answer.get("endtime"))) if state in ("paid", "refunded") else None
        note = "funds frozen by the aggregator (status 3)" if status == FROZEN else ""
        amount = _money(self.channel.id, answer.get("money"))
        return QueryResult(self.channel.id, order_no, state, status, amount=amount,
                           currency=self.channel.currency, channel_txn_id=_text(answer.get("trade_no")),
                           paid_at=paid_at, note=note)

    # ------------------------------------------------------------------------------------ internals

    def _list_orders(self, cutoff: datetime) -> list[dict[str, Any]]:
        """Every order from the newest back to the first page older than ``cutoff``, once each, in answer order."""
        seen: dict[str, dict[str, Any]] = {}
        offset, rewinds = 0, 0
        for _ in range(MAX_PAGES):
            answer = self._get({"act": "orders", "limit": str(PAGE_LIMIT), "offset": str(offset)}, "act=orders")
            self._check_code(answer, "act=orders")
            page = answer.get("data") or []
            if not isinstance(page, list) or not all(isinstance(r, dict) for r in page):
                raise FetchError(self.channel.id, "act=orders: 'data' is not a list of orders")
            trade_nos = [self._trade_no(r) for r in page]
            if offset > 0 and page and not any(t in seen for t in trade_nos):
                # The overlap row is gone: rows moved up between requests, some may have been skipped.
                rewinds += 1
                if rewinds > MAX_REWINDS:
                    raise FetchError(self.channel.id, "act=orders: the order list kept shifting while paging")
                offset = max(0, offset - (PAGE_LIMIT - PAGE_OVERLAP))
                continue
            for trade_no, record in zip(trade_nos, page, strict=True):
                seen.setdefault(trade_no, record)
            if len(page) < PAGE_LIMIT or self._oldest(page) < cutoff:
                return list(seen.values())
            offset += PAGE_LIMIT - PAGE_OVERLAP
        raise FetchError(self.channel.id, f"act=orders: more than {MAX_PAGES} pages; stopped")

    def _trade_no(self, record: dict[str, Any]) -> str:
        trade_no = _text(record.get("trade_no"))
        if not trade_no:
            raise FetchError(self.channel.id, "act=orders: an order without trade_no")
        return trade_no

    def _oldest(self, page: list[dict[str, Any]]) -> datetime:
        times = [self._time(_text(r.get("addtime"))) for r in page]
        return min((t for t in times if t is not None), default=datetime.max.replace(tzinfo=UTC))

    def _time(self, value: str | None) -> datetime | None:
        if value is None or value in NO_TIME:
            return None
        try:
            return datetime.strptime(value, TIME_FORMAT).replace(tzinfo=self.zone).astimezone(UTC)
        except ValueError:
            raise FetchError(self.channel.id, f"{value!r} is not a time in the format {TIME_FORMAT}") from None

    def _frame(self, records: list[dict[str, Any]], day: date) -> pl.DataFrame:
        """Canonical rows of the records paid (or refunded) on ``day``."""
        fields = ("trade_no", "out_trade_no", "api_trade_no", "addtime", "endtime", "money", "status", "buyer")
        frame = pl.DataFrame([{f: _text(r.get(f)) for f in fields} for r in records],
                             schema={f: pl.String for f in fields}, orient="row")
        frame = frame.with_columns(line_no=pl.int_range(1, pl.len() + 1, dtype=pl.Int64))
        unknown = frame.filter(~pl.col("status").is_in([PAID, UNPAID, REFUNDED, FROZEN]))
        if unknown.height:
            raise FetchError(self.channel.id, f"act=orders: unknown status {unknown['status'][0]!r} "
                                              f"(order {unknown['trade_no'][0]})")
        frame = frame.filter(pl.col("status") != UNPAID)
        bad = frame.filter(~pl.col("money").fill_null("").str.contains(_AMOUNT.pattern))
        if bad.height:
            raise FetchError(self.channel.id, f"act=orders: money {bad['money'][0]!r} of order {bad['trade_no'][0]} "
                                              "is not an amount")
        blank = pl.col("endtime").is_null() | pl.col("endtime").is_in(list(NO_TIME))
        paid_text = pl.when(blank).then(pl.col("addtime")).otherwise(pl.col("endtime"))
        frame = frame.with_columns(_paid=paid_text, _local=paid_text.str.strptime(pl.Datetime("us"), TIME_FORMAT,
                                                                                  strict=False))
        bad = frame.filter(pl.col("_local").is_null())
        if bad.height:
            raise FetchError(self.channel.id, f"act=orders: pay time {bad['_paid'][0]!r} of order "
                                              f"{bad['trade_no'][0]} is not a time in the format {TIME_FORMAT}")
        zoned = pl.col("_local").dt.replace_time_zone(self.channel.zone, ambiguous="earliest", non_existent="null")
        rows = frame.with_columns(occurred_at=zoned.dt.convert_time_zone("UTC"), business_date=zoned.dt.date())
        rows = rows.filter(pl.col("business_date") == day).with_columns(
            kind=pl.lit("payment"),
            order_no=pl.col("out_trade_no"),
            channel_txn_id=pl.col("trade_no"),
            amount=pl.col("money"),
            currency=pl.lit(self.channel.currency),
            status=pl.col("status").replace_strict(ROW_STATUS, return_dtype=pl.String),
            counterparty=_blank_null("buyer"),
            natural_key=pl.col("trade_no"),
            upstream_txn_id=_blank_null("api_trade_no"),
        )
        return canonical(rows)

    def _get(self, params: dict[str, str], what: str) -> dict[str, Any]:
        """GET api.php with pid and key added; the decoded JSON object (Decimal for fractions)."""
        try:
            response = self.session.request("GET", self.url, params={**params, "pid": self.pid, "key": self.key})
        except requests.RequestException as exc:  # not retried by the session (e.g. a broken body)
            raise FetchError(self.channel.id, f"{what}: {type(exc).__name__} while reading the answer") from None
        if response.status_code != 200:
            raise FetchError(self.channel.id, f"{what}: HTTP {response.status_code}: {self._snippet(response.text)}")
        try:
            answer = json.loads(response.content.decode("utf-8-sig"), parse_float=Decimal)
        except (ValueError, UnicodeDecodeError):
            snippet = self._snippet(response.text)
            raise FetchError(self.channel.id, f"{what}: the answer is not JSON: {snippet}") from None
        if not isinstance(answer, dict):
            raise FetchError(self.channel.id, f"{what}: the answer is not a JSON object")
        return answer

    def _check_code(self, answer: dict[str, Any], what: str) -> None:
        code = _code(answer)
        if code == CODE_OK:
            return
        msg = self._snippet(str(answer.get("msg") or ""))
        if code == CODE_BAD_MERCHANT:
            raise FetchError(self.channel.id, f"{what}: merchant {self.pid} refused (wrong pid or key, or an "
                                              f"RSA-only merchant): {msg}")
        raise FetchError(self.channel.id, f"{what}: code {code}: {msg}")

    def _snippet(self, text: str) -> str:
        return redact(text, [self.key])[:SNIPPET]


def _code(answer: dict[str, Any]) -> int | None:
    try:
        return int(str(answer.get("code")))
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    """A JSON value as the string it stands for: numbers without float noise, None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value).strip()


def _money(channel: str, value: Any) -> Decimal | None:
    text = _text(value)
    if not text:
        return None
    if not _AMOUNT.match(text):
        raise FetchError(channel, f"{text!r} is not an amount")
    return Decimal(text)


def _blank_null(col: str) -> pl.Expr:
    return pl.when(pl.col(col) == "").then(None).otherwise(pl.col(col))
