"""Sandbox TronGrid: ``/trongrid/v1/accounts/{address}/transactions/trc20`` (channel-formats.md §4.1).

A Payment maps to one USDT transfer: ``txn_id`` → transaction_id, ``amount`` (USDT) → value in base
units, ``paid_at`` → block_timestamp. ``extra``: ``from`` (default a customer address), ``to`` (default
the sandbox wallet), ``confirmed`` ("false" → listed only without only_confirmed), ``contract``,
``type`` (default Transfer). Filters only_confirmed, only_to, only_from, contract_address,
min/max_timestamp, limit (max 200), order_by and fingerprint paging are honoured. The fault
"foreign_host" puts a ``meta.links.next`` on ``foreign_base`` (the fingerprint stays valid).
A configured ``api_key`` is required in TRON-PRO-API-KEY; a wrong one is echoed in the 401 answer.
"""

from __future__ import annotations

import base64
import re
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from fetchers.sandbox.server import Payment, SandboxRequest, SandboxResponse

USDT = {"symbol": "USDT", "address": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", "decimals": 6, "name": "Tether USD"}
CUSTOMER = "TNtbiqvanUnm4YHK9SYzRGR8ktiHRduDbM"
MAX_LIMIT = 200
PATH = re.compile(r"^/v1/accounts/(?P<address>T[1-9A-HJ-NP-Za-km-z]{33})/transactions/trc20$")


class TronGridSandbox:
    prefix = "/trongrid"

    def __init__(self, wallet: str, payments: list[Payment] | None = None, api_key: str | None = None,
                 foreign_base: str = "https://trongrid.example.invalid") -> None:
        self.wallet = wallet
        self.payments = list(payments or [])
        self.api_key = api_key
        self.foreign_base = foreign_base

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        match = PATH.match(request.path)
        if match is None:
            return SandboxResponse.json({"success": False, "error": "not found", "statusCode": 404}, status=404)
        if self.api_key is not None and request.headers.get("tron-pro-api-key") != self.api_key:
            given = request.headers.get("tron-pro-api-key", "")
            return SandboxResponse.json({"success": False, "error": f"ApiKey '{given}' is invalid",
                                         "statusCode": 401}, status=401)
        q = request.query
        address = match["address"]
        transfers = [t for t in (self._transfer(p) for p in self.payments) if self._wanted(t, q, address)]
        transfers.sort(key=lambda t: (t["block_timestamp"], t["transaction_id"]),
                       reverse=q.get("order_by", "block_timestamp,desc").endswith("desc"))
        limit = min(int(q.get("limit") or 20), MAX_LIMIT)
        start = int(base64.urlsafe_b64decode(q["fingerprint"]).decode()) if q.get("fingerprint") else 0
        page = transfers[start:start + limit]
        meta: dict[str, Any] = {"at": 1_700_000_000_000, "page_size": len(page)}
        if start + limit < len(transfers):
            fingerprint = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
            base = self.foreign_base if request.fault == "foreign_host" else "https://api.trongrid.io"
            meta["fingerprint"] = fingerprint
            meta["links"] = {"next": f"{base}/v1/accounts/{address}/transactions/trc20?"
                                     + urlencode({**q, "fingerprint": fingerprint})}
        return SandboxResponse.json({"data": page, "success": True, "meta": meta})

    def _transfer(self, p: Payment) -> dict[str, Any]:
        contract = p.extra.get("contract", USDT["address"])
        base_units = (p.amount * Decimal(10) ** 6).to_integral_exact()
        return {
            "transaction_id": p.txn_id,
            "token_info": {**USDT, "address": contract},
            "block_timestamp": int(p.paid_at.timestamp()) * 1000 + p.paid_at.microsecond // 1000,
            "from": p.extra.get("from", CUSTOMER),
            "to": p.extra.get("to", self.wallet),
            "type": p.extra.get("type", "Transfer"),
            "value": str(base_units),
            "_confirmed": p.extra.get("confirmed", "true") == "true",
        }

    @staticmethod
    def _wanted(t: dict[str, Any], q: dict[str, str], address: str) -> bool:
        if address not in (t["from"], t["to"]):
            return False
        if q.get("only_confirmed") == "true" and not t.pop("_confirmed"):
            return False
        t.pop("_confirmed", None)
        if q.get("only_to") == "true" and t["to"] != address:
            return False
        if q.get("only_from") == "true" and t["from"] != address:
            return False
        if q.get("contract_address") and t["token_info"]["address"] != q["contract_address"]:
            return False
        at = t["block_timestamp"]
        return int(q.get("min_timestamp") or 0) <= at <= int(q.get("max_timestamp") or 2**62)
