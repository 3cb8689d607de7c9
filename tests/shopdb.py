"""Throwaway shop databases on the live MariaDB and PostgreSQL servers (CI starts both; `.ci/run`).

Fixtures (import them into a test module: ``from tests.shopdb import mariadb_dujiaoka, postgres_database``):

* ``mariadb_dujiaoka`` → ``ShopDb``: a fresh MariaDB database with dujiaoka's real DDL
  (``samples/dujiaoka_mysql.sql``) loaded; ``mariadb_database`` → the same without tables.
* ``postgres_database`` → ``ShopDb``: a fresh, empty PostgreSQL database (``PG_DUJIAOKA_ORDERS`` is
  dujiaoka's orders table for it).

A ``ShopDb`` unpacks as ``(dsn, connect)`` (and has ``.name``): ``dsn`` is what goes into ``[shop] dsn`` (no password),
``connect()`` opens a read-write connection (pymysql with utf8mb4, or psycopg) that the caller closes.
Each database is named ``recon_test_<hex>`` and dropped afterwards. The same are available outside
pytest as context managers (``mariadb_db``, ``postgres_db``). An unreachable server FAILS the test with
a message saying so; nothing is skipped.

Seeding helpers for dujiaoka's tables (MySQL placeholders): ``insert_order``, ``insert_orders`` (bulk),
``insert_goods``, ``insert_carmis``, ``insert_pay``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import psycopg
import pymysql
import pytest

ROOT = Path(__file__).resolve().parent.parent
DUJIAOKA_DDL = ROOT / "samples" / "dujiaoka_mysql.sql"
MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
CONNECT_TIMEOUT = 5
# dujiaoka's orders table on PostgreSQL (the columns recon reads, with the same types and nullability).
PG_DUJIAOKA_ORDERS = """
CREATE TABLE orders (id bigserial PRIMARY KEY, order_sn varchar(150) NOT NULL UNIQUE, goods_id int NOT NULL,
  title varchar(200) NOT NULL, type smallint NOT NULL DEFAULT 1, actual_price decimal(10,2) NOT NULL DEFAULT 0,
  buy_amount int NOT NULL DEFAULT 1, email varchar(200) NOT NULL, pay_id int, trade_no varchar(200) DEFAULT '',
  status smallint NOT NULL DEFAULT 1, created_at timestamp NULL, updated_at timestamp NULL, deleted_at timestamp NULL)
