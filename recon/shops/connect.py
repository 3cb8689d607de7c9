"""Shop database DSNs: which SQL dialect, and how to open a (read-only) connection.

Supported DSNs (SQLAlchemy spelling, without a driver suffix):

    sqlite:///relative/shop.db            sqlite:////absolute/shop.db
    mysql://user[:password]@host[:3306]/database        (also mariadb://)
    postgresql://user[:password]@host[:5432]/database   (also postgres://)

A DSN that holds a password is given as ``env:VAR`` or ``file:PATH`` (``ShopConfig`` refuses it inline).
No error raised here shows the password: connection failures are re-raised as ``ShopError`` with the
password removed, and DSN problems as ``ConfigError`` naming ``shop.dsn`` without echoing the DSN.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import psycopg
import pymysql
import pymysql.cursors

from recon.errors import ConfigError, ShopError
from recon.secrets import redact

DialectName = Literal["sqlite", "mysql", "postgresql"]
CONNECT_TIMEOUT_SECONDS = 10
# Rows per fetch from a streaming cursor (each batch becomes one polars frame).
STREAM_BATCH = 20_000
# Every error a shop database driver raises (wrapped into ShopError by the readers).
DB_ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error, pymysql.err.MySQLError, psycopg.Error, OSError)
_SCHEMES: dict[str, DialectName] = {
    "sqlite": "sqlite",
    "mysql": "mysql",
    "mariadb": "mysql",
    "postgresql": "postgresql",
    "postgres": "postgresql",
}
_DEFAULT_PORTS = {"mysql": 3306, "postgresql": 5432}


@dataclass(frozen=True)
class Dialect:
    """What differs between the shop databases in the SQL recon writes around a configured query."""

    name: DialectName

    @property
    def placeholder(self) -> str:
        return "?" if self.name == "sqlite" else "%s"

    @property
    def max_params(self) -> int:
        """Bound parameters per statement we allow ourselves (SQLite before 3.32 caps them at 999)."""
        return 900 if self.name == "sqlite" else 5000

    def quote(self, identifier: str) -> str:
        """A quoted identifier: `backticks` for MySQL/MariaDB, "double quotes" otherwise.

        Made ready for a statement with %s parameters like ``embed``: recon sends every statement it
        builds with bound parameters, so a ``%`` in a configured column name must reach the server doubled.
        """
        return self.embed(self.identifier(identifier))

    def identifier(self, identifier: str) -> str:
        """A quoted identifier as the server reads it, for a statement sent without parameters."""
        if self.name == "mysql":
            return "`" + identifier.replace("`", "``") + "`"
        return '"' + identifier.replace('"', '""') + '"'

    def marks(self, count: int) -> str:
        return ", ".join([self.placeholder] * count)

    def embed(self, query: str) -> str:
        """A configured query made safe to embed in a statement with %s parameters (``%`` → ``%%``)."""
        return query if self.name == "sqlite" else query.replace("%", "%%")


SQLITE = Dialect("sqlite")
MYSQL = Dialect("mysql")
POSTGRESQL = Dialect("postgresql")


@dataclass(frozen=True)
class Dsn:
    """A parsed DSN. ``repr`` never shows the password."""

    dialect: Dialect
    database: str
    host: str = ""
    port: int = 0
    user: str = ""
    password: str = field(default="", repr=False)

    @property
    def where(self) -> str:
        """Where the database is, for messages (never the password)."""
        if self.dialect.name == "sqlite":
            return self.database
        return f"{self.dialect.name}://{self.user}@{self.host}:{self.port}/{self.database}"


def parse_dsn(dsn: str, key: str = "shop.dsn") -> Dsn:
    """Split a DSN into its parts; a malformed or unsupported DSN is a ConfigError naming ``key``."""
    scheme, sep, rest = dsn.partition("://")
    dialect = _SCHEMES.get(scheme.lower()) if sep else None
    if dialect is None:
        shown = scheme if sep and scheme.isascii() and len(scheme) < 30 else "(none)"
        raise ConfigError(key, f"scheme {shown!r} is not supported by this version (supported: "
                               "sqlite:///file.db, mysql://user@host:port/db, postgresql://user@host:port/db)")
    if dialect == "sqlite":
        # sqlite:///relative.db and sqlite:////absolute/path.db, as SQLAlchemy writes them
        if not rest.startswith("/") or len(rest) < 2:
            raise ConfigError(key, "a SQLite DSN is sqlite:///relative/file.db or sqlite:////absolute/file.db")
        return Dsn(SQLITE, rest[1:])
    parts = urlsplit(f"{scheme}://{rest}")
    try:
        port = parts.port or _DEFAULT_PORTS[dialect]
    except ValueError:
        raise ConfigError(key, "the port is not a number between 1 and 65535") from None
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise ConfigError(key, f"name the database after the host, e.g. {scheme}://user@host:{port}/shop")
    if not parts.username:
        raise ConfigError(key, f"name the user, e.g. {scheme}://user@host:{port}/{database}")
    return Dsn(Dialect(dialect), database, host=parts.hostname or "127.0.0.1", port=port,
               user=unquote(parts.username), password=unquote(parts.password or ""))


class Connector:
    """Opens connections to one shop database; ``connector()`` is a DB-API connection."""

    def __init__(self, dsn: Dsn, zone: str, read_only: bool = True,
                 timeout: int = CONNECT_TIMEOUT_SECONDS, key: str = "shop.dsn") -> None:
        self.dsn = dsn
        self.dialect = dsn.dialect
        self.key = key
        self._zone = zone
        self._read_only = read_only
        self._timeout = timeout

    @property
    def zone(self) -> str:
        """The shop's wall-clock zone (PostgreSQL sessions run in it)."""
        return self._zone

    @property
    def read_only(self) -> bool:
        return self._read_only

    def __repr__(self) -> str:
        return f"Connector({self.dsn.where!r})"

    def redact(self, text: str) -> str:
        """``text`` without the password (and without any DSN-shaped password)."""
        return redact(text, [self.dsn.password])

    def __call__(self) -> Any:
        try:
            return self._open()
        except DB_ERRORS as exc:
            raise ShopError(f"cannot connect to the shop database {self.dsn.where} ({self.key}): "
                            f"{self.redact(_message(exc))}") from None
        except UnicodeEncodeError:
            # pymysql sends the password as Latin-1; its error would quote a character of it.
            raise ShopError(f"cannot connect to the shop database {self.dsn.where} ({self.key}): the password has "
                            "characters the MySQL driver cannot send (only Latin-1 ones)") from None

    def _open(self) -> Any:
        d = self.dsn
        if d.dialect.name == "sqlite":
            path = Path(d.database)
            if self._read_only:
                return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            return sqlite3.connect(path)
        if d.dialect.name == "mysql":
            # No session time_zone is set: dujiaoka writes TIMESTAMPs in the server's default session
            # zone, so reading in that same zone returns the PRC wall-clock values it wrote.
            return pymysql.connect(
                host=d.host, port=d.port, user=d.user, password=d.password, database=d.database,
                charset="utf8mb4", autocommit=False, connect_timeout=self._timeout,
                init_command="SET SESSION TRANSACTION READ ONLY" if self._read_only else None,
            )
        # PostgreSQL: the session zone is the shop's, so wall-clock bounds compare correctly with
        # timestamp, timestamptz and text columns alike.
        con = psycopg.connect(host=d.host, port=d.port, user=d.user, password=d.password or None, dbname=d.database,
                              connect_timeout=self._timeout, autocommit=False, options=f"-c TimeZone={self._zone}")
        con.read_only = self._read_only
        return con


