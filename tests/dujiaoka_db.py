"""Throwaway dujiaoka databases on the real servers for the completion tests (private to them).

The DDL is dujiaoka's own (samples/dujiaoka_mysql.sql, read at test time). MariaDB runs it
verbatim; PostgreSQL and SQLite get a minimal mechanical translation (``bench.shop_ddl.translate``). Each
database has a random name and is dropped afterwards. An unreachable server fails the test.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

from bench.shop_ddl import ddl_statements, translate

MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
PG_DSN = "host=127.0.0.1 port=5432 user=postgres"
CREATED_AT = "2024-05-01 12:34:56"
# Notes MariaDB attaches to DROP … IF EXISTS of something absent: 1008 database, 1051 table.
EXPECTED_NOTES = {1008, 1051}


class ShopDb:
    """One throwaway dujiaoka database: a connection factory plus row helpers (``?`` placeholders)."""

    def __init__(self, dialect: str, connect: Callable[[], Any], name: str) -> None:
        self.dialect, self.connect, self.name = dialect, connect, name
        self._next_id = {"goods": 0, "orders": 0, "carmis": 0}

    def sql(self, text: str) -> str:
        return text if self.dialect == "sqlite" else text.replace("?", "%s")

    def run(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        con = self.connect()
        try:
            cur = con.cursor()
            cur.execute(self.sql(text), tuple(params))
            rows = [tuple(r) for r in cur.fetchall()] if cur.description else []
            con.commit()
            return rows
        finally:
            con.close()

    def _id(self, table: str) -> int:
        self._next_id[table] += 1
        return self._next_id[table]

    def money(self, value: Decimal) -> Any:
        return str(value) if self.dialect == "sqlite" else value

    def add_goods(self, name: str = "Steam 充值卡 ¥50", kind: int = 1, price: str = "50.00", in_stock: int = 0) -> int:
        gid = self._id("goods")
        self.run("INSERT INTO goods (id, group_id, gd_name, gd_description, gd_keywords, actual_price, in_stock,"
                 " sales_volume, type, created_at) VALUES (?, 1, ?, '', '', ?, ?, 0, ?, ?)",
                 (gid, name, self.money(Decimal(price)), in_stock, kind, CREATED_AT))
        return gid

    def add_cards(self, goods_id: int, *cards: str, loop: bool = False, status: int = 1) -> list[int]:
        ids = []
        for carmi in cards:
            cid = self._id("carmis")
            self.run("INSERT INTO carmis (id, goods_id, status, is_loop, carmi, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                     (cid, goods_id, status, 1 if loop else 0, carmi, CREATED_AT))
            ids.append(cid)
        return ids

    def add_order(self, goods_id: int, sn: str | None = None, status: int = 1, price: str = "50.00",
                  amount: int = 1, kind: int = 1, info: str = "", title: str = "Steam 充值卡 ¥50 x 1") -> str:
        oid = self._id("orders")
        sn = sn or f"DJ{secrets.token_hex(7).upper()}"
        self.run("INSERT INTO orders (id, order_sn, goods_id, title, type, goods_price, buy_amount, total_price,"
                 " actual_price, email, info, buy_ip, trade_no, status, created_at)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'buyer@example.com', ?, '127.0.0.1', '', ?, ?)",
                 (oid, sn, goods_id, title, kind, self.money(Decimal(price)), amount,
                  self.money(Decimal(price) * amount), self.money(Decimal(price) * amount), info, status,
                  CREATED_AT))
        return sn

    def order(self, sn: str) -> dict[str, Any]:
        cols = ("id", "status", "info", "trade_no", "actual_price", "updated_at")
        price = "CAST(actual_price AS TEXT)" if self.dialect == "sqlite" else "actual_price"
        row = self.run(f"SELECT id, status, info, trade_no, {price}, updated_at FROM orders WHERE order_sn = ?",
                       (sn,))[0]
        out = dict(zip(cols, row, strict=True))
        out["actual_price"] = Decimal(str(out["actual_price"]))
        return out

    def cards(self, goods_id: int) -> dict[str, int]:
        """carmi → status for the goods' cards."""
        return {str(c): int(s) for c, s in self.run("SELECT carmi, status FROM carmis WHERE goods_id = ?"
                                                    " ORDER BY id", (goods_id,))}

    def goods(self, goods_id: int) -> tuple[int, int]:
        sales, stock = self.run("SELECT sales_volume, in_stock FROM goods WHERE id = ?", (goods_id,))[0]
        return int(sales), int(stock)

    def snapshot(self) -> list[list[tuple[Any, ...]]]:
        """Every row of the three tables, to prove that nothing changed."""
        return [self.run(f"SELECT * FROM {t} ORDER BY id") for t in ("orders", "carmis", "goods")]