"""


class ShopDb(NamedTuple):
    dsn: str
    connect: Callable[[], Any]

    @property
    def name(self) -> str:
        """The database's name (the DSN's last part)."""
        return self.dsn.rsplit("/", 1)[1]


def _unreachable(server: str, where: str, exc: BaseException) -> NoReturn:
    pytest.fail(f"{server} is not reachable at {where} ({type(exc).__name__}: {exc}). These tests need the "
                f"live server; CI starts it (.ci/run). Start it locally and rerun.", pytrace=False)


def split_sql(script: str) -> list[str]:
    """A MySQL script as statements: splits on ``;`` outside quotes, backticks and comments."""
    statements: list[str] = []
    current: list[str] = []
    quote: str | None = None
    i, n = 0, len(script)
    while i < n:
        ch = script[i]
        if quote:
            current.append(ch)
            if ch == "\\" and quote != "`" and i + 1 < n:
                current.append(script[i + 1])
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'\"`":
            quote = ch
            current.append(ch)
        elif script.startswith("-- ", i) or script.startswith("--\n", i) or ch == "#":
            i = script.find("\n", i)
            if i < 0:
                break
            continue
        elif script.startswith("/*", i):
            end = script.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        elif ch == ";":
            statements.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
        i += 1
    statements.append("".join(current).strip())
    return [s for s in statements if s]


def run_mysql_script(con: Any, script: str) -> None:
    """Run every statement; ``DROP … IF EXISTS`` of an absent object runs with MySQL notes off, so
    the expected 'Unknown table' note (1051) is not raised as a warning, and no other note is hidden."""
    with con.cursor() as cur:
        for statement in split_sql(script):
            quiet = statement.upper().startswith("DROP ") and " IF EXISTS " in statement.upper()
            if quiet:
                cur.execute("SET SESSION sql_notes = 0")
            try:
                cur.execute(statement)
            finally:
                if quiet:
                    cur.execute("SET SESSION sql_notes = 1")
    con.commit()


def _mysql(database: str | None = None) -> Any:
    return pymysql.connect(**MARIADB, database=database, charset="utf8mb4", autocommit=False,
                           connect_timeout=CONNECT_TIMEOUT)


@contextmanager
def mariadb_db(script: Path | None = None) -> Iterator[ShopDb]:
    """A fresh MariaDB database (optionally with ``script`` run in it), dropped afterwards."""
    name = f"recon_test_{secrets.token_hex(6)}"
    try:
        admin = _mysql()
    except pymysql.err.OperationalError as exc:
        _unreachable("MariaDB", f"{MARIADB['host']}:{MARIADB['port']} as {MARIADB['user']}", exc)
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        connect: Callable[[], Any] = lambda: _mysql(name)  # noqa: E731
        if script is not None:
            con = connect()
            try:
                run_mysql_script(con, script.read_text(encoding="utf-8"))
            finally:
                con.close()
        yield ShopDb(f"mysql://{MARIADB['user']}@{MARIADB['host']}:{MARIADB['port']}/{name}", connect)
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE `{name}`")
        admin.close()


@contextmanager
def postgres_db() -> Iterator[ShopDb]:
    """A fresh PostgreSQL database, dropped afterwards (with any connection still open to it)."""
    name = f"recon_test_{secrets.token_hex(6)}"
    try:
        admin = psycopg.connect(**POSTGRES, dbname="postgres", autocommit=True, connect_timeout=CONNECT_TIMEOUT)
    except psycopg.OperationalError as exc:
        _unreachable("PostgreSQL", f"{POSTGRES['host']}:{POSTGRES['port']} as {POSTGRES['user']}", exc)
    try:
        admin.execute(f'CREATE DATABASE "{name}"')

        def connect() -> psycopg.Connection[Any]:
            return psycopg.connect(**POSTGRES, dbname=name, connect_timeout=CONNECT_TIMEOUT)

        yield ShopDb(f"postgresql://{POSTGRES['user']}@{POSTGRES['host']}:{POSTGRES['port']}/{name}", connect)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def mariadb_database() -> Iterator[ShopDb]:
    with mariadb_db() as db:
        yield db


@pytest.fixture
def mariadb_dujiaoka() -> Iterator[ShopDb]:
    with mariadb_db(DUJIAOKA_DDL) as db:
        yield db


@pytest.fixture
def postgres_database() -> Iterator[ShopDb]:
    with postgres_db() as db:
        yield db


# --- dujiaoka rows (MySQL/MariaDB) ----------------------------------------------------------------

ORDER_COLUMNS = ("order_sn", "goods_id", "title", "type", "goods_price", "buy_amount", "total_price",
                 "actual_price", "email", "pay_id", "buy_ip", "trade_no", "status", "info", "created_at",
                 "updated_at", "deleted_at")


def order_row(sn: str, amount: str, status: int = 4, pay_id: int | None = 1, trade_no: str = "",
              created: str = "2026-11-20 10:00:00", updated: str | None = None, goods_type: int = 1,
              goods_id: int = 1, quantity: int = 1, email: str | None = None, info: str | None = None,
              deleted: str | None = None) -> tuple[Any, ...]:
    """One orders row in ORDER_COLUMNS order; times are PRC wall-clock text, as dujiaoka writes them."""
    return (sn, goods_id, "t", goods_type, amount, quantity, amount, amount, email or f"{sn.lower()}@example.com",
            pay_id, "127.0.0.1", trade_no, status, info, created, updated or created, deleted)


def insert_orders(con: Any, rows: Sequence[tuple[Any, ...]]) -> None:
    """Many ``order_row`` rows at once (pymysql batches them into multi-row INSERTs)."""
    marks = ", ".join(["%s"] * len(ORDER_COLUMNS))
    with con.cursor() as cur:
        cur.executemany(f"INSERT INTO orders ({', '.join(ORDER_COLUMNS)}) VALUES ({marks})", list(rows))
    con.commit()


def insert_order(con: Any, sn: str, amount: str, **fields: Any) -> None:
    insert_orders(con, [order_row(sn, amount, **fields)])


def insert_goods(con: Any, goods_id: int, name: str, price: str, goods_type: int = 1, in_stock: int = 0) -> None:
    with con.cursor() as cur:
        cur.execute("INSERT INTO goods (id, group_id, gd_name, gd_description, gd_keywords, actual_price, "
                    "retail_price, type, in_stock, created_at, updated_at) "
                    "VALUES (%s, 1, %s, '', '', %s, %s, %s, %s, NOW(), NOW())",
                    [goods_id, name, price, price, goods_type, in_stock])
    con.commit()


def insert_carmis(con: Any, goods_id: int, cards: Sequence[str], status: int = 1, is_loop: int = 0) -> None:
    with con.cursor() as cur:
        cur.executemany("INSERT INTO carmis (goods_id, status, is_loop, carmi, created_at, updated_at) "
                        "VALUES (%s, %s, %s, %s, NOW(), NOW())", [(goods_id, status, is_loop, c) for c in cards])
    con.commit()


def insert_pay(con: Any, pay_id: int, name: str, check: str, route: str = "/pay/alipay", is_open: int = 1) -> None:
    with con.cursor() as cur:
        cur.execute("INSERT INTO pays (id, pay_name, pay_check, pay_method, pay_client, merchant_id, merchant_key, "
                    "merchant_pem, pay_handleroute, is_open, created_at, updated_at) "
                    "VALUES (%s, %s, %s, 1, 3, '', '', '', %s, %s, NOW(), NOW())", [pay_id, name, check, route, is_open])
    con.commit()
