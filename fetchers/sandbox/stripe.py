"""Stripe in the sandbox: balance transactions (paged, minor units, expandable source), charges, and
PaymentIntent search by metadata. Requests must carry ``Authorization: Bearer <secret key>``.

Each paid Payment becomes a charge and its balance transaction; each Refund a refund and a negative
balance transaction. Lists are newest first, like Stripe's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from fetchers.sandbox.server import Payment, SandboxRequest, SandboxResponse
from fetchers.stripe_api import DEFAULT_METADATA_KEY, exponent

SEARCH = re.compile(r"^metadata\['(?P<key>[^']+)'\]:'(?P<value>(?:[^'\\]|\\.)*)'$")
INTENT_STATUS = {"paid": "succeeded", "closed": "canceled"}


def minor(amount: Decimal, currency: str) -> int:
    """Major units → Stripe's integer minor units."""
    return int(amount.scaleb(exponent(currency)))


@dataclass
class StripeSandbox:
    """Serves ``payments`` under /stripe to a client holding ``secret_key``."""

    payments: list[Payment] = field(default_factory=list)
    secret_key: str = "sk_test_sandbox"
    metadata_key: str = DEFAULT_METADATA_KEY
    prefix: str = "/stripe"

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        if request.headers.get("authorization") != f"Bearer {self.secret_key}":
            given = request.headers.get("authorization", "").removeprefix("Bearer ")
            # Real Stripe masks the key it echoes; the sandbox echoes it whole to test our redaction.
            return _error(401, "invalid_request_error", f"Invalid API Key provided: {given}")
        if request.method != "GET":
            return _error(405, "invalid_request_error", "only GET is served")
        if request.path == "/v1/balance_transactions":
            return self._balance(request.query)
        if request.path == "/v1/payment_intents/search":
            return self._search(request.query)
        if request.path.startswith("/v1/charges/"):
            charge = next((c for c in self._charges() if c["id"] == request.path.rsplit("/", 1)[1]), None)
            return SandboxResponse.json(charge) if charge else _error(404, "invalid_request_error", "No such charge",
                                                                      "resource_missing")
        return _error(404, "invalid_request_error", f"Unrecognized request URL (GET: {request.path})")

    def _charges(self) -> list[dict[str, Any]]:
        return [self._charge(p) for p in self.payments if p.status == "paid"]

    def _charge(self, p: Payment) -> dict[str, Any]:
        refunded = sum((r.amount for r in p.refunds), Decimal(0))
        return {"id": p.extra.get("charge_id", "ch_" + p.txn_id.removeprefix("pi_")), "object": "charge",
                "amount": minor(p.amount, p.currency), "amount_refunded": minor(refunded, p.currency),
                "refunded": refunded >= p.amount, "currency": p.currency.lower(), "created": int(p.paid_at.timestamp()),
                "payment_intent": p.txn_id, "metadata": {self.metadata_key: p.order_no}, "status": "succeeded"}

    def _transactions(self) -> list[dict[str, Any]]:
        out = []
        for p in self.payments:
            if p.status != "paid":
                continue
            charge = self._charge(p)
            fee = minor(p.fee or Decimal(0), p.currency)
            out.append(_txn("txn_" + charge["id"], charge["amount"], fee, "charge", charge, charge["created"], p))
            for r in p.refunds:
                refund = {"id": r.refund_id, "object": "refund", "amount": minor(r.amount, p.currency),
                          "charge": charge["id"], "payment_intent": p.txn_id, "metadata": {}, "status": "succeeded"}
                out.append(_txn("txn_" + r.refund_id, -refund["amount"], 0, "refund", refund, int(r.at.timestamp()), p))
        return sorted(out, key=lambda t: (t["created"], t["id"]), reverse=True)

    def _balance(self, query: dict[str, str]) -> SandboxResponse:
        try:
            gte, lt = int(query["created[gte]"]), int(query["created[lt]"])
            limit = int(query.get("limit", "10"))
        except (KeyError, ValueError):
            return _error(400, "invalid_request_error", "created[gte], created[lt] and limit must be integers")
        rows = [t for t in self._transactions() if gte <= t["created"] < lt]
        if query.get("starting_after"):
            ids = [t["id"] for t in rows]
            if query["starting_after"] not in ids:
                return _error(400, "invalid_request_error", "starting_after: no such object")
            rows = rows[ids.index(query["starting_after"]) + 1:]
        expand = query.get("expand[]") == "data.source"
        page = [t if expand else {**t, "source": t["source"]["id"]} for t in rows[:limit]]
        return SandboxResponse.json({"object": "list", "url": "/v1/balance_transactions", "data": page,
                                     "has_more": len(rows) > limit})

    def _search(self, query: dict[str, str]) -> SandboxResponse:
        found = SEARCH.match(query.get("query", ""))
        if not found:
            return _error(400, "invalid_request_error", "unsupported search query", "parameter_invalid_string")
        value = re.sub(r"\\(.)", r"\1", found["value"])
        intents = []
        for p in self.payments:
            if found["key"] != self.metadata_key or p.order_no != value:
                continue
            status = INTENT_STATUS.get(p.status, p.extra.get("intent_status", "requires_payment_method"))
            charge: dict[str, Any] | str | None = self._charge(p) if p.status == "paid" else None
            if charge is not None and query.get("expand[]") != "data.latest_charge":
                charge = charge["id"]
            intents.append({"id": p.txn_id, "object": "payment_intent", "amount": minor(p.amount, p.currency),
                            "amount_received": minor(p.amount, p.currency) if p.status == "paid" else 0,
                            "currency": p.currency.lower(), "status": status, "created": int(p.paid_at.timestamp()),
                            "metadata": {self.metadata_key: p.order_no}, "latest_charge": charge})
        return SandboxResponse.json({"object": "search_result", "data": intents, "has_more": False,
                                     "next_page": None, "url": "/v1/payment_intents/search"})


def _txn(txn_id: str, amount: int, fee: int, category: str, source: dict[str, Any], created: int,
         p: Payment) -> dict[str, Any]:
    return {"id": txn_id, "object": "balance_transaction", "amount": amount, "fee": fee, "net": amount - fee,
            "currency": p.currency.lower(), "created": created, "available_on": created + 2 * 86400,
            "type": category, "reporting_category": category, "status": "available", "source": source,
            "fee_details": [{"amount": fee, "currency": p.currency.lower(), "type": "stripe_fee"}] if fee else []}


def _error(status: int, kind: str, message: str, code: str | None = None) -> SandboxResponse:
    error = {"type": kind, "message": message, **({"code": code} if code else {})}
    return SandboxResponse.json({"error": error}, status)