def mysql_root(database: str | None = None) -> pymysql.connections.Connection:
    try:
        return pymysql.connect(**MYSQL, database=database, charset="utf8mb4", autocommit=False)
    except pymysql.err.OperationalError as exc:
        pytest.fail(f"MariaDB at {MYSQL['host']}:{MYSQL['port']} is unreachable: {exc}", pytrace=False)


def _checked(cur: Any, statement: str) -> None:
    """Run one statement; a server warning other than an expected DROP … IF EXISTS note fails the test."""
    cur.execute(statement)
    if cur.warning_count:
        notes = cur.connection.show_warnings() or ()
        unexpected = [n for n in notes if not (statement.upper().startswith("DROP ") and n[1] in EXPECTED_NOTES)]
        if unexpected:
            raise AssertionError(f"MariaDB warned on {statement[:60]!r}: {unexpected}")


@contextmanager
def mysql_db() -> Iterator[ShopDb]:
    name = f"recon_dj_{secrets.token_hex(6)}"
    admin = mysql_root()
    try:
        cur = admin.cursor()
        _checked(cur, f"DROP DATABASE IF EXISTS `{name}`")
        _checked(cur, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        cur.execute(f"USE `{name}`")
        for statement in ddl_statements():
            _checked(cur, statement)
        admin.commit()
        yield ShopDb("mysql", lambda: mysql_root(name), name)
    finally:
        _checked(admin.cursor(), f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


def pg_connect(dbname: str = "postgres", autocommit: bool = False) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(f"{PG_DSN} dbname={dbname}", autocommit=autocommit)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is unreachable: {exc}", pytrace=False)


@contextmanager
def postgres_db() -> Iterator[ShopDb]:
    name = f"recon_dj_{secrets.token_hex(6)}"
    with pg_connect(autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            with pg_connect(name) as con:
                for statement in ddl_statements():
                    for part in translate(statement, "postgresql"):
                        con.execute(part)  # type: ignore[arg-type]
                con.commit()
            yield ShopDb("postgresql", lambda: pg_connect(name), name)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def sqlite_db(directory: Path) -> Iterator[ShopDb]:
    path = directory / f"dujiaoka_{secrets.token_hex(4)}.sqlite"
    con = sqlite3.connect(path)
    for statement in ddl_statements():
        for part in translate(statement, "sqlite"):
            con.execute(part)
    con.close()
    yield ShopDb("sqlite", lambda: sqlite3.connect(path, timeout=30), str(path))


@contextmanager
def shop_db(dialect: str, directory: Path) -> Iterator[ShopDb]:
    factory = {"mysql": mysql_db, "postgresql": postgres_db}
    with (sqlite_db(directory) if dialect == "sqlite" else factory[dialect]()) as db:
        yield db


def dujiaoka_unlocked(db: ShopDb, sn: str, amount: Decimal, trade_no: str,
                      holding: Callable[[], None] | None = None) -> str:
    """dujiaoka's own completedOrder/processAuto as SQL: plain SELECTs, only a status == 4 guard, no locks.

    ``holding`` runs after the order and card updates, before COMMIT (the row locks are held then).
    Returns "completed", "abnormal" or dujiaoka's refusal text.
    """
    con = db.connect()
    try:
        cur = con.cursor()
        q = db.sql
        cur.execute(q("SELECT id, status, goods_id, buy_amount, actual_price FROM orders"
                      " WHERE order_sn = ? AND deleted_at IS NULL"), (sn,))
        row = cur.fetchone()
        if row is None:
            con.rollback()
            return "订单不存在"
        oid, status, goods_id, n, price = row
        if int(status) == 4:
            con.rollback()
            return "订单已经处理"
        if Decimal(str(price)) != amount:
            con.rollback()
            return "订单金额不一致"
        cur.execute(q("SELECT id, carmi FROM carmis WHERE goods_id = ? AND status = 1 AND deleted_at IS NULL"
                      " LIMIT ?"), (goods_id, n))
        cards = cur.fetchall()
        if len(cards) != n:
            cur.execute(q("UPDATE orders SET status = 6, info = ?, trade_no = ? WHERE id = ?"),
                        ("库存可使用卡密不足，请联系管理员核查", trade_no, oid))
            result = "abnormal"
        else:
            cur.execute(q("UPDATE orders SET status = 4, info = ?, trade_no = ? WHERE id = ?"),
                        ("\n".join(str(c) for _, c in cards), trade_no, oid))
            marks = ", ".join("?" for _ in cards)
            cur.execute(q(f"UPDATE carmis SET status = 2 WHERE id IN ({marks}) AND is_loop = 0"),
                        [cid for cid, _ in cards])
            result = "completed"
        cur.execute(q("UPDATE goods SET sales_volume = sales_volume + ? WHERE id = ?"), (n, goods_id))
        if holding:
            holding()
        con.commit()
        return result
    finally:
        con.close()
