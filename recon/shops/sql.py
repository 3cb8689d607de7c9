"""A shop read through a configured SELECT and a column mapping (the ``sql`` and ``sqlite`` kinds).

The configured query is wrapped, never edited: recon adds its own ``WHERE`` around it with bound
parameters, so order numbers and dates never become SQL text.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from recon.errors import ShopError
from recon.shops.base import SHOP_SCHEMA, SHOP_STATUSES

# SQLite caps bound parameters per statement (32766 since 3.32; 999 before).
IN_CHUNK = 900
WALL_CLOCK = "%Y-%m-%d %H:%M:%S"
SHOP_COLUMNS = tuple(SHOP_SCHEMA)


class SqlShop:
    """Orders from any DB-API connection, mapped by column name."""

    def __init__(self, name: str, connect: Callable[[], Any], query: str, columns: Mapping[str, str],
                 status_map: Mapping[str, str], zone: str, currency: str, goods_kind_map: Mapping[str, str] | None = None,
                 case_insensitive: bool = False, repairable: dict[str, tuple[str, ...]] | None = None) -> None:
        for needed in ("order_no", "amount", "status", "created_at"):
            if needed not in columns:
                raise ShopError(f"shop.columns must map {needed!r} to a column of the query")
        unknown = set(columns) - set(SHOP_COLUMNS)
        if unknown:
            raise ShopError(f"shop.columns: unknown canonical column(s) {sorted(unknown)}")
        bad = sorted({v for v in status_map.values() if v not in SHOP_STATUSES})
        if bad:
            raise ShopError(f"shop.status_map: {bad} not among {', '.join(SHOP_STATUSES)}")
        self.name = name
        self._connect = connect
        self._query = query.strip().rstrip(";")
        self._columns = dict(columns)
        self._status_map = {str(k): v for k, v in status_map.items()}
        self._goods_kind_map = {str(k): v for k, v in (goods_kind_map or {}).items()}
        self._zone = zone
        self._currency = currency
        self.case_insensitive = case_insensitive
        self.repairable = repairable or {}

    def _select(self) -> str:
        cols = ", ".join(f'q."{src}" AS "{dst}"' for dst, src in self._columns.items())
        return f"SELECT {cols} FROM ({self._query}) q"

    def _wall(self, moment: datetime) -> str:
        return moment.astimezone(ZoneInfo(self._zone)).strftime(WALL_CLOCK)

    def orders_created_between(self, start: datetime, end: datetime) -> pl.DataFrame:
        created = self._columns["created_at"]
        sql = f'{self._select()} WHERE q."{created}" >= ? AND q."{created}" < ?'
        return self._fetch(sql, [self._wall(start), self._wall(end)])

    def orders_by_no(self, order_nos: Sequence[str]) -> pl.DataFrame:
        wanted = sorted(set(order_nos))
        col = self._columns["order_no"]
        frames = []
        for i in range(0, len(wanted), IN_CHUNK):
            chunk = wanted[i:i + IN_CHUNK]
            marks = ", ".join("?" for _ in chunk)
            target = f'upper(q."{col}")' if self.case_insensitive else f'q."{col}"'
            values = [v.upper() for v in chunk] if self.case_insensitive else chunk
            frames.append(self._fetch(f"{self._select()} WHERE {target} IN ({marks})", values))
        return pl.concat(frames) if frames else self._fetch(f"{self._select()} WHERE 1 = 0", [])

    def _fetch(self, sql: str, params: list[Any]) -> pl.DataFrame:
        try:
            con = self._connect()
            try:
                cur = con.cursor()
                cur.execute(sql, params)
                names = [d[0] for d in cur.description]
                raw = pl.DataFrame(cur.fetchall(), schema=names, orient="row", infer_schema_length=None)
            finally:
                con.close()
        except (sqlite3.Error, OSError) as exc:
            raise ShopError(f"shop {self.name!r}: query failed: {exc}") from None
        return self._normalise(raw)

    def _normalise(self, raw: pl.DataFrame) -> pl.DataFrame:
        """Cast the shop's values to canonical ones; an unmapped status is an error, not a guess."""
        as_text = {c: pl.col(c).cast(pl.String).str.strip_chars() for c in raw.columns}
        frame = raw.with_columns(**as_text)
        unknown = frame.filter(~pl.col("status").is_in(list(self._status_map)))
        if unknown.height:
            raise ShopError(f"shop {self.name!r}: order {unknown['order_no'][0]} has status "
                            f"{unknown['status'][0]!r}, which shop.status_map does not map")
        bad_amount = frame.filter(~pl.col("amount").str.contains(r"^-?\d+(\.\d+)?$"))
        if bad_amount.height:
            raise ShopError(f"shop {self.name!r}: order {bad_amount['order_no'][0]} has amount "
                            f"{bad_amount['amount'][0]!r}")
        out = frame.with_columns(
            shop_status=pl.col("status"),
            status=pl.col("status").replace_strict(self._status_map, return_dtype=pl.String),
            amount=pl.col("amount").cast(SHOP_SCHEMA["amount"]),
            created_at=self._instant("created_at"),
            paid_at=self._instant("paid_at") if "paid_at" in frame.columns else pl.lit(None),
            channel_txn_id=pl.col("channel_txn_id").replace("", None) if "channel_txn_id" in frame.columns
            else pl.lit(None),
            goods_kind=pl.col("goods_kind").replace(self._goods_kind_map) if "goods_kind" in frame.columns
            else pl.lit(None),
            currency=pl.col("currency") if "currency" in frame.columns else pl.lit(self._currency),
        )
        return out.select([
            (pl.col(c) if c in out.columns else pl.lit(None)).cast(t).alias(c) for c, t in SHOP_SCHEMA.items()
        ])

    def _instant(self, col: str) -> pl.Expr:
        """Shop wall-clock text, read in the shop's zone (dujiaoka stores PRC wall-clock strings) → UTC."""
        value = pl.col(col).str.replace(r"T", " ").str.slice(0, 19)
        local = value.str.strptime(pl.Datetime("us"), WALL_CLOCK, strict=False)
        return local.dt.replace_time_zone(self._zone, ambiguous="earliest", non_existent="null").dt.convert_time_zone(
            "UTC")


def sqlite_connector(path: str) -> Callable[[], sqlite3.Connection]:
    """Open the shop's SQLite file read-only, so recon never writes to it by accident."""
    def connect() -> sqlite3.Connection:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    return connect
