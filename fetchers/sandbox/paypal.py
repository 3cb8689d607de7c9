"""PayPal in the sandbox: the OAuth2 client-credentials token and Transaction Search (paged, ≤ 31 days).

The token endpoint checks HTTP Basic ``client_id:client_secret``; the search checks the Bearer token it
issued. Each Payment becomes a T0006 transaction (status S when paid, P when unpaid, D when closed) with
``invoice_id`` = order number and ``custom_field`` = ``extra["custom"]``; each Refund a T1107 referring
to it. ``refreshed_at`` (default: now) is what ``last_refreshed_datetime`` reports.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from fetchers.paypal_api import MAX_WINDOW, NO_DECIMALS, TIME_FORMAT
from fetchers.sandbox.server import Payment, SandboxRequest, SandboxResponse

STATUS = {"paid": "S", "unpaid": "P", "closed": "D"}


def money(amount: Decimal, currency: str) -> dict[str, str]:
    places = Decimal(1) if currency.upper() in NO_DECIMALS else Decimal("0.01")
    return {"currency_code": currency.upper(), "value": str(amount.quantize(places))}


@dataclass
class PaypalSandbox:
    """Serves ``payments`` under /paypal to the REST app ``client_id``/``client_secret``."""

    payments: list[Payment] = field(default_factory=list)
    client_id: str = "sandbox-client"
    client_secret: str = "sandbox-secret"
    account: str = "SANDBOXMERCHANT1"
    refreshed_at: datetime | None = None
    prefix: str = "/paypal"
    tokens: set[str] = field(default_factory=set)

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        if request.path == "/v1/oauth2/token" and request.method == "POST":
            return self._token(request)
        if request.path == "/v1/reporting/transactions" and request.method == "GET":
            given = request.headers.get("authorization", "").removeprefix("Bearer ")
            if given not in self.tokens:
                # PayPal does not echo tokens; the sandbox does, to test our redaction.
                return SandboxResponse.json({"name": "AUTHENTICATION_FAILURE", "message": f"Token {given} is invalid",
                                             "debug_id": "sandbox"}, 401)
            return self._search(request.query)
        return SandboxResponse.json({"name": "RESOURCE_NOT_FOUND", "message": request.path}, 404)

    def _token(self, request: SandboxRequest) -> SandboxResponse:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        given = request.headers.get("authorization", "")
        if given != f"Basic {expected}" or request.form().get("grant_type") != "client_credentials":
            shown = base64.b64decode(given.removeprefix("Basic ") + "==").decode("utf-8", "replace")
            return SandboxResponse.json({"error": "invalid_client",
                                         "error_description": f"Client Authentication failed for {shown}"}, 401)
        token = "A21AA" + secrets.token_urlsafe(24)
        self.tokens.add(token)
        return SandboxResponse.json({"scope": "https://uri.paypal.com/services/reporting/search/read",
                                     "access_token": token, "token_type": "Bearer", "app_id": "APP-SANDBOX",
                                     "expires_in": 32400, "nonce": secrets.token_hex(8)})

    def _transactions(self) -> list[dict[str, Any]]:
        out = []
        for p in self.payments:
            info = {"transaction_id": p.txn_id, "transaction_event_code": "T0006",
                    "transaction_initiation_date": p.paid_at.strftime(TIME_FORMAT),
                    "transaction_updated_date": p.paid_at.strftime(TIME_FORMAT),
                    "transaction_amount": money(p.amount, p.currency),
                    "fee_amount": money(-(p.fee or Decimal(0)), p.currency),
                    "transaction_status": STATUS[p.status], "invoice_id": p.order_no,
                    "custom_field": p.extra.get("custom", ""), "protection_eligibility": "01"}
            out.append({"transaction_info": info, "payer_info": {"account_id": "PAYER" + p.txn_id[-6:],
                                                                 "email_address": p.extra.get("payer", "")}})
            for r in p.refunds:
                out.append({"transaction_info": {
                    "transaction_id": r.refund_id, "paypal_reference_id": p.txn_id, "paypal_reference_id_type": "TXN",
                    "transaction_event_code": "T1107", "transaction_initiation_date": r.at.strftime(TIME_FORMAT),
                    "transaction_updated_date": r.at.strftime(TIME_FORMAT),
                    "transaction_amount": money(-r.amount, p.currency), "fee_amount": money(Decimal(0), p.currency),
                    "transaction_status": "S", "invoice_id": p.order_no, "custom_field": p.extra.get("custom", "")},
                    "payer_info": {}})
        return out

    def _search(self, query: dict[str, str]) -> SandboxResponse:
        try:
            start = datetime.strptime(query["start_date"], TIME_FORMAT)
            end = datetime.strptime(query["end_date"], TIME_FORMAT)
            size, page = int(query.get("page_size", "100")), int(query.get("page", "1"))
        except (KeyError, ValueError):
            return _invalid("start_date and end_date are required, like 2019-06-01T00:00:00-0700")
        if end - start > MAX_WINDOW or end < start or not 1 <= size <= 500 or page < 1:
            return _invalid("the date range is longer than 31 days, or page/page_size is out of range")
        rows = [t for t in self._transactions()
                if start <= datetime.strptime(t["transaction_info"]["transaction_initiation_date"], TIME_FORMAT) <= end]
        pages = max(1, -(-len(rows) // size))
        refreshed = self.refreshed_at or datetime.now(UTC)
        return SandboxResponse.json({
            "transaction_details": rows[(page - 1) * size: page * size], "account_number": self.account,
            "start_date": query["start_date"], "end_date": query["end_date"],
            "last_refreshed_datetime": refreshed.strftime(TIME_FORMAT), "page": page,
            "total_items": len(rows), "total_pages": pages, "links": []})


def _invalid(message: str) -> SandboxResponse:
    return SandboxResponse.json({"name": "INVALID_REQUEST", "message": message, "debug_id": "sandbox"}, 400)
