"""Alipay (支付宝) open-platform client: the day's trade bill and the order query, RSA2 both ways.

Formats: reference/channel-formats.md §1.1 (bill download), §1.6 (trade.query), §1.7 (signatures).

Config of an ``alipay`` channel that fetches::

    api.app_id                     the open-platform app (APPID)
    credentials.private_key        the app's RSA private key (PEM PKCS#1/PKCS#8, or bare base64)
    credentials.alipay_public_key  支付宝公钥, verifies every answer
    api_base                       the gateway, https://openapi.alipay.com/gateway.do by default
    merchant_id                    optional; the bill's #账号：[…] must then be this merchant
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import polars as pl

from fetchers import alipay_sign
from fetchers.base import CANONICAL_SCHEMA, FetchedStatement, QueryResult
from fetchers.http import ChannelSession
from fetchers.statement_zip import read_entry
from recon.config import ChannelConfig
from recon.errors import FetchError, InputError, NotReady, SignatureError, TransientFetchError

GATEWAY = "https://openapi.alipay.com/gateway.do"
BILL_METHOD = "alipay.data.dataservice.bill.downloadurl.query"
QUERY_METHOD = "alipay.trade.query"
# Alipay answers and bills are in Beijing time whatever zone the channel declares for its rows.
BEIJING = ZoneInfo("Asia/Shanghai")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# A day bill is generated "before 09:00 next day, later in special cases"; Alipay advises asking after
# 10:00. Until then its "bill does not exist" may only mean "not yet": it is NotReady, not an empty day.
BILL_READY_AT = time(10, 0)
# The bill link points at a file host (dwbillcenter.alipay.com), not at the gateway itself. A link is
# followed only to the gateway's host, or within Alipay's own domain when the gateway is Alipay's.
ALIPAY_DOMAINS = ("alipay.com", "alipaydev.com")
# What the head of the bill must say; read from the first bytes of the detail entry only.
ACCOUNT = re.compile(r"#账号：\[(\d+)\]")
START_DATE = re.compile(r"起始日期：\[(\d{4})年(\d{2})月(\d{2})日")
PREAMBLE_BYTES = 4096
# Sub-codes (compared lower-case) that mean "try again later" rather than "this request is wrong".
TRANSIENT_SUB_CODES = frozenset({"acq.system_error", "aop.acq.system_error", "isp.unknow-error", "isp.unknow_error"})

STATES = {"TRADE_SUCCESS": "paid", "TRADE_FINISHED": "paid", "WAIT_BUYER_PAY": "unpaid", "TRADE_CLOSED": "closed"}
CLOSED_NOTE = ("TRADE_CLOSED is ambiguous: either closed unpaid (timeout or cancel) or fully refunded after "
               "payment; the refund query or the day's bill tells which")


class AlipayFetcher:
    """Pulls the 业务明细 trade bill of a day and answers ``alipay.trade.query`` for one channel."""

    def __init__(self, channel: ChannelConfig, session: ChannelSession,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.channel = channel
        self.session = session
        self.app_id = channel.api_value("app_id")
        self.gateway = _gateway(channel.api_base or GATEWAY)
        self._private_key = alipay_sign.load_private_key(
            channel.secret("private_key"), f"channels.{channel.id}.credentials.private_key")
        self._alipay_key = alipay_sign.load_public_key(
            channel.secret("alipay_public_key"), f"channels.{channel.id}.credentials.alipay_public_key")
        self._clock = clock or (lambda: datetime.now(UTC))

    # -- the two things a fetcher does ---------------------------------------------------------------

    def fetch(self, day: date) -> list[FetchedStatement]:
        """The trade bill of ``day`` (Beijing date) as the downloaded zip, or an empty day."""
        name = f"alipay_{self.app_id}_{day.isoformat()}_trade.zip"
        source = f"api:{BILL_METHOD}"
        now = self._clock().astimezone(BEIJING)
        ready = datetime.combine(day + timedelta(days=1), BILL_READY_AT, BEIJING)
        if day >= now.date():
            raise NotReady(self.channel.id, f"the bill of {day} is published the next day; ask after "
                                            f"{ready:%Y-%m-%d %H:%M} Beijing time")
        answer = self.call(BILL_METHOD, {"bill_type": "trade", "bill_date": day.isoformat()})
        if answer.get("code") != "10000":
            if "bill_not_exist" in str(answer.get("sub_code", "")).lower():
                if now < ready:
                    raise NotReady(self.channel.id, f"no bill of {day} yet ({_reason(answer)}); Alipay may still "
                                                    f"be generating it, ask after {ready:%Y-%m-%d %H:%M} Beijing time")
                # Alipay says the same for a day without a single trade: the day is complete and empty.
                return [FetchedStatement(name, source, (day, day), rows=pl.DataFrame(schema=CANONICAL_SCHEMA))]
            raise self._refusal(BILL_METHOD, answer)
        url = answer.get("bill_download_url")
        if not isinstance(url, str) or not url:
            raise FetchError(self.channel.id, f"{BILL_METHOD} succeeded without a bill_download_url")
        self._check_link(url)
        raw = self._download(url)
        self._check_bill(name, raw, day)
        return [FetchedStatement(name, source, (day, day), raw=raw)]

    def query(self, order_no: str) -> QueryResult:
        """What Alipay says about merchant order ``order_no`` (out_trade_no) right now."""
        answer = self.call(QUERY_METHOD, {"out_trade_no": order_no})
        code, sub_code = answer.get("code"), str(answer.get("sub_code", ""))
        if code != "10000":
            if sub_code.upper() == "ACQ.TRADE_NOT_EXIST":
                return QueryResult(self.channel.id, order_no, "not_found", sub_code,
                                   note="Alipay has no trade for this order (normal when the buyer never opened the cashier)")
            raise self._refusal(QUERY_METHOD, answer)
        echoed = answer.get("out_trade_no")
        if echoed is not None and echoed != order_no:
            raise FetchError(self.channel.id, f"{QUERY_METHOD} for order {order_no!r} answered about {echoed!r}")
        status = str(answer.get("trade_status", ""))
        state = STATES.get(status, "unknown")
        paid_at = self._time(answer.get("send_pay_date")) if state in ("paid", "closed") else None
        if state == "paid" and answer.get("total_amount") is None:
            raise FetchError(self.channel.id, f"{QUERY_METHOD}: {status} without total_amount")
        amount = self._amount(answer.get("total_amount"))
        note = CLOSED_NOTE if state == "closed" else ("" if status in STATES else f"unknown trade_status {status!r}")
        return QueryResult(self.channel.id, order_no, state, status, amount=amount,
                           currency=answer.get("trans_currency") or self.channel.currency,
                           channel_txn_id=answer.get("trade_no") or None, paid_at=paid_at, note=note)

    # -- requests and answers ------------------------------------------------------------------------

    def request_params(self, method: str, biz_content: dict[str, Any]) -> dict[str, str]:
        """The unsigned common and business parameters of one gateway call."""
        return {
            "app_id": self.app_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": self._clock().astimezone(BEIJING).strftime(TIME_FORMAT),
            "version": "1.0",
            "biz_content": json.dumps(biz_content, ensure_ascii=False, separators=(",", ":")),
        }

    def sign(self, params: dict[str, str]) -> dict[str, str]:
        """``params`` with their RSA2 ``sign`` added."""
        return {**params, "sign": alipay_sign.sign(self._private_key, alipay_sign.signing_string(params))}

    def call(self, method: str, biz_content: dict[str, Any]) -> dict[str, Any]:
        """POST a signed call to the gateway; the verified ``<method>_response`` (or error) object."""
        params = self.sign(self.request_params(method, biz_content))
        response = self.session.request(
            "POST", self.gateway, data=params,
            headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"})
        if response.status_code != 200:
            raise FetchError(self.channel.id, f"{method}: the gateway answered HTTP {response.status_code}")
        try:
            raw = response.content.decode("utf-8")
        except UnicodeDecodeError:
            raise TransientFetchError(self.channel.id, f"{method}: the answer is not UTF-8 text") from None
        return self.verified(method, raw)

    def verified(self, method: str, raw: str) -> dict[str, Any]:
        """The response object of ``method`` in the raw body ``raw``, once its signature verifies.

        Nothing unverified is returned. An unsigned answer is a SignatureError whose message carries the
        (unverified) code and sub_code, since Alipay leaves some refusals unsigned, e.g. a bad app_id.
        """
        try:
            members = alipay_sign.top_level(raw)
        except ValueError:
            kind = "an HTML page" if raw.lstrip()[:1] == "<" else "not JSON"
            raise TransientFetchError(self.channel.id, f"{method}: the gateway answered {kind}") from None
        wanted = method.replace(".", "_") + "_response"
        key = wanted if wanted in members else "error_response" if "error_response" in members else None
        if key is None:
            raise FetchError(self.channel.id, f"{method}: the answer holds neither {wanted} nor error_response")
        if len(members[key]) > 1 or len(members.get("sign", [])) > 1:
            raise SignatureError(self.channel.id, f"{method}: the answer repeats {key!r} or 'sign'; refused")
        part = members[key][0]
        signs = members.get("sign")
        signature = signs[0].value if signs else None
        if not isinstance(signature, str) or not signature:
            raise SignatureError(self.channel.id, f"{method}: the answer is not signed; nothing of it is used "
                                                  f"(unverified: {_reason(part.value)})")
        if not alipay_sign.verify(self._alipay_key, part.text, signature):
            raise SignatureError(self.channel.id, f"{method}: the answer's signature does not verify with "
                                                  "credentials.alipay_public_key; nothing of it is used")
        if not isinstance(part.value, dict):
            raise FetchError(self.channel.id, f"{method}: {key} is not an object")
        return part.value

    def _refusal(self, method: str, answer: dict[str, Any]) -> FetchError:
        code, sub_code = str(answer.get("code", "")), str(answer.get("sub_code", ""))
        problem = f"{method} refused: {_reason(answer)}"
        if code == "20000" or sub_code.lower() in TRANSIENT_SUB_CODES:
            return TransientFetchError(self.channel.id, problem)
        return FetchError(self.channel.id, problem)

    # -- the bill file -------------------------------------------------------------------------------

    def _check_link(self, url: str) -> None:
        """Follow a bill link only to the gateway's own host, or inside Alipay's domain for Alipay's gateway."""
        link, gate = urlsplit(url), urlsplit(self.gateway)
        host, gate_host = (link.hostname or "").lower(), (gate.hostname or "").lower()
        if link.scheme not in ("http", "https") or (gate.scheme == "https" and link.scheme != "https"):
            raise FetchError(self.channel.id, f"bill link with scheme {link.scheme!r} refused (gateway is "
                                              f"{gate.scheme})")
        if host == gate_host and link.port == gate.port:
            return
        for domain in ALIPAY_DOMAINS:
            if _within(gate_host, domain) and _within(host, domain):
                return
        raise FetchError(self.channel.id, f"bill link points at {host or '?'}, not at the gateway's host "
                                          f"{gate_host}; refused")

    def _download(self, url: str) -> bytes:
        # The link lives 30 seconds: fetched at once, through the session (timeouts, bounded retries).
        response = self.session.request("GET", url)
        if response.status_code != 200:
            raise FetchError(self.channel.id, f"bill download answered HTTP {response.status_code} (the link "
                                              "lives 30 s; fetch again)")
        raw = response.content
        if raw[:2] != b"PK":
            kind = response.headers.get("Content-Type", "no content type")
            raise TransientFetchError(self.channel.id, f"bill download answered {kind}, not a zip "
                                                       "(an expired link or a proxy page?)")
        return raw

    def _check_bill(self, name: str, raw: bytes, day: date) -> None:
        """The zip's detail bill must be this merchant's and of ``day``; the rest is the parser's work."""
        head = self._preamble(name, raw)
        account = ACCOUNT.search(head)
        expected = self.channel.merchant_id
        if account and expected and not _same_merchant(account.group(1), expected):
            raise FetchError(self.channel.id, f"the bill is of merchant {account.group(1)}, but the channel is "
                                              f"merchant {expected}; refused")
        start = START_DATE.search(head)
        if start and date(*map(int, start.groups())) != day:
            raise FetchError(self.channel.id, f"asked for the bill of {day}, got one starting "
                                              f"{start.group(1)}-{start.group(2)}-{start.group(3)}")

    def _preamble(self, name: str, raw: bytes) -> str:
        """The head of the detail entry, picked as the parser picks it (zip damage and bombs refused)."""
        try:
            _, detail = read_entry(Path(name), raw, lambda n: "明细" in n and "汇总" not in n)
        except InputError as exc:
            raise FetchError(self.channel.id, f"the downloaded bill is unusable: {exc.problem}") from None
        return detail[:PREAMBLE_BYTES].decode("gb18030", errors="replace")

    # -- values --------------------------------------------------------------------------------------

    def _amount(self, value: Any) -> Decimal | None:
        if value is None or value == "":
            return None
        try:
            return Decimal(str(value))
        except InvalidOperation:
            raise FetchError(self.channel.id, f"{QUERY_METHOD}: total_amount {value!r} is not an amount") from None

    def _time(self, value: Any) -> datetime | None:
        if not value:
            return None
        try:
            return datetime.strptime(str(value), TIME_FORMAT).replace(tzinfo=BEIJING).astimezone(UTC)
        except ValueError:
            raise FetchError(self.channel.id, f"{QUERY_METHOD}: send_pay_date {value!r} is not "
                                              "'yyyy-MM-dd HH:mm:ss'") from None


def _gateway(base: str) -> str:
    """``api_base`` is the gateway URL; a bare base (the sandbox's ``…/alipay``) gets ``/gateway.do``."""
    return base if urlsplit(base).path.endswith(".do") else base.rstrip("/") + "/gateway.do"


def _within(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)


def _same_merchant(account: str, configured: str) -> bool:
    """The bill's 账号 is the PID (2088…, 16 digits) followed by 0156; either form may be configured."""
    return account in (configured, configured + "0156")


def _reason(answer: Any) -> str:
    if not isinstance(answer, dict):
        return "no code"
    # Cut short: these words may come from an unverified answer and end up in a log line.
    parts = [str(answer.get(k))[:120] for k in ("code", "msg", "sub_code", "sub_msg") if answer.get(k)]
    return " ".join(parts) or "no code"
