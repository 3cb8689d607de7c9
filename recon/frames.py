"""Frame helpers shared by the import and the shop load: repeated keys, wall-clock times as instants, bulk
inserts."""

from __future__ import annotations

import functools
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import duckdb
import polars as pl
import pyarrow as pa  # type: ignore[import-untyped]

from recon.store import ROW_GROUP_ROWS, unordered_inserts


def repeated(keys: pl.Series) -> pl.Series:
    """True for every value of ``keys`` that occurs more than once (nulls count as a value).

    Asked of the keys' 64-bit hashes first: counting distinct hashes is a sixth of what finding repeated
    strings costs (five million keys: 0.4 s, not 2.7 s), and a bill or a shop batch rarely repeats a key.
    Only when some hash repeats are the keys themselves compared, so a collision never marks a key.
    """
    hashes = keys.hash()
    if hashes.n_unique() == keys.len():
        return pl.repeat(False, keys.len(), dtype=pl.Boolean, eager=True).alias(keys.name)
    maybe = hashes.is_duplicated()
    candidates = maybe.arg_true()
    return maybe.scatter(candidates, keys.gather(candidates).is_duplicated()).alias(keys.name)


# Wall-clock ranges longer than this are converted value by value (their offsets are not sampled).
FIXED_OFFSET_SPAN = timedelta(days=400)
_SAMPLE_STEP = timedelta(minutes=15)  # no zone changes its offset twice within a quarter of an hour


def utc_from_wall(frame: pl.DataFrame, column: str, zone: str) -> pl.Expr:
    """``column`` of ``frame``, naive wall-clock times in ``zone``, as UTC instants: a time the zone's clocks
    skip becomes null, one they repeat its earlier instant.

    Where the zone keeps one UTC offset over the column's whole range (China has had no summer time since
    1991), the offset is subtracted: looking a named zone's rules up value by value took a quarter of a
    bill's parse.
    """
    first, last = frame[column].min(), frame[column].max()
    offset = None
    if isinstance(first, datetime) and isinstance(last, datetime) and last.year < datetime.max.year:
        # Whole days, so that the slices of one file ask (and the cache answers) the same question.
        offset = _fixed_offset(zone, datetime.combine(first.date(), time(0)),
                               datetime.combine(last.date() + timedelta(days=1), time(0)))
    if offset is not None:
        return (pl.col(column) - pl.lit(offset)).dt.replace_time_zone("UTC")
    return pl.col(column).dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null").dt.convert_time_zone(
        "UTC")


@functools.lru_cache(maxsize=64)
def _fixed_offset(zone: str, first: datetime, last: datetime) -> timedelta | None:
    """The UTC offset ``zone`` has at every wall-clock time from ``first`` to ``last``, or None when it changes
    (or a time in the range is skipped or repeated)."""
    if last - first > FIXED_OFFSET_SPAN:
        return None
    tz = ZoneInfo(zone)
    offset = first.replace(tzinfo=tz).utcoffset()
    moment = first - _SAMPLE_STEP
    while moment <= last + _SAMPLE_STEP:
        if {moment.replace(tzinfo=tz, fold=fold).utcoffset() for fold in (0, 1)} != {offset}:
            return None
        moment += _SAMPLE_STEP
    return offset


def insert_frame(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    """Append ``frame`` (the table's columns, in its order) to ``table``, in no particular row order.

    Handed over as Arrow string views, so DuckDB reads the text where polars holds it, in record batches of
    one row group each, which DuckDB's threads store side by side, each into a group of its own (see
    ROW_GROUP_ROWS: a frame of whole row groups leaves the commit's checkpoint nothing to merge). Through a
    relation, not a registered view: a view registered inside a transaction is kept, with the frame it names,
    until the commit.
    """
    arrow = frame.rechunk().to_arrow(compat_level=pl.CompatLevel.newest())
    with unordered_inserts(con):
        con.from_arrow(pa.Table.from_batches(arrow.to_batches(max_chunksize=ROW_GROUP_ROWS))).insert_into(table)