def _message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def connector(dsn: str, zone: str, base: Callable[[Path], Path] | None = None, read_only: bool = True,
              key: str = "shop.dsn") -> Connector:
    """A connection factory for ``dsn``; relative SQLite paths are resolved with ``base``."""
    parsed = parse_dsn(dsn, key)
    if parsed.dialect.name == "sqlite" and base is not None:
        parsed = Dsn(SQLITE, str(base(Path(parsed.database))))
    return Connector(parsed, zone, read_only=read_only, key=key)


def stream_cursor(dialect: Dialect, con: Any) -> Any:
    """A cursor that streams a large result in batches instead of buffering it whole on our side.

    PostgreSQL: a named (server-side) cursor, fetched with FETCH FORWARD n. MySQL/MariaDB: pymysql's
    unbuffered SSCursor. SQLite steps through its result lazily anyway.
    """
    if dialect.name == "postgresql":
        cur = con.cursor(name=f"recon_shop_{secrets.token_hex(4)}")
        cur.itersize = STREAM_BATCH
        return cur
    if dialect.name == "mysql":
        return con.cursor(pymysql.cursors.SSCursor)
    return con.cursor()


def abandon(dialect: Dialect, con: Any, cur: Any | None) -> None:
    """Close ``con`` (ending its read-only transaction), and a cursor that an error left unfinished.

    MySQL cannot stop a result it is streaming: pymysql would read every remaining row to finish an
    unbuffered cursor (even from ``__del__``). Dropping the connection stops the server instead, so the
    abandoned result is marked finished first. A PostgreSQL named cursor is closed after its
    connection, which then needs no round trip.
    """
    if cur is not None and dialect.name == "mysql":
        result = getattr(cur, "_result", None)
        if result is not None and getattr(result, "unbuffered_active", False):
            result.unbuffered_active = False
        cur.connection = None
    con.close()
    if cur is not None and dialect.name == "postgresql":
        cur.close()
