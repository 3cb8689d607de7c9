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

V2 (``api.version = "2"``, 彩虹易支付V2, RSA) reads the same records through the signed ``api/pay/orders``
and ``api/pay/query`` (fetchers/epay_v2.py) and maps them by the same code. V2 records add ``refundmoney``:
a paid order with ``refundmoney > 0`` becomes status refunded, as status 2 does. No refund row is made: the
record gives the refunded amount but not when it was refunded, and a refund row dated by a guess (the pay
time, or the fetch time) would put the money on the wrong day. A partial refund is thus "refunded" too.

V1: the merchant key travels in the query string (V1 design). It is never put into a message: the session
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

from fetchers import epay_v2
from fetchers.base import FetchedStatement, QueryResult
from fetchers.epay_v2 import EpayV2Client, load_private_key, load_public_key, sign_string
from fetchers.http import ChannelSession
from fetchers.tabular import canonical
from recon.config import ChannelConfig
from recon.errors import ConfigError, FetchError, NotReady
from recon.secrets import redact

ENDPOINT = "api.php"
V1 = "1"  # api.version; "2" is 彩虹易支付V2 (RSA-signed api/pay/*), see fetchers/epay_v2.py
V2 = epay_v2.V2
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
# V2 answers code -1 for every error (a bad request signature too), so only the message tells a missing
# order from a refused request.
V2_NOT_FOUND_MSG = "不存在"
CODE_BAD_MERCHANT = -3  # 商户ID不存在 / 商户密钥错误 / 该商户只能使用RSA签名类型
PAID, UNPAID, REFUNDED, FROZEN = "1", "0", "2", "3"
# api/pay/query passes its answer through PHP array_filter, which drops every falsy value – status "0"
# included: a V2 query answer without status is an unpaid order.
V2_FILTERED_STATUS = UNPAID
ROW_STATUS = {PAID: "success", REFUNDED: "refunded", FROZEN: "success"}
QUERY_STATE = {PAID: "paid", UNPAID: "unpaid", REFUNDED: "refunded", FROZEN: "paid"}
# ASCII digits only: \d also takes other scripts' digits ('١', '１'), which the decimal cast refuses.
_AMOUNT = re.compile(r"^-?[0-9]{1,14}(\.[0-9]{1,6})?$")
# Printed (redacted, shortened) when an answer is not the JSON expected, so the operator sees what came.
SNIPPET = 120


