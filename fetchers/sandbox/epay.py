"""Sandbox Epay panel: ``/epay/api.php?act=orders|order`` as 彩虹易支付 answers them (channel-formats.md §3.1).

A Payment maps to an order record: ``txn_id`` → trade_no, ``order_no`` → out_trade_no, ``amount`` →
money, ``paid_at`` → endtime (wall clock in ``zone``); status paid → "1", unpaid → "0", a refunded
payment → "2". ``extra`` may set api_trade_no, type, name, buyer, addtime ("Y-m-d H:i:s") and status.
Values are JSON strings like the PDO-backed original; ``numbers=True`` sends pid, status and money as
JSON numbers, as some builds do. ``arrive_after`` / ``vanish_after`` change the list between two page
requests, to prove that paging neither duplicates nor loses an order.
"""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fetchers.sandbox.server import Payment, SandboxRequest, SandboxResponse

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_LIMIT = 50
NUMBER_FIELDS = re.compile(rb'"(pid|status|money)":"(-?[0-9.]+)"')


class EpaySandbox:
    prefix = "/epay"

    def __init__(self, pid: str, key: str, payments: list[Payment] | None = None, zone: str = "Asia/Shanghai",
                 numbers: bool = False) -> None:
        self.pid = pid
        self.key = key
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
