"""A shop read through its admin API (the ``http`` kind).

JSON records are renamed by ``shop.columns`` (canonical → JSON field) and normalised exactly like a SQL
row (``SqlShop._normalise``): unmapped statuses are errors, amounts become exact Decimals (JSON numbers
are parsed with ``parse_float=Decimal``, never float), naive times are the shop's wall clock and times
with an offset are instants. The token goes only into the ``Authorization`` header and is redacted from
every error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urljoin, urlsplit
from zoneinfo import ZoneInfo

import polars as pl
import requests

from fetchers.http import ChannelSession
from recon.config import Config
from recon.errors import ReconError, ShopError
from recon.secrets import redact
from recon.shops.base import SHOP_SCHEMA, Window
from recon.shops.sql import TIME_COLUMNS, SqlShop

# Normalised statuses from which a missing callback may be completed through the API.
REPAIRABLE_FROM = ("pending", "expired")
# A window's listing never follows more pages than this (a cursor that never ends is a shop bug).
MAX_PAGES = 10_000
# Orders asked for by number at once. Each night's run asks for every open exception's order that its window
# did not hold, one GET each: a backlog of two thousand at 100 ms a request was over three minutes in a row.
# A few in flight keep a small shop's admin API (PHP workers behind one host) from being flooded; a 429 is
# retried after its Retry-After like any channel's.
ORDERS_IN_FLIGHT = 4


def _no_connection() -> Any:
    raise ShopError("the http shop has no database connection")


class HttpShop:
    """Orders from ``GET orders_path`` (a window, paged by an optional ``next`` cursor) and ``GET order_path``."""

    def __init__(self, base_url: str, token: str | None, orders_path: str, order_path: str,
                 columns: Mapping[str, str], status_map: Mapping[str, str], zone: str, currency: str,
                 goods_kind_map: Mapping[str, str] | None = None, case_insensitive: bool = False,
                 name: str = "http", session: ChannelSession | None = None) -> None:
        # The SQL adapter's validation and normalisation, reused as is: only the transport differs.
        self._norm = SqlShop(name, _no_connection, "", columns, status_map, zone, currency, goods_kind_map,
                             case_insensitive=case_insensitive)
        self.name = name
        self.case_insensitive = case_insensitive
        statuses = {str(k): v for k, v in status_map.items()}
        self.repairable = {"missing_callback": tuple(k for k, v in statuses.items() if v in REPAIRABLE_FROM)}
        self.base_url = base_url.rstrip("/") + "/"
        self.columns = dict(columns)
        self.zone = zone
        self._orders_path = orders_path
        self._order_path = order_path
        self._token = token
        self.session = session or ChannelSession(f"shop {name}", secrets=[token] if token else [])

    # -- HTTP ----------------------------------------------------------------------------------------

    def url(self, path: str, order_no: str | None = None) -> str:
        if order_no is not None:
            path = path.replace("{order_no}", quote(order_no, safe=""))
        return urljoin(self.base_url, path.lstrip("/"))

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def safe(self, text: str) -> str:
        return redact(text, [self._token] if self._token else [])

    def send(self, session: ChannelSession, method: str, url: str, headers: Mapping[str, str] | None = None,
             **kwargs: Any) -> requests.Response:
        """One request through ``session``; transport failures become ShopError (token redacted)."""
        try:
            return session.request(method, url, headers={**self.headers(), **(headers or {})}, **kwargs)
        except ReconError as exc:
            raise ShopError(self.safe(f"shop {self.name!r}: {exc}")) from None

    def refusal(self, method: str, url: str, response: requests.Response) -> ShopError:
        body = " ".join(response.text[:200].split())
        return ShopError(self.safe(f"shop {self.name!r}: {method} {url.split('?', 1)[0]} answered HTTP "
                                   f"{response.status_code}: {body}"))

    def get_json(self, url: str, params: Mapping[str, str] | None = None) -> Any | None:
        """The decoded answer of a GET; None for 404."""
        response = self.send(self.session, "GET", url, params=params)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self.refusal("GET", url, response)
        try:
            return json.loads(response.text, parse_float=Decimal)
        except ValueError:
            raise ShopError(f"shop {self.name!r}: GET {url.split('?', 1)[0]} did not answer JSON") from None

    # -- ShopAdapter ----------------------------------------------------------------------------------

    def orders_created_between(self, start: datetime, end: datetime) -> pl.DataFrame:
        local = ZoneInfo(self.zone)
        base_params = {"created_from": start.astimezone(local).isoformat(),
                       "created_to": end.astimezone(local).isoformat()}
        url, params = self.url(self._orders_path), dict(base_params)
        records: list[Any] = []
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            answer = self.get_json(url, params)
            if not isinstance(answer, dict) or not isinstance(answer.get("orders"), list):
                raise ShopError(f"shop {self.name!r}: GET {self._orders_path} did not answer {{\"orders\": [...]}}")
            records.extend(answer["orders"])
            cursor = answer.get("next")
            if cursor in (None, ""):
                return self.frame(records)
            cursor = str(cursor)
            if cursor in seen:
                raise ShopError(f"shop {self.name!r}: the order listing repeats its next cursor")
            seen.add(cursor)
            url, params = self._next(cursor, base_params)
        raise ShopError(f"shop {self.name!r}: the order listing did not end after {MAX_PAGES} pages")

    def order_batches(self, start: datetime, end: datetime) -> Iterator[pl.DataFrame]:
        yield self.orders_created_between(start, end)

    def _next(self, cursor: str, base_params: dict[str, str]) -> tuple[str, dict[str, str] | None]:
        """A ``next`` URL (absolute or a path, on the shop's own host only) or an opaque cursor."""
        if cursor.startswith(("http://", "https://", "/")):
            url = urljoin(self.base_url, cursor)
            if urlsplit(url)[:2] != urlsplit(self.base_url)[:2]:
                raise ShopError(f"shop {self.name!r}: the next page is on another host; not sending the token there")
            return url, None
        return self.url(self._orders_path), {**base_params, "cursor": cursor}

    def orders_by_no(self, order_nos: Sequence[str], loaded: Window | None = None) -> pl.DataFrame:
        """The orders of these numbers the shop has, in number order, asked ORDERS_IN_FLIGHT at a time. The
        first refusal in number order is raised, and the requests not yet sent are not sent."""
        numbers = sorted(set(order_nos))
        if not numbers:
            return self.frame([])
        with ThreadPoolExecutor(min(ORDERS_IN_FLIGHT, len(numbers)), thread_name_prefix="shop-order") as pool:
            asked = [pool.submit(self.order_record, order_no) for order_no in numbers]
            try:
                answers = [future.result() for future in asked]
            except BaseException:
                for future in asked:
                    future.cancel()
                raise
        return self.frame([record for record in answers if record is not None])

    def order_record(self, order_no: str) -> dict[str, Any] | None:
        answer = self.get_json(self.url(self._order_path, order_no))
        if answer is None:
            return None
        if isinstance(answer, dict) and isinstance(answer.get("order"), dict):
            answer = answer["order"]
        if not isinstance(answer, dict):
            raise ShopError(f"shop {self.name!r}: order {order_no} is not a JSON object")
        return answer

    # -- normalisation ------------------------------------------------------------------------------

    def frame(self, records: Sequence[Any]) -> pl.DataFrame:
        """JSON records → SHOP_SCHEMA rows, through the SQL adapter's normalisation."""
        data: dict[str, pl.Series] = {}
        for canonical, field in self.columns.items():
            values = [r.get(field) if isinstance(r, dict) else None for r in records]
            if canonical in TIME_COLUMNS:
                data[canonical] = pl.Series(canonical, [self._instant(v, canonical) for v in values],
                                            dtype=pl.Datetime("us", "UTC"))
            else:
                data[canonical] = pl.Series(canonical, [_text(v) for v in values], dtype=pl.String)
        return self._norm._normalise(pl.DataFrame(data)).select(list(SHOP_SCHEMA))

    def _instant(self, value: Any, column: str) -> datetime | None:
        if value in (None, ""):
            return None
        try:
            moment = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise ShopError(f"shop {self.name!r}: {column} {str(value)[:40]!r} is not an ISO 8601 time") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=ZoneInfo(self.zone))
        return moment.astimezone(UTC)


def _text(value: Any) -> str | None:
    """A JSON scalar as text: Decimals keep their exact digits (no exponent), booleans are not numbers."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def http_shop(config: Config) -> HttpShop:
    shop = config.shop
    assert shop.base_url is not None
    token = shop.token.reveal("shop.token") if shop.token is not None else None
    return HttpShop(shop.base_url, token, shop.orders_path, shop.order_path, shop.columns, shop.status_map,
                    shop.zone, shop.currency, shop.goods_kind_map, shop.order_no_case_insensitive)
