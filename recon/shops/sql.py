"""A shop read through a configured SELECT and a column mapping (the ``sql``, ``sqlite`` and ``dujiaoka`` kinds).

The configured query is wrapped, never edited: recon adds its own ``WHERE`` around it with bound
parameters, so order numbers and dates never become SQL text. (For MySQL and PostgreSQL, whose drivers
use ``%s`` placeholders, a literal ``%`` in the query is doubled so it reaches the server unchanged.)
The one exception is the window read on MySQL/MariaDB and PostgreSQL, which goes through connectorx
(fast.py): it takes no parameters, so the window's two bounds, wall-clock times recon formats itself from
datetimes, are written into that statement as literals; order numbers always stay parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from recon.errors import ShopError
from recon.frames import utc_from_wall
from recon.secrets import redact
from recon.shops import fast
from recon.shops.base import SHOP_SCHEMA, SHOP_STATUSES, Window
from recon.shops.connect import (DB_ERRORS, SQLITE, STREAM_BATCH, Connector, Dialect, abandon, connector,
                                stream_cursor)

WALL_CLOCK = "%Y-%m-%d %H:%M:%S"
SHOP_COLUMNS = tuple(SHOP_SCHEMA)
# Read as instants: typed (datetime from MySQL/PostgreSQL) or wall-clock text (SQLite).
TIME_COLUMNS = ("created_at", "paid_at")
# An amount as text: digits, at most 6 significant decimals (MONEY's scale), trailing zeros allowed.
AMOUNT_TEXT = r"^-?\d+(\.\d{0,6}0*)?$"


class SqlShop:
    """Orders from any DB-API connection, mapped by column name, read in batches of STREAM_BATCH rows."""

    def __init__(self, name: str, connect: Callable[[], Any], query: str, columns: Mapping[str, str],
                 status_map: Mapping[str, str], zone: str, currency: str, goods_kind_map: Mapping[str, str] | None = None,
                 case_insensitive: bool = False, repairable: dict[str, tuple[str, ...]] | None = None,
                 dialect: Dialect = SQLITE, collation_folds_case: bool = False) -> None:
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
        self._dialect = dialect
        self._query = query.strip().rstrip(";")
        self._columns = dict(columns)
        self._status_map = {str(k): v for k, v in status_map.items()}
        self._goods_kind_map = {str(k): v for k, v in (goods_kind_map or {}).items()}
        self._zone = zone
        self._currency = currency
        self.case_insensitive = case_insensitive
        # True when the database compares order numbers case-insensitively itself (dujiaoka's
        # utf8_unicode_ci order_sn on MySQL): no upper() then, so the unique index is used.
        self._collation_folds_case = collation_folds_case
        self.repairable = repairable or {}
        # The window of orders through connectorx (recon/shops/fast.py) where the database allows; False: the
        # driver, as for orders_by_no and SQLite.
        self.fast_window = fast.supports(connect)

    def _col(self, canonical: str) -> str:
        return f"q.{self._dialect.quote(self._columns[canonical])}"

    def _select(self) -> str:
        quote = self._dialect.quote
        cols = ", ".join(f"q.{quote(src)} AS {quote(dst)}" for dst, src in self._columns.items())
        return f"SELECT {cols} FROM ({self._dialect.embed(self._query)}) q"

    def _wall(self, moment: datetime) -> str:
        return moment.astimezone(ZoneInfo(self._zone)).strftime(WALL_CLOCK)

    def orders_created_between(self, start: datetime, end: datetime) -> pl.DataFrame:
        if self.fast_window:
            return self._fast_window(self._wall(start), self._wall(end))
        created, mark = self._col("created_at"), self._dialect.placeholder
        sql = f"{self._select()} WHERE {created} >= {mark} AND {created} < {mark}"
        return self._fetch(sql, [self._wall(start), self._wall(end)])

    def order_batches(self, start: datetime, end: datetime) -> Iterator[pl.DataFrame]:
        if self.fast_window:
            yield from self._fast_batches(self._wall(start), self._wall(end))
        else:
            yield self.orders_created_between(start, end)

    def _fast_window(self, start_wall: str, end_wall: str) -> pl.DataFrame:
        """The window through connectorx: the same statement and rows as ``_fetch`` would read (fast.py)."""
        return pl.concat(list(self._fast_batches(start_wall, end_wall)))

    def _fast_batches(self, start_wall: str, end_wall: str) -> Iterator[pl.DataFrame]:
        connect = self._connect
        assert isinstance(connect, Connector)
        kinds = fast.column_kinds(connect, self.name, f"{self._select()} WHERE 1 = 0")
        sql = fast.window_select(connect, self._query, self._columns, kinds, start_wall, end_wall)
        for batch in fast.read_batches(connect, self.name, sql, kinds):
            yield self._normalise(batch)

    def orders_by_no(self, order_nos: Sequence[str], loaded: Window | None = None) -> pl.DataFrame:
        wanted = sorted(set(order_nos))
        col = self._col("order_no")
        fold = self.case_insensitive and not self._collation_folds_case
        target = f"upper({col})" if fold else col
        step = self._dialect.max_params
        frames = []
        for i in range(0, len(wanted), step):
            chunk = wanted[i:i + step]
            values = [v.upper() for v in chunk] if fold else chunk
            frames.append(self._fetch(f"{self._select()} WHERE {target} IN ({self._dialect.marks(len(chunk))})", values))
        return pl.concat(frames) if frames else self._fetch(f"{self._select()} WHERE 1 = 0", [])

    def _fetch(self, sql: str, params: list[Any]) -> pl.DataFrame:
        """Run one statement through a streaming cursor; each fetched batch becomes one polars frame."""
        frames: list[pl.DataFrame] = []
        try:
            con = self._connect()
            cur = None
            try:
                cur = stream_cursor(self._dialect, con)
                cur.execute(sql, params)
                names = [d[0] for d in cur.description]
                while rows := cur.fetchmany(STREAM_BATCH):
                    frames.append(self._normalise(_frame(rows, names)))
                if not frames:
                    frames.append(self._normalise(_frame([], names)))
                cur.close()
                cur = None
            finally:
                abandon(self._dialect, con, cur)
        except DB_ERRORS as exc:
            text = getattr(self._connect, "redact", lambda t: redact(t, []))(" ".join(str(exc).split()))
            raise ShopError(f"shop {self.name!r}: query failed: {text}") from None
        return pl.concat(frames)

    def _normalise(self, raw: pl.DataFrame) -> pl.DataFrame:
        return normalise_orders(raw, self.name, self._status_map, self._goods_kind_map, self._zone, self._currency)


def normalise_orders(raw: pl.DataFrame, name: str, status_map: Mapping[str, str], goods_kind_map: Mapping[str, str],
                     zone: str, currency: str) -> pl.DataFrame:
    """Cast the shop's values to canonical ones; an unmapped status is an error, not a guess.

    Amounts are read as text (DECIMAL values through their exact string form, never float) and
    cast to MONEY. Times are instants from the shop's wall clock (see ``_instant``).
    """
    as_text = {c: pl.col(c).cast(pl.String).str.strip_chars() for c in raw.columns
               if not (c in TIME_COLUMNS and raw.schema[c].is_temporal())}
    # Times read first as the shop's wall clock, so that their range is known when they become instants.
    frame = raw.with_columns(**as_text).with_columns(
        **{c: _wall_clock(c, raw.schema[c]) for c in TIME_COLUMNS if c in raw.columns})
    unknown = frame.filter(~pl.col("status").is_in(list(status_map)))
    if unknown.height:
        raise ShopError(f"shop {name!r}: order {unknown['order_no'][0]} has status "
                        f"{unknown['status'][0]!r}, which shop.status_map does not map")
    bad_amount = frame.filter(~pl.col("amount").str.contains(AMOUNT_TEXT))
    if bad_amount.height:
        raise ShopError(f"shop {name!r}: order {bad_amount['order_no'][0]} has amount "
                        f"{bad_amount['amount'][0]!r}")
    out = frame.with_columns(
        shop_status=pl.col("status"),
        status=pl.col("status").replace_strict(status_map, return_dtype=pl.String),
        amount=pl.col("amount").cast(SHOP_SCHEMA["amount"]),
        created_at=_instant(frame, "created_at", zone),
        paid_at=_instant(frame, "paid_at", zone) if "paid_at" in frame.columns else pl.lit(None),
        channel_txn_id=pl.col("channel_txn_id").replace("", None) if "channel_txn_id" in frame.columns
        else pl.lit(None),
        goods_kind=pl.col("goods_kind").replace(goods_kind_map) if "goods_kind" in frame.columns
        else pl.lit(None),
        currency=pl.col("currency") if "currency" in frame.columns else pl.lit(currency),
    )
    return out.select([
        (pl.col(c) if c in out.columns else pl.lit(None)).cast(t).alias(c) for c, t in SHOP_SCHEMA.items()
    ])


def _wall_clock(col: str, dtype: pl.DataType) -> pl.Expr:
    """A shop time as read: naive values (MySQL DATETIME/TIMESTAMP read in the session zone, PostgreSQL
    ``timestamp``, SQLite text) are the shop's wall clock (dujiaoka stores PRC wall-clock strings); aware
    values (PostgreSQL ``timestamptz``) are already instants and kept so."""
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        return pl.col(col)
    if dtype.is_temporal():
        return pl.col(col).cast(pl.Datetime("us"))
    value = pl.col(col).cast(pl.String).str.replace(r"T", " ").str.slice(0, 19)
    return value.str.strptime(pl.Datetime("us"), WALL_CLOCK, strict=False)


def _instant(frame: pl.DataFrame, col: str, zone: str) -> pl.Expr:
    """A shop time of ``frame`` (as ``_wall_clock`` read it) → UTC."""
    dtype = frame.schema[col]
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        return pl.col(col).dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    return utc_from_wall(frame, col, zone)


def _frame(rows: Sequence[Sequence[Any]], names: list[str]) -> pl.DataFrame:
    """One fetched batch as a frame; a column of mixed Python types (MySQL returns an invalid date such as
    '0000-00-00 00:00:00' as text among datetimes) falls back to text for that column only."""
    try:
        return pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)
    except (pl.exceptions.PolarsError, TypeError, ValueError):
        pass
    columns: dict[str, pl.Series] = {}
    for name, values in zip(names, zip(*rows, strict=True), strict=True):
        try:
            columns[name] = pl.Series(name, values)
        except (pl.exceptions.PolarsError, TypeError, ValueError):
            columns[name] = pl.Series(name, [None if v is None else str(v) for v in values], dtype=pl.String)
    return pl.DataFrame(columns)


def sqlite_connector(path: str) -> Connector:
    """Open the shop's SQLite file read-only, so recon never writes to it by accident."""
    return connector(f"sqlite:///{path}", "UTC")
