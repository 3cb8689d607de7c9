"""The bulk read of a window of orders through connectorx (Rust, straight into Arrow), for MySQL/MariaDB and
PostgreSQL shops.

Why: the DB-API drivers build a Python object for every value (pymysql parses every row in Python), which
made a million orders take about a minute; connectorx reads the same result in Rust. Only the window read
(``orders_created_between``) goes this way: ``orders_by_no`` binds order numbers from outside as parameters,
which connectorx cannot do, so it stays on the driver.

How the result stays identical to the driver read (``SqlShop._fetch``):

* The statement is the same wrapped SELECT with the same ``WHERE created >= a AND created < b``. The bounds
  are written into it as literals (connectorx binds no parameters): recon formats them itself from typed
  datetimes and checks them against ``WALL_LITERAL``; no text from outside ever goes into this SQL.
* The server sends every value as text: ``CAST(… AS CHAR)`` / ``::text`` keeps a DECIMAL's exact digits
  (never a float) and ``normalise_orders`` makes MONEY of them as it does of the driver's Decimals.
* Date and time columns (found by a probe of the result's column types through the driver, ``WHERE 1 = 0``,
  which also reports a wrong password or a broken query exactly as the driver read does) are formatted by
  the server with microseconds and parsed back into the naive wall-clock (or, for ``timestamptz``, UTC)
  datetimes the driver returns. MySQL keeps the server's default session time_zone, as the driver does;
  a PostgreSQL session runs in the shop's zone, as the driver's does. Both sessions are read only.
* The password travels in the URI connectorx needs: every error is redacted, and raised without its cause.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo

import polars as pl
import pyarrow as pa
from pymysql.constants import FIELD_TYPE

from recon.errors import ShopError
from recon.shops.connect import DB_ERRORS, Connector

# wall: naive date-time (the shop's wall clock); date: a date; instant: PostgreSQL timestamptz; text: the rest.
Kind = Literal["wall", "date", "instant", "text"]
FAST_DIALECTS = ("mysql", "postgresql")
# Rows per Arrow batch: each is normalised while connectorx reads the next.
ARROW_BATCH = 100_000
# The only values recon writes into the statement: wall-clock bounds it formatted from datetimes.
WALL_LITERAL = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
# How the server formats a date/time value, and how it is parsed back (microseconds, as the drivers keep).
SERVER_TIME = {"mysql": "'%Y-%m-%d %H:%i:%s.%f'", "postgresql": "'YYYY-MM-DD HH24:MI:SS.US'"}
PARSED_TIME = "%Y-%m-%d %H:%M:%S%.f"
_MYSQL_WALL = {FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP}
_MYSQL_DATE = {FIELD_TYPE.DATE, FIELD_TYPE.NEWDATE}
_PG_WALL = {1114}  # timestamp
_PG_DATE = {1082}  # date
_PG_INSTANT = {1184}  # timestamptz
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+\-/]+")
# The server's own words inside connectorx's Rust debug output of an error.
_SERVER_SAID = (re.compile(r"MySqlError \{ (?P<said>.*?) \}"), re.compile(r'\bmessage: "(?P<said>(?:[^"\\]|\\.)*)"'))


def supports(connect: object) -> bool:
    """True when ``connect`` is a MySQL/MariaDB or PostgreSQL connector and connectorx is installed (a platform
    without its wheel reads through the driver, slower but the same)."""
    return (isinstance(connect, Connector) and connect.dialect.name in FAST_DIALECTS
            and importlib.util.find_spec("connectorx") is not None)


def column_kinds(connect: Connector, name: str, probe_sql: str) -> dict[str, Kind]:
    """The result's columns by name → how the fast read fetches them, from ``probe_sql`` (no rows) on the driver."""
    try:
        con = connect()
        try:
            cur = con.cursor()
            try:
                cur.execute(probe_sql, [])  # [] : the driver turns the statement's %% back into %
                description = [(d[0], d[1]) for d in cur.description]
            finally:
                cur.close()
        finally:
            con.close()
    except DB_ERRORS as exc:
        raise ShopError(f"shop {name!r}: query failed: {connect.redact(' '.join(str(exc).split()))}") from None
    return {column: _kind(connect.dialect.name, code) for column, code in description}


def _kind(dialect: str, type_code: Any) -> Kind:
    wall, date = (_MYSQL_WALL, _MYSQL_DATE) if dialect == "mysql" else (_PG_WALL, _PG_DATE)
    if type_code in wall:
        return "wall"
    if type_code in date:
        return "date"
    return "instant" if dialect == "postgresql" and type_code in _PG_INSTANT else "text"


