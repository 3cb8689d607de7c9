"""Sandbox Epay panel: ``/epay/api.php?act=orders|order`` as 彩虹易支付 answers them (channel-formats.md §3.1).

A Payment maps to an order record: ``txn_id`` → trade_no, ``order_no`` → out_trade_no, ``amount`` →
money, ``paid_at`` → endtime (wall clock in ``zone``); status paid → "1", unpaid → "0", a refunded
payment → "2". ``extra`` may set api_trade_no, type, name, buyer, addtime ("Y-m-d H:i:s") and status.
Values are JSON strings like the PDO-backed original; ``numbers=True`` sends pid, status and money as
JSON numbers, as some builds do. ``arrive_after`` / ``vanish_after`` change the list between two page
requests, to prove that paging neither duplicates nor loses an order.

V2 (彩虹易支付V2, channel-formats.md §3.3): ``POST /epay/api/pay/orders`` and ``/epay/api/pay/query`` take
form posts signed with the merchant private key (verified here with ``merchant_public_key``; a wrong
signature is an HTTP 401) and answer with ``code`` 0, ``timestamp`` and an RSA signature made with a
platform key generated at construction (``platform_public_pem`` for the client). V2 records add
``clientip`` and ``refundmoney``; money goes out as a PHP float (JSON ``10.0``, signed as ``10``); a
partially refunded order stays status "1" with refundmoney, a fully refunded one is "2"; the query
answer drops empty fields like PHP ``array_filter`` (so an unpaid order has no ``status``). Faults:
bad_signature, no_signature, stale_timestamp, wrong_merchant. The sign content is written out here
again, independently of the client's, so that the two check each other.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from fetchers.sandbox.server import Payment, SandboxRequest, SandboxResponse

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_LIMIT = 50
NUMBER_FIELDS = re.compile(rb'"(pid|status|money)":"(-?[0-9.]+)"')
V2_FLOATS = re.compile(rb'"(money|refundmoney)":"(-?[0-9.]+)"')
V2_PATHS = ("/api/pay/orders", "/api/pay/query")
MAX_SKEW = 300
STALE_BY = 3600


class EpaySandbox:
    prefix = "/epay"

    def __init__(self, pid: str, key: str, payments: list[Payment] | None = None, zone: str = "Asia/Shanghai",
                 numbers: bool = False, merchant_public_key: str | None = None) -> None:
        self.pid = pid
        self.key = key
        self.merchant_public_key = merchant_public_key  # PEM; V2 requests are refused without it
        self._platform_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.platform_public_pem = self._platform_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")
        self.zone = ZoneInfo(zone)
        self._lock = threading.Lock()
        self.reset(payments or [], numbers)

    def reset(self, payments: list[Payment], numbers: bool = False) -> None:
        """Start over with ``payments`` (lets one running server serve many tests)."""
        with self._lock:
            self.numbers = numbers
            self.payments: list[Payment] = list(payments)
            self.page_requests = 0
            self._changes: list[tuple[int, Payment | str]] = []

    def arrive_after(self, pages: int, payment: Payment) -> None:
        """Add ``payment`` once ``pages`` act=orders requests have been answered."""
        self._changes.append((pages, payment))

    def vanish_after(self, pages: int, trade_no: str) -> None:
        """Delete the order ``trade_no`` once ``pages`` act=orders requests have been answered."""
        self._changes.append((pages, trade_no))

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        if request.path in V2_PATHS:
            return self._v2(request)
        if request.path != "/api.php":
            return SandboxResponse(404, b"not found")
        q = request.query
        act = q.get("act", "")
        if act not in ("orders", "order"):
            return SandboxResponse.json({"code": -5, "msg": "No Act!"})
        if request.fault == "wrong_merchant" or q.get("pid") != self.pid:
            return SandboxResponse.json({"code": -3, "msg": "商户ID不存在"})
        if q.get("key") != self.key:
            # Echoes what it was sent, as careless clones do: the client must not repeat it.
            return SandboxResponse.json({"code": -3, "msg": f"商户密钥错误 ({q.get('key')})"})
        with self._lock:
            if act == "order":
                return self._order(q)
            return self._orders(q)

    def _orders(self, q: dict[str, str]) -> SandboxResponse:
        limit = min(int(q.get("limit") or 10), MAX_LIMIT)
        offset = int(q.get("offset") or 0)
        records = sorted((self._record(p) for p in self.payments), key=lambda r: str(r["trade_no"]), reverse=True)
        page = records[offset:offset + limit]
        self.page_requests += 1
        for change in [c for c in self._changes if c[0] == self.page_requests]:
            self._changes.remove(change)
            if isinstance(change[1], Payment):
                self.payments.append(change[1])
            else:
                self.payments = [p for p in self.payments if p.txn_id != change[1]]
        return self._json({"code": 1, "msg": "查询订单记录成功！", "count": len(page), "data": page})

    def _order(self, q: dict[str, str]) -> SandboxResponse:
        wanted = q.get("trade_no") or q.get("out_trade_no")
        if not wanted:
            return SandboxResponse.json({"code": -4, "msg": "订单号不能为空"})
        key = "trade_no" if q.get("trade_no") else "out_trade_no"
        for payment in self.payments:
            record = self._record(payment)
            if record[key] == wanted:
                return self._json({"code": 1, "msg": "succ", **record, "payurl": ""})
        return SandboxResponse.json({"code": -1, "msg": "订单号不存在"})

    def _record(self, p: Payment) -> dict[str, Any]:
        paid_local = p.paid_at.astimezone(self.zone)
        status = p.extra.get("status") or ("2" if p.refunds else {"paid": "1"}.get(p.status, "0"))
        addtime = p.extra.get("addtime") or (paid_local - timedelta(minutes=1)).strftime(TIME_FORMAT)
        record: dict[str, Any] = {
            "trade_no": p.txn_id, "out_trade_no": p.order_no, "api_trade_no": p.extra.get("api_trade_no", ""),
            "type": p.extra.get("type", "alipay"), "pid": self.pid, "addtime": addtime,
            "endtime": paid_local.strftime(TIME_FORMAT) if status != "0" else None,
            "name": p.extra.get("name", "VIP会员"), "money": f"{p.amount:.2f}", "param": "",
            "buyer": p.extra.get("buyer", ""), "status": status,
        }
        return record

    def _json(self, value: dict[str, Any]) -> SandboxResponse:
        response = SandboxResponse.json(value)
        if self.numbers:  # rewrite the strings as JSON number literals, digits kept as written
            response.body = NUMBER_FIELDS.sub(rb'"\1":\2', response.body)
        return response

    # ------------------------------------------------------------------------------------------- V2

    def _v2(self, request: SandboxRequest) -> SandboxResponse:
        if request.method != "POST":
            return SandboxResponse(405, b"method not allowed")
        form = request.form()
        if request.fault == "wrong_merchant" or form.get("pid") != self.pid:
            return SandboxResponse.json({"code": -1, "msg": "商户不存在"})  # unsigned, as the platform's errors
        if form.get("sign_type") != "RSA" or not self._request_signed(form):
            return SandboxResponse.json({"code": -1, "msg": "签名校验失败"}, status=401)
        if abs(time.time() - int(form.get("timestamp") or 0)) > MAX_SKEW:
            return SandboxResponse.json({"code": -1, "msg": "时间戳已过期"}, status=401)
        with self._lock:
            if request.path == "/api/pay/query":
                return self._v2_query(form, request.fault)
            limit = min(int(form.get("limit") or 10), MAX_LIMIT)
            orders = self._orders({"limit": str(limit), "offset": form.get("offset") or "0"})
        page = json.loads(orders.body, parse_float=Decimal)["data"]
        by_trade_no = {p.txn_id: p for p in self.payments}
        data = [self._v2_record(by_trade_no[r["trade_no"]]) if r["trade_no"] in by_trade_no else r for r in page]
        return self._signed({"code": 0, "msg": "查询订单记录成功！", "count": len(data), "data": data}, request.fault)

    def _v2_query(self, form: dict[str, str], fault: str | None) -> SandboxResponse:
        wanted = form.get("trade_no") or form.get("out_trade_no")
        key = "trade_no" if form.get("trade_no") else "out_trade_no"
        for payment in self.payments:
            record = self._v2_record(payment)
            if record[key] == wanted:
                # Pay.php: array_filter drops every PHP-falsy value: "", null, "0" and 0.
                kept = {k: v for k, v in record.items() if v not in (None, "", "0") and v != 0}
                return self._signed({"code": 0, **kept}, fault)
        return self._signed({"code": -1, "msg": "订单号不存在"}, fault)

    def _v2_record(self, p: Payment) -> dict[str, Any]:
        record = self._record(p)
        refunded = sum((r.amount for r in p.refunds), Decimal(0))
        if "status" not in p.extra and p.refunds:
            record["status"] = "2" if refunded >= p.amount else "1"
        record.update(money=p.amount, refundmoney=refunded, clientip=p.extra.get("clientip", "127.0.0.1"))
        return record

    def _request_signed(self, form: dict[str, str]) -> bool:
        if not self.merchant_public_key:
            return False
        key = serialization.load_pem_public_key(self.merchant_public_key.encode("ascii"))
        assert isinstance(key, rsa.RSAPublicKey)
        try:
            key.verify(base64.b64decode(form.get("sign") or ""), _content(form).encode("utf-8"),
                       padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            return False
        return True

    def _signed(self, answer: dict[str, Any], fault: str | None) -> SandboxResponse:
        stamp = int(time.time()) - (STALE_BY if fault == "stale_timestamp" else 0)
        answer = {**answer, "timestamp": str(stamp)}
        if fault != "no_signature":
            content = _content(answer) + ("&tampered=1" if fault == "bad_signature" else "")
            signature = self._platform_key.sign(content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
            answer.update(sign_type="RSA", sign=base64.b64encode(signature).decode("ascii"))
        text = json.dumps(answer, ensure_ascii=False, separators=(",", ":"), default=_php_float_json)
        body = V2_FLOATS.sub(rb'"\1":\2', text.encode("utf-8"))
        return SandboxResponse(200, body, {"Content-Type": "application/json; charset=utf-8"})


def _php_string(value: Any) -> str | None:
    """A PHP value as ``"$v"`` renders it; None for what paraFilter drops (null, "", arrays)."""
    if value is None or value == "" or isinstance(value, (list, dict)):
        return None
    if isinstance(value, Decimal):  # a PHP float: 10.0 → "10", 1.50 → "1.5"
        text = format(value.normalize(), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    return str(value)


def _content(params: dict[str, Any]) -> str:
    """paraFilter + argSort + createLinkstring of lib/api/Pay.php (PHP 8: only "" and null are empty)."""
    kept = {k: _php_string(v) for k, v in params.items() if k not in ("sign", "sign_type")}
    return "&".join(f"{k}={v}" for k, v in sorted(kept.items()) if v is not None)


def _php_float_json(value: Any) -> str:
    """json_encode of a PHP float (serialize_precision -1): 10.0 stays "10.0", 1.50 is "1.5"."""
    if not isinstance(value, Decimal):
        raise TypeError(f"not JSON: {type(value).__name__}")
    text = _php_string(value) or "0"
    return text if "." in text else text + ".0"