# ---------------------------------------------------------------------------------------------- signing
# sign_string (imported from epay_v2): values are the exact received strings; never re-format money.

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
    """Reads one Epay merchant's orders: V1 ``api.php`` (pid + key) or V2 signed ``api/pay/*`` (pid + RSA keys)."""

    def __init__(self, channel: ChannelConfig, session: ChannelSession,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        if not channel.api_base:
            raise ConfigError(f"channels.{channel.id}.api_base",
                              "an epay channel needs the URL of its panel (there is no official host)")
        self.channel = channel
        self.session = session
        self.version = channel.api.get("version", V1)
        self._now = now
        self.pid = channel.api_value("pid")
        self.zone = ZoneInfo(channel.zone)
        self.key = ""
        self._v2: EpayV2Client | None = None
        if self.version == V1:
            self.key = channel.secret("key")
            self.url = channel.api_base.rstrip("/") + "/" + ENDPOINT
            self.list_what, self.order_what, self.code_ok = "act=orders", "act=order", CODE_OK
        elif self.version == V2:
            self._v2 = self._v2_client(channel)
            self.url = channel.api_base.rstrip("/") + "/" + epay_v2.ORDERS
            self.list_what, self.order_what, self.code_ok = epay_v2.ORDERS, epay_v2.QUERY, epay_v2.CODE_OK
        else:
            raise ConfigError(f"channels.{channel.id}.api.version",
                              f"unknown Epay API version {self.version!r}: \"1\" (api.php, MD5 key) or "
                              "\"2\" (V2, RSA api/pay/*)")

    def _v2_client(self, channel: ChannelConfig) -> EpayV2Client:
        if "private_key" not in channel.credentials and "key" in channel.credentials:
            # Only the V1 key given: the version, not a credential, is what is most likely wrong.
            raise ConfigError(f"channels.{channel.id}.api.version",
                              "Epay V2 (RSA) needs credentials.private_key and credentials.platform_public_key, "
                              "but only the V1 MD5 key is given: set version \"1\" or give the RSA keys")
        base = f"channels.{channel.id}.credentials."
        private_key = load_private_key(channel.secret("private_key"), base + "private_key")
        platform_key = load_public_key(channel.secret("platform_public_key"), base + "platform_public_key")
        assert channel.api_base is not None
        return EpayV2Client(channel.id, channel.api_base, self.pid, private_key, platform_key, self.session,
                            lambda: self._now())

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
        source = "api:api.php?act=orders" if self._v2 is None else f"api:{epay_v2.ORDERS}"
        return [FetchedStatement(name=f"epay_{self.pid}_{day.isoformat()}.json", source=source,
                                 period=(day, day), rows=rows)]

    def query(self, order_no: str) -> QueryResult:
        """What the panel (``act=order`` / ``api/pay/query``) says about ``out_trade_no = order_no`` now."""
        what = self.order_what
        answer = self._order(order_no)
        code = _code(answer)
        if code == CODE_NOT_FOUND and (self._v2 is None or V2_NOT_FOUND_MSG in str(answer.get("msg") or "")):
            if answer.get("_unsigned"):
                return QueryResult(self.channel.id, order_no, "unknown", str(answer.get("msg") or ""),
                                   note="the panel says it knows no such order, in an unsigned answer; not trusted")
            return QueryResult(self.channel.id, order_no, "not_found", str(answer.get("msg") or ""),
                               note="Epay knows no order with this out_trade_no")
        self._check_code(answer, what)
        if self._v2 is not None and "status" not in answer:
            answer = {**answer, "status": V2_FILTERED_STATUS}
        raw_status = _text(answer.get("status")) or ""
        status = _effective_status(self.channel.id, answer) or ""
        state = QUERY_STATE.get(status)
        if state is None:
            raise FetchError(self.channel.id, f"{what}: unknown order status {status!r} for {order_no}")
        paid_at = self._time(_text(answer.get("endtime"))) if state in ("paid", "refunded") else None
        note = "funds frozen by the aggregator (status 3)" if raw_status == FROZEN else ""
        if status != raw_status:
            note = f"refundmoney {_text(answer.get('refundmoney'))} on a paid order (status {raw_status})"
        amount = _money(self.channel.id, answer.get("money"))
        return QueryResult(self.channel.id, order_no, state, raw_status, amount=amount,
                           currency=self.channel.currency, channel_txn_id=_text(answer.get("trade_no")),
                           paid_at=paid_at, note=note)

    # ------------------------------------------------------------------------------------ internals

    def _orders_page(self, offset: int) -> dict[str, Any]:
        params = {"limit": str(PAGE_LIMIT), "offset": str(offset)}
        if self._v2 is not None:
            return self._v2.call(epay_v2.ORDERS, params)
        return self._get({"act": "orders", **params}, "act=orders")

    def _order(self, order_no: str) -> dict[str, Any]:
        if self._v2 is not None:
            return self._v2.call(epay_v2.QUERY, {"out_trade_no": order_no})
        return self._get({"act": "order", "out_trade_no": order_no}, "act=order")

    def _list_orders(self, cutoff: datetime) -> list[dict[str, Any]]:
        """Every order from the newest back to the first page older than ``cutoff``, once each, in answer order."""
        what = self.list_what
        seen: dict[str, dict[str, Any]] = {}
        offset, rewinds = 0, 0
        for _ in range(MAX_PAGES):
            answer = self._orders_page(offset)
            self._check_code(answer, what)
            page = answer.get("data") or []
            if not isinstance(page, list) or not all(isinstance(r, dict) for r in page):
                raise FetchError(self.channel.id, f"{what}: 'data' is not a list of orders")
            trade_nos = [self._trade_no(r) for r in page]
            if offset > 0 and page and not any(t in seen for t in trade_nos):
                # The overlap row is gone: rows moved up between requests, some may have been skipped.
                rewinds += 1
                if rewinds > MAX_REWINDS:
                    raise FetchError(self.channel.id, f"{what}: the order list kept shifting while paging")
                offset = max(0, offset - (PAGE_LIMIT - PAGE_OVERLAP))
                continue
            for trade_no, record in zip(trade_nos, page, strict=True):
                seen.setdefault(trade_no, record)
            if len(page) < PAGE_LIMIT or self._oldest(page) < cutoff:
                return list(seen.values())
            offset += PAGE_LIMIT - PAGE_OVERLAP
        raise FetchError(self.channel.id, f"{what}: more than {MAX_PAGES} pages; stopped")

    def _trade_no(self, record: dict[str, Any]) -> str:
        trade_no = _text(record.get("trade_no"))
        if not trade_no:
            raise FetchError(self.channel.id, f"{self.list_what}: an order without trade_no")
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
        values = [{**{f: _text(r.get(f)) for f in fields}, "status": _effective_status(self.channel.id, r)}
                  for r in records]
        frame = pl.DataFrame(values,
                             schema={f: pl.String for f in fields}, orient="row")
        frame = frame.with_columns(line_no=pl.int_range(1, pl.len() + 1, dtype=pl.Int64))
        unknown = frame.filter(~pl.col("status").is_in([PAID, UNPAID, REFUNDED, FROZEN]))
        if unknown.height:
            raise FetchError(self.channel.id, f"{self.list_what}: unknown status {unknown['status'][0]!r} "
                                              f"(order {unknown['trade_no'][0]})")
        frame = frame.filter(pl.col("status") != UNPAID)
        bad = frame.filter(~pl.col("money").fill_null("").str.contains(_AMOUNT.pattern))
        if bad.height:
            raise FetchError(self.channel.id, f"{self.list_what}: money {bad['money'][0]!r} of order "
                                              f"{bad['trade_no'][0]} is not an amount")
        blank = pl.col("endtime").is_null() | pl.col("endtime").is_in(list(NO_TIME))
        paid_text = pl.when(blank).then(pl.col("addtime")).otherwise(pl.col("endtime"))
        frame = frame.with_columns(_paid=paid_text, _local=paid_text.str.strptime(pl.Datetime("us"), TIME_FORMAT,
                                                                                  strict=False))
        bad = frame.filter(pl.col("_local").is_null())
        if bad.height:
            raise FetchError(self.channel.id, f"{self.list_what}: pay time {bad['_paid'][0]!r} of order "
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
        if code == self.code_ok and not answer.get("_unsigned"):
            return
        msg = self._snippet(str(answer.get("msg") or ""))
        if self._v2 is not None:
            unsigned = " (unsigned answer)" if answer.get("_unsigned") else ""
            raise FetchError(self.channel.id, f"{what}: merchant {self.pid}: code {code}{unsigned}: {msg}")
        if code == CODE_BAD_MERCHANT:
            raise FetchError(self.channel.id, f"{what}: merchant {self.pid} refused (wrong pid or key, or an "
                                              f"RSA-only merchant): {msg}")
        raise FetchError(self.channel.id, f"{what}: code {code}: {msg}")

    def _snippet(self, text: str) -> str:
        return redact(text, [self.key, *self.session.secrets])[:SNIPPET]


def _code(answer: dict[str, Any]) -> int | None:
    try:
        return int(str(answer.get("code")))
    except ValueError:
        return None


def _effective_status(channel: str, record: Mapping[str, Any]) -> str | None:
    """The record's status; a paid (or frozen) V2 order with ``refundmoney`` > 0 counts as refunded (status 2)."""
    status = _text(record.get("status"))
    refunded = _money(channel, record.get("refundmoney"))
    if status in (PAID, FROZEN) and refunded is not None and refunded > 0:
        return REFUNDED
    return status


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
