"""The ``export`` shop kind: the shop's orders table as a bulk export file, read in vectorised batches.

Reading ten million orders through a database driver costs minutes; the same rows exported by the
database itself (``SELECT … INTO OUTFILE``, ``mysqldump --tab``, ``COPY … TO``, the admin's export) are read
by polars' streaming CSV reader in seconds, a batch at a time. The file must start with a header line naming the
table's columns; values are taken as text and normalised exactly as SqlShop does (amounts to exact
decimals, wall-clock times in the shop's zone to instants, unmapped statuses refused).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from recon.ahead import read_ahead
from recon.errors import ShopError
from recon.shops import dujiaoka
from recon.shops.base import SHOP_SCHEMA, Window
from recon.shops.sql import normalise_orders

# MySQL writes NULL as \N in SELECT … INTO OUTFILE and mysqldump --tab output; PostgreSQL's COPY text format too.
NULL_MARKER = r"\N"
# A header with tabs and no comma is a tab-separated export (mysqldump --tab, mysql --batch, COPY's text format).
TAB = "\t"
# dujiaoka marks an order deleted by setting deleted_at; every Eloquent query skips such orders.
DELETED_COLUMN = "deleted_at"
# dujiaoka records no payment time: updated_at stands in for orders that left status 1 (as dujiaoka.py reads it).
DUJIAOKA_PAID_STATUSES = ("2", "3", "4", "5", "6")
DUJIAOKA_NEEDED = ("order_sn", "actual_price", "status", "created_at", "updated_at")
# Bytes of the export parsed at a time: a slice's text columns and its orders, not the whole export, in memory.
SLICE_BYTES = 64 * 1024 * 1024
# Orders outside the window kept from a pass over the file, at most: a run then asks for the orders its channel
# rows name that it did not load (``orders_by_no(..., loaded=window)``), and those are among them or nowhere,
# so the file is not read a second time (ten million orders: 5 s). An export of a table's whole history holds
# more; then the file is read again.
OUTSIDE_KEPT = 1_000_000


@dataclass(frozen=True)
class _Outside:
    """The orders of one complete pass created outside its window, and what the file was then."""

    window: Window
    stamp: tuple[int, int]  # size and modification time of the file read
    orders: pl.DataFrame


class ExportShop:
    """Orders from one export file, read in batches on each call and never held whole."""

    def __init__(self, path: Path, columns: Mapping[str, str], status_map: Mapping[str, str], zone: str,
                 currency: str, goods_kind_map: Mapping[str, str] | None = None, case_insensitive: bool = False,
                 repairable: dict[str, tuple[str, ...]] | None = None, dujiaoka_schema: bool = False) -> None:
        self.name = "export"
        self._path = path
        self._columns = dict(columns)
        self._status_map = {str(k): v for k, v in status_map.items()}
        self._goods_kind_map = {str(k): v for k, v in (goods_kind_map or {}).items()}
        self._zone = zone
        self._currency = currency
        self._dujiaoka = dujiaoka_schema
        self.case_insensitive = case_insensitive
        self.repairable = repairable or {}
        self._outside: _Outside | None = None

    def orders_created_between(self, start: datetime, end: datetime) -> pl.DataFrame:
        return _joined(list(self.order_batches(start, end)))

    def order_batches(self, start: datetime, end: datetime) -> Iterator[pl.DataFrame]:
        utc = ZoneInfo("UTC")
        created = pl.col("created_at")
        window = (created >= start.astimezone(utc)) & (created < end.astimezone(utc))
        self._outside = None
        stamp = self._stamp()
        outside: list[pl.DataFrame] | None = []
        kept = 0
        # The next slice is read and normalised while the caller stores this one.
        for batch in read_ahead(self._batches()):
            if outside is not None:
                rest = batch.filter(~window)
                kept += rest.height
                if kept > OUTSIDE_KEPT:
                    outside = None
                elif rest.height:
                    outside.append(rest)
            yield batch.filter(window)
        if outside is not None and stamp == self._stamp():
            orders = _joined(outside) if outside else pl.DataFrame(schema=SHOP_SCHEMA)
            self._outside = _Outside((start, end), stamp, orders)

    def orders_by_no(self, order_nos: Sequence[str], loaded: Window | None = None) -> pl.DataFrame:
        wanted = pl.Series(sorted(set(order_nos)), dtype=pl.String)
        outside = self._outside
        if loaded is not None and outside is not None and outside.window == loaded and outside.stamp == self._stamp():
            return outside.orders.filter(self._named("order_no", wanted))
        # The file's own cells are picked before they are normalised: a run names a few thousand orders of
        # millions, and normalising every order to keep those took most of a pass.
        return _joined(list(self._batches(self._named(self._columns["order_no"], wanted))))

    def _named(self, column: str, wanted: pl.Series) -> pl.Expr:
        key = pl.col(column).str.strip_chars()
        if self.case_insensitive:
            return key.str.to_uppercase().is_in(wanted.str.to_uppercase().implode())
        return key.is_in(wanted.implode())

    def _stamp(self) -> tuple[int, int]:
        try:
            info = self._path.stat()
        except OSError as exc:
            raise ShopError(f"cannot read the shop export {self._path}: {exc.strerror}") from None
        return info.st_size, info.st_mtime_ns

    def _batches(self, picked: pl.Expr | None = None) -> Iterator[pl.DataFrame]:
        """The export's orders, normalised, a slice at a time: the file is read afresh on each call and never
        held whole (an export of ten million orders is gigabytes of text). ``picked`` keeps the raw rows it
        is true for (over the file's column names) before they are normalised."""
        wanted = set(self._columns.values())
        if self._dujiaoka:
            wanted |= {*DUJIAOKA_NEEDED, DELETED_COLUMN}
        raw_batches = _scan_text_table(self._path, wanted)
        for raw in raw_batches:
            if picked is not None and self._columns["order_no"] in raw.columns:
                raw = raw.filter(picked)
            yield self._normalise(raw)

    def _normalise(self, raw: pl.DataFrame) -> pl.DataFrame:
        if self._dujiaoka:
            raw = _dujiaoka_rows(raw)
        missing = sorted({src for src in self._columns.values() if src not in raw.columns})
        if missing:
            raise ShopError(f"shop export {self._path.name}: the header has no column(s) {', '.join(missing)}")
        mapped = raw.select([pl.col(src).alias(dst) for dst, src in self._columns.items()])
        orders = normalise_orders(mapped, self.name, self._status_map, self._goods_kind_map, self._zone,
                                  self._currency)
        bad_time = orders.filter(pl.col("created_at").is_null())
        if bad_time.height:
            raise ShopError(f"shop export {self._path.name}: order {bad_time['order_no'][0]} has no valid created_at")
        return orders.select(list(SHOP_SCHEMA))


def _joined(frames: list[pl.DataFrame]) -> pl.DataFrame:
    return frames[0] if len(frames) == 1 else pl.concat(frames, rechunk=False)


def _scan_text_table(path: Path, wanted: set[str]) -> Iterator[pl.DataFrame]:
    """The ``wanted`` columns the header has, as text, a slice of the file at a time; the delimiter is told
    by the header line.

    An export carries every column of the table (a dujiaoka order's ``info`` and ``search_pwd`` among them);
    parsing only the ones used halves the read. The file is read SLICE_BYTES at a time and cut at the last
    line break outside quotes; each slice is parsed on its own with the header's names.
    """
    try:
        with open(path, "rb") as fh:
            first = fh.readline()
            try:
                text = first.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise ShopError(f"shop export {path.name}: the header line is not UTF-8") from None
            if not text.strip():
                raise ShopError(f"shop export {path.name}: empty, or no header line")
            separator = TAB if TAB in text and "," not in text else ","
            quote = None if separator == TAB else '"'
            options: dict[str, Any] = {"separator": separator, "infer_schema": False, "null_values": [NULL_MARKER],
                                       "quote_char": quote, "raise_if_empty": False}
            header = pl.read_csv(io.BytesIO(first), n_rows=0, **options).columns
            used = [i for i, c in enumerate(header) if _clean(c) in wanted]
            names = {header[i]: _clean(header[i]) for i in used}
            empty, buffer = True, bytearray(SLICE_BYTES)
            # Each slice is read at its own offset, up to the last record it holds whole; the records after
            # that are read again with the next slice. Joining a carried tail to the next block copied every
            # slice twice more, and at gigabytes the copies of fresh memory took longer than the parsing.
            # Slices are read into one buffer, and only the records handed to polars are copied out of it: a
            # fresh block per read, then its records cut off as another, cost a page fault per 4 KiB twice.
            while got := fh.readinto(buffer):
                end = _cut(buffer, quote) if got == len(buffer) else got
                if not end:  # one record longer than a slice: read a larger one
                    fh.seek(-got, io.SEEK_CUR)
                    buffer = bytearray(2 * len(buffer))
                    continue
                fh.seek(end - got, io.SEEK_CUR)
                with memoryview(buffer) as whole:
                    records = bytes(whole[:end])
                batch = pl.read_csv(records, has_header=False, new_columns=header, columns=used, **options)
                del records
                if batch.height:
                    empty = False
                    yield batch.rename(names)
    except OSError as exc:
        raise ShopError(f"cannot read the shop export {path}: {exc.strerror}") from None
    except pl.exceptions.PolarsError as exc:
        raise ShopError(f"shop export {path.name} cannot be read: {' '.join(str(exc).split())[:300]}") from None
    if empty:
        yield pl.DataFrame(schema={name: pl.String for name in names.values()})


def _cut(data: bytes | bytearray, quote: str | None) -> int:
    """Just after the last line break of ``data`` that is not inside a quoted field; 0 when there is none.

    In a CSV whose quotes are doubled inside fields (RFC 4180), a line break is inside a quoted field when
    an odd number of quote characters precede it: ``data`` starts at a record boundary, so counting from
    its start tells.
    """
    mark = quote.encode() if quote else None
    end = data.rfind(b"\n")
    while end >= 0 and mark is not None and data.count(mark, 0, end) % 2 == 1:
        end = data.rfind(b"\n", 0, end)
    return end + 1


def _clean(column: str) -> str:
    return column.lstrip("\ufeff").strip()


def _dujiaoka_rows(raw: pl.DataFrame) -> pl.DataFrame:
    """dujiaoka's live orders with paid_at, as recon/shops/dujiaoka.py reads them from the database."""
    missing = [c for c in DUJIAOKA_NEEDED if c not in raw.columns]
    if missing:
        raise ShopError(f"not a dujiaoka orders export: no column(s) {', '.join(missing)}")
    live = raw
    if DELETED_COLUMN in raw.columns:
        deleted = pl.col(DELETED_COLUMN)
        live = raw.filter(deleted.is_null() | (deleted.str.strip_chars() == ""))
    status = pl.col("status").str.strip_chars()
    filled = {c: pl.lit(None, pl.String) for c in dujiaoka.COLUMNS.values() if c not in live.columns and c != "paid_at"}
    return live.with_columns(
        paid_at=pl.when(status.is_in(DUJIAOKA_PAID_STATUSES)).then(pl.col("updated_at")), **filled,
    )
