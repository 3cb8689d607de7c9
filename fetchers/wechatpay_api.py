"""WeChat Pay (微信支付) API v3 client: the day's trade bill and the order query.

Formats, errors and signing: reference/channel-formats.md §2.1, §2.4 and §2.5.

Config (``[[channels]]`` of kind ``wechatpay``):
    api.mchid               商户号
    api.serial_no           serial of the merchant API certificate (sent in Authorization)
    api.platform_serial     the Wechatpay-Serial we expect (platform certificate serial or PUB_KEY_ID_…);
                            may be left out when credentials.platform_public_key is a certificate
    credentials.private_key          merchant API private key (apiclient_key.pem)
    credentials.platform_public_key  WeChat Pay platform public key, or the platform certificate
    api_base                https://api.mch.weixin.qq.com unless set (the sandbox in tests)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import zlib
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import polars as pl
import requests

from fetchers import wechatpay_sign as ws
from fetchers.base import CANONICAL_SCHEMA, FetchedStatement, QueryResult
from fetchers.http import ChannelSession
from fetchers.tabular import canonical
from recon.config import ChannelConfig
from recon.errors import FetchError, InputError, NotReady, SignatureError
from recon.secrets import redact

DEFAULT_API_BASE = "https://api.mch.weixin.qq.com"
TRADEBILL_PATH = "/v3/bill/tradebill"
QUERY_PATH = "/v3/pay/transactions/out-trade-no/{order_no}"
# The ALL bill holds payments and refunds of the day (SUCCESS lacks refunds, REFUND lacks payments).
BILL_TYPE = "ALL"
# Ask for the gzip stream: bills of busy days are large. The hash covers the *decompressed* bytes.
TAR_TYPE = "GZIP"
# The only hash_type WeChat publishes for bills.
HASH_TYPE = "SHA1"
# A decompressed bill larger than this is refused rather than unpacked into memory (gzip bomb guard).
MAX_BILL_BYTES = 1 << 31
# 400 business answers of /v3/bill/tradebill (DOC FAQ): no trades that day is a normal empty bill;
# the bill is generated from 09:00 the next day, so "being created" means try again later.
NO_BILL = "NO_STATEMENT_EXIST"
BILL_NOT_READY = "STATEMENT_CREATING"
ORDER_NOT_FOUND = "ORDER_NOT_EXIST"
# WeChat signs every answer to a correctly signed request, errors included. An unsigned "no bill" or
# "order not found" could hide real payments, so these two answers are verified like a 200.
VERIFIED_BUSINESS_ERRORS = frozenset({NO_BILL, ORDER_NOT_FOUND})
# Error codes are upper-case words; anything else from the server is not repeated in a message.
_CODE = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
# trade_state → QueryResult.state (DOC 4012556352). REFUND: paid, then (partly) refunded.
TRADE_STATES = {"SUCCESS": "paid", "REFUND": "refunded", "NOTPAY": "unpaid", "USERPAYING": "unpaid",
                "ACCEPT": "unpaid", "CLOSED": "closed", "REVOKED": "closed", "PAYERROR": "unpaid"}
TRADE_STATE_NOTES = {
    "PAYERROR": "支付失败 (PAYERROR): the buyer's payment failed; the order may be paid again",
    "USERPAYING": "用户支付中 (USERPAYING): the buyer is entering a password; ask again in a minute",
    "REFUND": "转入退款 (REFUND): paid, then refunded in full or in part",
}
# JSON API amounts are integers in fen; bills are in yuan.
FEN_DIGITS = 2  # 1 yuan = 100 fen; scaleb keeps the cents: 1000 fen → Decimal("10.00")
USER_AGENT = "recon/0.1 (wechatpay-v3)"


class WechatPayFetcher:
    """Pulls a day's ALL trade bill and queries orders of one WeChat Pay merchant."""

    def __init__(self, channel: ChannelConfig, session: ChannelSession, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.channel = channel
        self.session = session
        self.clock = clock
        self.mchid = channel.api_value("mchid")
        self.serial_no = channel.api_value("serial_no")
        key_path = f"channels.{channel.id}.credentials"
        self._private_key = ws.load_private_key(channel.secret("private_key"), f"{key_path}.private_key")
        self._platform_key, cert_serial = ws.load_public_key(channel.secret("platform_public_key"),
                                                             f"{key_path}.platform_public_key")
        self.platform_serial = channel.api.get("platform_serial") or cert_serial or channel.api_value("platform_serial")
        self.api_base = (channel.api_base or DEFAULT_API_BASE).rstrip("/")
        self._secrets = [*channel.secret_values(), *session.secrets]

    # ------------------------------------------------------------------ fetch

    def fetch(self, day: date) -> list[FetchedStatement]:
        """The ALL trade bill of ``day``, hash-checked; an empty frame when WeChat has no bill for it."""
        name = f"wechatpay_{self.mchid}_{day.isoformat()}_{BILL_TYPE}.csv"
        source = f"api:{TRADEBILL_PATH}"
        query = urlencode({"bill_date": day.isoformat(), "bill_type": BILL_TYPE, "tar_type": TAR_TYPE})
        response = self._get(f"{self.api_base}{TRADEBILL_PATH}?{query}")
        if response.status_code != 200:
            code = self._error_code(response)
            if code == NO_BILL:
                empty = canonical(pl.DataFrame(schema=CANONICAL_SCHEMA))
                return [FetchedStatement(name, source, (day, day), rows=empty)]
            if code == BILL_NOT_READY:
                raise NotReady(self.channel.id, f"the {day} trade bill is still being generated ({code}); "
                                                "WeChat publishes it after 10:00 the next day")
            raise self._refused(response, code, f"trade bill of {day}")
        info = self._json(response)
        bill = self._download(info, day)
        self._check_merchant(name, bill)
        return [FetchedStatement(name, source, (day, day), raw=bill)]

    def _download(self, info: dict[str, Any], day: date) -> bytes:
        """GET download_url (signed, answer unsigned by design), gunzip, check the published SHA1."""
        hash_type, hash_value, url = info.get("hash_type"), info.get("hash_value"), info.get("download_url")
        if not isinstance(url, str) or not isinstance(hash_value, str):
            raise FetchError(self.channel.id, f"trade bill answer of {day} lacks download_url or hash_value")
        if hash_type != HASH_TYPE:
            raise FetchError(self.channel.id, f"trade bill answer of {day} uses an unknown hash_type")
        target, base = urlsplit(url), urlsplit(self.api_base)
        if (target.scheme, target.hostname, target.port) != (base.scheme, base.hostname, base.port):
            raise FetchError(self.channel.id, f"the download_url of the {day} bill points to another host than "
                                              f"{base.hostname}; it is not fetched")
        # The download carries no Wechatpay-Signature headers (DOC FAQ 4013071254): the SHA1 is the check.
        response = self._get(url, accept="*/*")
        if response.status_code != 200:
            raise self._refused(response, self._error_code(response), f"download of the {day} bill")
        bill = self._gunzip(response.content, day)
        if not hmac.compare_digest(hashlib.sha1(bill).hexdigest(), hash_value.strip().lower()):
            raise SignatureError(self.channel.id, f"the downloaded {day} bill does not match its published "
                                                  f"{HASH_TYPE}; nothing of it is used")
        return bill

    def _gunzip(self, data: bytes, day: date) -> bytes:
        try:
            unpacker = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            bill = unpacker.decompress(data, MAX_BILL_BYTES)
        except zlib.error:
            raise FetchError(self.channel.id, f"the downloaded {day} bill is not gzip data") from None
        if unpacker.unconsumed_tail:
            raise FetchError(self.channel.id, f"the {day} bill unpacks to more than {MAX_BILL_BYTES} bytes")
        if not unpacker.eof:
            raise FetchError(self.channel.id, f"the downloaded {day} bill is truncated gzip data")
        return bill

    def _check_merchant(self, name: str, bill: bytes) -> None:
        """Every row must belong to api.mchid; a bill that does not parse is left to the importer's quarantine."""
        from fetchers.wechatpay import parse  # the bill parser; imported here to keep this module light

        try:
            parsed = parse(Path(name), bill, self.channel)
        except InputError:
            return
        if parsed.rows.height and parsed.merchant_id != self.mchid:
            raise FetchError(self.channel.id, f"the bill holds rows of another 商户号 than api.mchid {self.mchid}; "
                                              "check the credentials belong to this merchant")

    # ------------------------------------------------------------------ query

    def query(self, order_no: str) -> QueryResult:
        """What WeChat says about ``order_no`` (商户订单号) now, signature verified."""
        path = QUERY_PATH.format(order_no=quote(order_no, safe=""))
        response = self._get(f"{self.api_base}{path}?{urlencode({'mchid': self.mchid})}")
        if response.status_code != 200:
            code = self._error_code(response)
            if code == ORDER_NOT_FOUND:
                return QueryResult(self.channel.id, order_no, "not_found", code)
            raise self._refused(response, code, f"query of order {order_no}")
        data = self._json(response)
        if data.get("mchid") != self.mchid:
            raise FetchError(self.channel.id, f"the answer about {order_no} is for another 商户号 than api.mchid "
                                              f"{self.mchid}")
        if data.get("out_trade_no") != order_no:
            raise FetchError(self.channel.id, f"asked about {order_no}, the answer is about another order")
        raw_state = str(data.get("trade_state") or "")
        state = TRADE_STATES.get(raw_state, "unknown")
        note = TRADE_STATE_NOTES.get(raw_state, "" if state != "unknown" else "unknown trade_state")
        amount = data.get("amount") or {}
        total = amount.get("total")
        success_time = data.get("success_time")
        try:
            paid_at = datetime.fromisoformat(success_time) if success_time else None
        except ValueError:
            raise FetchError(self.channel.id, f"success_time of {order_no} is not an RFC 3339 time") from None
        if paid_at is not None and paid_at.tzinfo is None:
            raise FetchError(self.channel.id, f"success_time of {order_no} carries no UTC offset")
        return QueryResult(
            channel=self.channel.id, order_no=order_no, state=state, raw_status=raw_state,
            amount=Decimal(total).scaleb(-FEN_DIGITS) if isinstance(total, int) else None,
            currency=amount.get("currency") or self.channel.currency,
            channel_txn_id=data.get("transaction_id") or None, paid_at=paid_at, note=note,
        )

    # ------------------------------------------------------------------ HTTP

    def _get(self, url: str, accept: str = "application/json") -> requests.Response:
        """GET ``url`` with a fresh v3 Authorization over its path and query."""
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        auth = ws.authorization(self._private_key, self.mchid, self.serial_no, "GET", path, int(self.clock()),
                                ws.new_nonce())
        headers = {"Authorization": auth, "Accept": accept, "User-Agent": USER_AGENT}
        return self.session.request("GET", url, headers=headers)

    def _json(self, response: requests.Response) -> dict[str, Any]:
        """The verified JSON object of an answer; SignatureError or FetchError otherwise."""
        if "json" not in response.headers.get("Content-Type", ""):
            raise FetchError(self.channel.id, f"answered HTTP {response.status_code} with "
                                              f"{self._safe(response.headers.get('Content-Type', 'no content type'))}"
                                              ", not JSON (a proxy's error page?)")
        ws.verify_answer(self.channel.id, response.headers, response.content, self._platform_key,
                         self.platform_serial, self.clock())
        try:
            data = json.loads(response.content)
        except ValueError:
            raise FetchError(self.channel.id, "a signed answer is not valid JSON") from None
        if not isinstance(data, dict):
            raise FetchError(self.channel.id, "a signed answer is not a JSON object")
        return data

    def _error_code(self, response: requests.Response) -> str:
        """The ``code`` of an error answer; verified first when the answer would be used as data."""
        try:
            code = json.loads(response.content).get("code")
        except (ValueError, AttributeError):
            return ""
        code = code if isinstance(code, str) and _CODE.match(code) else ""
        if code in VERIFIED_BUSINESS_ERRORS:
            self._json(response)
        return code

    def _refused(self, response: requests.Response, code: str, what: str) -> FetchError:
        """A FetchError naming status and code only: bodies may echo anything, secrets included."""
        hint = ""
        if response.status_code == 401:
            hint = " (check api.mchid, api.serial_no and credentials.private_key, and the clock)"
        shown = self._safe(code) if code else "no error code"
        return FetchError(self.channel.id, f"{what} refused: HTTP {response.status_code} {shown}{hint}")

    def _safe(self, text: str) -> str:
        return redact(text, self._secrets)[:80]
