"""USDT-TRC20 received on our wallet, read from TronGrid (channel-formats.md §4.1).

A day's records are the confirmed USDT transfers *to* ``api.wallet`` whose block time falls in the
day (channel zone). On-chain transfers carry no order number: ``order_no`` is NULL and the shop order
is found later by (wallet, exact amount, time window) — see ``query``.

Paging follows ``meta.fingerprint`` on our own base URL with the first request's filters unchanged;
``meta.links.next`` is never followed, as it may name any host.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeGuard
from zoneinfo import ZoneInfo

import polars as pl
import requests

from fetchers.base import FetchedStatement, QueryResult
from fetchers.http import ChannelSession
from fetchers.tabular import canonical
from recon.config import ChannelConfig
from recon.errors import FetchError, NotReady
from recon.secrets import redact

DEFAULT_API_BASE = "https://api.trongrid.io"
# Tether USD on TRON mainnet (developers.tron.network; TokenPay and epusdt poll the same contract).
USDT_MAINNET_CONTRACT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
CURRENCY = "USDT"  # the token is not an ISO currency, so the channel's ``currency`` setting is not used
API_KEY_HEADER = "TRON-PRO-API-KEY"
PAGE_LIMIT = 200  # TronGrid's maximum page size
MAX_PAGES = 1000
# A block is irreversible ("solidified") about 19 blocks × 3 s after it is produced; only_confirmed=true
# lists only those, so a day is fetched once its last minute has had time to solidify.
CONFIRMATION_DELAY = timedelta(minutes=2)
# Executed token movements; "Approval" events may appear in some indexes and move no money.
TRANSFER_TYPES = ("Transfer", "TransferFrom")
SNIPPET = 120


class TronFetcher:
    """Reads the USDT-TRC20 transfers received by one wallet."""

    def __init__(self, channel: ChannelConfig, session: ChannelSession,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.channel = channel
        self.session = session
        self.wallet = channel.api_value("wallet")
        self.contract = channel.api.get("contract") or USDT_MAINNET_CONTRACT
        self.api_key = channel.secret("api_key") if "api_key" in channel.credentials else None
        self.base = (channel.api_base or DEFAULT_API_BASE).rstrip("/")
        self.zone = ZoneInfo(channel.zone)
        self._now = now

    def fetch(self, day: date) -> list[FetchedStatement]:
        """Confirmed USDT transfers to the wallet with a block time on ``day``; NotReady until it solidified.

        Args:
            day: the business date, in the channel's zone.
        Returns:
            one statement with canonical rows (possibly none; the day is still covered).
        """
        start = datetime.combine(day, time(), self.zone)
        end = start + timedelta(days=1)
        if self._now() < end + CONFIRMATION_DELAY:
            raise NotReady(self.channel.id, f"{day} is not over (and confirmed) yet in {self.channel.zone}")
        transfers = self._transfers(_ms(start), _ms(end) - 1)
        return [FetchedStatement(name=f"trc20_{self.wallet}_{day.isoformat()}.json",
                                 source="api:v1/accounts/{address}/transactions/trc20",
                                 period=(day, day), rows=self._frame(transfers, day))]

    def query(self, order_no: str) -> QueryResult:
        """Always "unknown": a transfer names no order; USDT orders are matched by wallet, amount and time."""
        return QueryResult(
            self.channel.id, order_no, "unknown", "",
            note=("on-chain transfers carry no order number; a USDT order is matched to a transfer to the same "
                  "wallet of exactly the order's USDT amount, made after the order was created and before it "
                  "expired (plus grace)"),
        )

    # ------------------------------------------------------------------------------------ internals

    def _transfers(self, min_ms: int, max_ms: int) -> list[dict[str, Any]]:
        """Every record of every page, in answer order; pages chained by fingerprint on our own host."""
        url = f"{self.base}/v1/accounts/{self.wallet}/transactions/trc20"
        params = {"only_confirmed": "true", "only_to": "true", "limit": str(PAGE_LIMIT),
                  "contract_address": self.contract, "min_timestamp": str(min_ms), "max_timestamp": str(max_ms),
                  "order_by": "block_timestamp,asc"}
        records: list[dict[str, Any]] = []
        fingerprints: set[str] = set()
        for _ in range(MAX_PAGES):
            answer = self._get(url, params)
            data = answer.get("data") or []
            if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                raise FetchError(self.channel.id, "trc20: 'data' is not a list of transfers")
            records.extend(data)
            meta = answer.get("meta") if isinstance(answer.get("meta"), dict) else {}
            fingerprint = meta.get("fingerprint") if isinstance(meta, dict) else None
            if not fingerprint or not data:
                return records
            if fingerprint in fingerprints:
                raise FetchError(self.channel.id, "trc20: the same page cursor came back twice; stopped")
            fingerprints.add(str(fingerprint))
            params = {**params, "fingerprint": str(fingerprint)}
        raise FetchError(self.channel.id, f"trc20: more than {MAX_PAGES} pages; stopped")

    def _frame(self, records: list[dict[str, Any]], day: date) -> pl.DataFrame:
        """Canonical payment rows of the transfers to our wallet on ``day``."""
        rows = []
        for line_no, record in enumerate(records, start=1):
            row = self._row(record, line_no)
            if row is not None:
                rows.append(row)
        schema = {"channel_txn_id": pl.String, "counterparty": pl.String, "amount_text": pl.String,
                  "block_ms": pl.Int64, "to": pl.String, "line_no": pl.Int64}
        frame = pl.DataFrame(rows, schema=schema, orient="row")
        # The same transfer listed twice (a page boundary moved) is one transfer.
        frame = frame.unique(subset=["channel_txn_id", "counterparty", "to", "amount_text"], keep="first",
                             maintain_order=True)
        occurred = pl.from_epoch(pl.col("block_ms"), time_unit="ms").dt.replace_time_zone("UTC")
        frame = frame.with_columns(occurred_at=occurred,
                                   business_date=occurred.dt.convert_time_zone(self.channel.zone).dt.date())
        frame = frame.filter(pl.col("business_date") == day)
        # Batch contracts may pay us twice in one transaction: the hash alone then names two records.
        shared = pl.len().over("channel_txn_id") > 1
        key = pl.when(shared).then(pl.concat_str(["channel_txn_id", "counterparty", "amount_text"], separator="|"))
        return canonical(frame.with_columns(
            kind=pl.lit("payment"), amount=pl.col("amount_text"), currency=pl.lit(CURRENCY),
            status=pl.lit("success"), natural_key=key.otherwise(pl.col("channel_txn_id")),
        ))

    def _row(self, record: dict[str, Any], line_no: int) -> tuple[str, str, str, int, str, int] | None:
        """(tx hash, from, amount, block ms, to, line) of a USDT transfer to our wallet, or None for others."""
        token = record.get("token_info")
        if not isinstance(token, dict):
            token = {}
        to, sender = _text(record.get("to")), _text(record.get("from"))
        if to != self.wallet or sender == self.wallet:  # outgoing, or between our own addresses
            return None
        if _text(record.get("type")) not in TRANSFER_TYPES:
            return None
        if token.get("address") not in (None, self.contract):  # another token despite contract_address
            return None
        tx = _text(record.get("transaction_id"))
        if not tx:
            raise FetchError(self.channel.id, f"trc20: transfer #{line_no} has no transaction_id")
        return tx, sender or "", self._amount(record, token, tx), self._block_ms(record, tx), to, line_no

    def _amount(self, record: dict[str, Any], token: dict[str, Any], tx: str) -> str:
        """``value`` (base units) ÷ 10^decimals as an exact decimal string."""
        value, decimals = _text(record.get("value")), _text(token.get("decimals", 6))
        if not _digits(value, 40) or not _digits(decimals, 2):
            raise FetchError(self.channel.id, f"trc20: transfer {tx}: value {str(value)[:40]!r} / decimals "
                                              f"{str(decimals)[:40]!r} is not a base-unit amount")
        amount = Decimal(value).scaleb(-int(decimals))
        try:
            exact = amount.quantize(Decimal("0.000001"))
        except InvalidOperation:
            exact = None
        if exact is None or exact != amount or len(exact.as_tuple().digits) > 20:
            raise FetchError(self.channel.id, f"trc20: transfer {tx}: {amount} does not fit 6 decimal places")
        return format(exact, "f")

    def _block_ms(self, record: dict[str, Any], tx: str) -> int:
        text = _text(record.get("block_timestamp"))
        if not _digits(text, 13):  # milliseconds up to the year 2286
            raise FetchError(self.channel.id, f"trc20: transfer {tx}: block_timestamp {str(text)[:40]!r} is not "
                                              "milliseconds")
        return int(text)

    def _get(self, url: str, params: dict[str, str]) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers[API_KEY_HEADER] = self.api_key
        try:
            response = self.session.request("GET", url, params=params, headers=headers)
        except requests.RequestException as exc:  # not retried by the session (e.g. a broken body)
            raise FetchError(self.channel.id, f"trc20: {type(exc).__name__} while reading the answer") from None
        if response.status_code in (401, 403):
            raise FetchError(self.channel.id, f"trc20: HTTP {response.status_code}: the API key was refused "
                                              f"(channels.{self.channel.id}.credentials.api_key)")
        try:
            answer = json.loads(response.content.decode("utf-8-sig"), parse_float=Decimal)
        except (ValueError, UnicodeDecodeError):
            raise FetchError(self.channel.id, f"trc20: HTTP {response.status_code}, the answer is not JSON: "
                                              f"{self._snippet(response.text)}") from None
        if not isinstance(answer, dict):
            raise FetchError(self.channel.id, "trc20: the answer is not a JSON object")
        if response.status_code != 200 or answer.get("success") is False:
            problem = answer.get("error") or answer.get("Error") or answer.get("message") or ""
            raise FetchError(self.channel.id, f"trc20: HTTP {response.status_code}: {self._snippet(str(problem))}")
        return answer

    def _snippet(self, text: str) -> str:
        return redact(text, [self.api_key] if self.api_key else [])[:SNIPPET]


def _ms(at: datetime) -> int:
    return int(at.timestamp()) * 1000


def _digits(text: str | None, most: int) -> TypeGuard[str]:
    """Between 1 and ``most`` ASCII digits (str.isdigit also takes '²' and other scripts' digits)."""
    return text is not None and 0 < len(text) <= most and text.isascii() and text.isdigit()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value).strip()