def window_select(connect: Connector, query: str, columns: Mapping[str, str], kinds: Mapping[str, Kind],
                  start_wall: str, end_wall: str) -> str:
    """The driver read's window statement with its bounds as literals and every value sent as text.

    ``query`` is the configured SELECT as written (not %-doubled: nothing here is a parameter).
    """
    for bound in (start_wall, end_wall):
        if not WALL_LITERAL.fullmatch(bound):
            raise ShopError("the order window's bounds must be wall-clock times")  # never reached by recon
    dialect = connect.dialect.name
    ident = connect.dialect.identifier
    fields = []
    for canonical, source in columns.items():
        col = f"q.{ident(source)}"
        kind = kinds[canonical]
        if kind == "text":
            value = f"CAST({col} AS {'CHAR' if dialect == 'mysql' else 'text'})"
        elif dialect == "mysql":
            value = f"DATE_FORMAT({col}, {SERVER_TIME[dialect]})"
        elif kind == "instant":
            value = f"to_char({col} AT TIME ZONE 'UTC', {SERVER_TIME[dialect]})"
        else:
            value = f"to_char(CAST({col} AS timestamp), {SERVER_TIME[dialect]})"
        fields.append(f"{value} AS {ident(canonical)}")
    created = f"q.{ident(columns['created_at'])}"
    return (f"SELECT {', '.join(fields)} FROM ({query}) q "
            f"WHERE {created} >= '{start_wall}' AND {created} < '{end_wall}'")


def session_setup(connect: Connector) -> list[str]:
    """Statements connectorx runs before the SELECT: a read-only session, in the shop's zone on PostgreSQL."""
    if connect.dialect.name == "mysql":
        return ["SET SESSION TRANSACTION READ ONLY"] if connect.read_only else []
    zone = connect.zone
    ZoneInfo(zone)  # a zone recon accepted; the pattern keeps it a plain literal all the same
    if not _ZONE_NAME.fullmatch(zone):
        raise ShopError(f"shop.zone {zone!r} is not a zone name PostgreSQL can be given")
    setup = [f"SET TIME ZONE '{zone}'"]
    if connect.read_only:
        setup.append("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    return setup


def uri(connect: Connector) -> str:
    """The connectorx URI of the shop database. It holds the password: never shown, never logged."""
    d = connect.dsn
    user = quote(d.user, safe="")
    password = f":{quote(d.password, safe='')}" if d.password else ""
    scheme = "mysql" if d.dialect.name == "mysql" else "postgresql"
    host = f"[{d.host}]" if ":" in d.host else d.host  # an IPv6 address
    return f"{scheme}://{user}{password}@{host}:{d.port}/{quote(d.database, safe='')}"


def read_batches(connect: Connector, name: str, sql: str, kinds: Mapping[str, Kind]) -> Iterator[pl.DataFrame]:
    """The statement's rows as frames of ARROW_BATCH rows, date/time columns parsed back into datetimes."""
    import connectorx

    # MySQL: the text protocol, as pymysql uses (no prepared statement). PostgreSQL: COPY … TO STDOUT (BINARY).
    protocol = "text" if connect.dialect.name == "mysql" else "binary"
    try:
        reader = connectorx.read_sql(uri(connect), sql, return_type="arrow_stream", protocol=protocol,
                                     pre_execution_query=session_setup(connect), batch_size=ARROW_BATCH)
        empty = True
        for batch in reader:
            empty = False
            yield _typed(_frame(pa.Table.from_batches([batch])), kinds)
        if empty:
            yield _typed(_frame(reader.schema.empty_table()), kinds)
    except ShopError:
        raise
    except BaseException as exc:  # connectorx raises RuntimeError, and a Rust panic as a BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit | MemoryError):
            raise
        raise _error(connect, name, exc) from None


def _frame(table: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _typed(frame: pl.DataFrame, kinds: Mapping[str, Kind]) -> pl.DataFrame:
    """Date/time columns from the server's text back to datetimes (an invalid one, e.g. MySQL's zero date, → null)."""
    parsed = {}
    for column, kind in kinds.items():
        if kind == "text":
            continue
        value = pl.col(column).cast(pl.String).str.strptime(pl.Datetime("us"), PARSED_TIME, strict=False)
        parsed[column] = {"wall": value, "date": value.dt.date(), "instant": value.dt.replace_time_zone("UTC")}[kind]
    return frame.with_columns(**parsed) if parsed else frame


def _error(connect: Connector, name: str, exc: BaseException) -> ShopError:
    """A connectorx failure as a ShopError without the password (in any of its forms) or the URI."""
    text = " ".join((str(exc).strip() or type(exc).__name__).split())
    text = connect.redact(text.replace(uri(connect), connect.dsn.where))
    lost = "timed out waiting for connection: "
    if text.startswith(lost):
        return ShopError(f"cannot connect to the shop database {connect.dsn.where} ({connect.key}): "
                         f"{_server_said(text[len(lost):])}")
    return ShopError(f"shop {name!r}: query failed: {_server_said(text)}")


def _server_said(text: str) -> str:
    """``ERROR 1242 (21000): Subquery returns …`` out of ``cx writer failed: Source(MySQLError(MySqlError { … }))``."""
    for pattern in _SERVER_SAID:
        found = pattern.search(text)
        if found:
            return found["said"]
    return text


__all__ = ["FAST_DIALECTS", "Kind", "column_kinds", "read_batches", "supports", "uri", "window_select"]
