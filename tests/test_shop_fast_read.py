"""The fast window read (connectorx, recon/shops/fast.py) against the driver read, on the live MariaDB and PostgreSQL.

Every comparison reads the same window twice from the same database, once through connectorx and once
through the DB-API driver (``shop.fast_window = False``), and wants identical frames: exact decimals, NULLs,
soft-deleted rows left out, Chinese text, rows exactly at the window's edges, a zone without DST and one with it.
"""

from __future__ import annotations

import secrets
import traceback
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import connectorx
import polars as pl
import pymysql
import pytest
from polars.testing import assert_frame_equal

from recon.config import Config, load_config
from recon.errors import ShopError
from recon.secrets import secret_forms
from recon.shops import SHOP_SCHEMA, open_shop
from recon.shops import fast
from recon.shops.base import ShopAdapter
from recon.shops.connect import connector
from recon.shops.sql import SqlShop
from tests.scenario import CHANNEL_TOML
from tests.shopdb import (
    MARIADB,
    PG_DUJIAOKA_ORDERS,
    ShopDb,
    insert_orders,
    mariadb_database,  # noqa: F401 (fixture)
    mariadb_dujiaoka,  # noqa: F401 (fixture)
    order_row,
    postgres_database,  # noqa: F401 (fixture)
)

CHANNEL = CHANNEL_TOML.format(extra="") + "[reports]\nformats = []\n"
# A day without DST changes in Shanghai, and the day Berlin falls back (02:00-03:00 happens twice).
DAYS = {"Asia/Shanghai": date(2026, 11, 20), "Europe/Berlin": date(2026, 10, 25)}
PASSWORD = "Fa5t:P@ss/w0rd%+ &=\"x"  # changes when URL-quoted, JSON-escaped, base64-encoded
STATUS_MAP = '{ "0" = "pending", "2" = "delivered", "5" = "refunded" }'


def write_config(folder: Path, shop: str, zone: str = "Asia/Shanghai") -> Config:
    (folder / "recon.toml").write_text(f'[store]\npath = "recon.duckdb"\n\n[shop]\n{shop}\nzone = "{zone}"\n{CHANNEL}',
                                       encoding="utf-8")
    return load_config(folder / "recon.toml")


def window(day: date, zone: str) -> tuple[datetime, datetime]:
    """The business day in ``zone`` as UTC instants [start, end)."""
    start = datetime.combine(day, datetime.min.time(), ZoneInfo(zone))
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), ZoneInfo(zone))
    return start.astimezone(UTC), end.astimezone(UTC)


def both(shop: ShopAdapter, start: datetime, end: datetime) -> pl.DataFrame:
    """The window through connectorx, checked equal to the driver's read of it; the fast one."""
    assert isinstance(shop, SqlShop) and shop.fast_window is True
    fast_frame = shop.orders_created_between(start, end).sort("order_no")
    shop.fast_window = False
    try:
        driver_frame = shop.orders_created_between(start, end).sort("order_no")
    finally:
        shop.fast_window = True
    assert fast_frame.schema == pl.Schema(SHOP_SCHEMA)
    assert_frame_equal(fast_frame, driver_frame)
    return fast_frame


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements connectorx was given (it still runs them): proves the fast path was taken."""
    seen: list[str] = []
    real = connectorx.read_sql

    def spy(conn: Any, query: Any, **kwargs: Any) -> Any:
        seen.append(query)
        return real(conn, query, **kwargs)

    monkeypatch.setattr(connectorx, "read_sql", spy)
    return seen


def rows_of_day(day: date) -> list[tuple[Any, ...]]:
    """(sn, price, state, gateway, txid, made, settled, settled_text, settled_day, mail, qty, title, deleted_at)."""
    d, nxt, prev = day.isoformat(), (day + timedelta(days=1)).isoformat(), (day - timedelta(days=1)).isoformat()
    return [
        ("EDGE-START", "1.00", 2, "bank", "T1", f"{d} 00:00:00", f"{d} 00:00:05", f"{d}T00:00:05Z", d,
         "a@example.com", 1, "t", None),
        ("EDGE-END-1US", "2.00", 2, "bank", "T2", f"{d} 23:59:59.999999", f"{d} 23:59:59", f"{d} 23:59:59.5",
         d, "b@example.com", 1, "t", None),
        ("EDGE-END", "3.00", 2, "bank", "T3", f"{nxt} 00:00:00", None, None, None, "c@example.com", 1, "t", None),
        ("BEFORE", "4.00", 2, "bank", "T4", f"{prev} 23:59:59.999999", None, None, None, "d@example.com", 1, "t",
         None),
        ("DEC-010", "0.10", 2, "bank", "T5", f"{d} 09:00:00", f"{d} 09:00:01", "garbage", d, "e@example.com", 2,
         "t", None),
        ("DEC-MAX", "99999999.999999", 2, "bank", "T6", f"{d} 10:00:00.250000", f"{d} 10:00:01", "", d,
         "f@example.com", 1, "t", None),
        ("DEC-MIN", "0.000001", 5, "bank", "T7", f"{d} 11:00:00", "2026-03-29 02:30:00", "2026-03-29 02:30:00",
         "2026-03-29", "g@example.com", 1, "t", None),  # 02:30 does not exist in Berlin that day
        ("NEG", "-1.50", 5, "bank", "T8", f"{d} 12:00:00", "2026-10-25 02:30:00", "2026-10-25 02:30:00",
         "2026-10-25", "h@example.com", 1, "t", None),  # 02:30 happens twice in Berlin that day
        ("AMBIGUOUS", "5.00", 2, "bank", "T9", "2026-10-25 02:30:00" if day.month == 10 else f"{d} 02:30:00",
         None, None, None, "i@example.com", 1, "t", None),
        ("NULLS", "6.00", 0, None, None, f"{d} 13:00:00", None, None, None, None, None, None, None),
        ("EMPTY-TXID", "7.00", 0, "", "", f"{d} 14:00:00", None, None, None, "j@example.com", 1, "", None),
        ("订单-中文-01", "8.88", 2, "支付宝", "T10", f"{d} 15:00:00", f"{d} 15:00:01", None, None,
         "买家@例子.中国", 1, "点卡 月卡 🎮 «test»", None),
        ("DELETED", "9.00", 2, "bank", "T11", f"{d} 16:00:00", None, None, None, "k@example.com", 1, "t",
         f"{d} 17:00:00"),
        ("NOMAIL", "9.50", 2, "bank", "T12", f"{d} 16:30:00", None, None, None, "no-at-sign", 1, "t", None),
    ]


EXPECTED = ["AMBIGUOUS", "DEC-010", "DEC-MAX", "DEC-MIN", "EDGE-END-1US", "EDGE-START", "EMPTY-TXID", "NEG",
            "NULLS", "订单-中文-01"]  # not EDGE-END, BEFORE (outside), DELETED (soft-deleted), NOMAIL (the query's LIKE)
SALES_QUERY = "SELECT * FROM sales WHERE deleted_at IS NULL AND (mail IS NULL OR mail LIKE '%@%')"


def sql_shop(dsn: str, created: str, paid: str) -> str:
    return f'''kind = "sql"
dsn = "{dsn}"
query = "{SALES_QUERY}"
columns = {{ order_no = "sn", amount = "price", status = "state", pay_method = "gateway", channel_txn_id = "txid", created_at = "{created}", paid_at = "{paid}", buyer_contact = "mail", quantity = "qty", title = "title" }}
status_map = {STATUS_MAP}'''


def check_values(frame: pl.DataFrame, day: date, zone: str) -> None:
    """What the window must hold, beyond fast == driver."""
    assert frame["order_no"].to_list() == EXPECTED
    rows = {r["order_no"]: r for r in frame.to_dicts()}
    assert rows["DEC-010"]["amount"] == Decimal("0.10") and str(rows["DEC-010"]["amount"]) == "0.100000"
    assert str(rows["DEC-MAX"]["amount"]) == "99999999.999999"
    assert (str(rows["DEC-MIN"]["amount"]), str(rows["NEG"]["amount"])) == ("0.000001", "-1.500000")
    local = ZoneInfo(zone)
    assert rows["EDGE-START"]["created_at"] == window(day, zone)[0]
    assert rows["EDGE-END-1US"]["created_at"] == window(day, zone)[1] - timedelta(microseconds=1)
    assert rows["DEC-MAX"]["created_at"].microsecond == 250_000
    assert rows["NULLS"]["paid_at"] is None and rows["NULLS"]["channel_txn_id"] is None
    assert rows["NULLS"]["pay_method"] is None and rows["NULLS"]["quantity"] is None
    assert rows["EMPTY-TXID"]["channel_txn_id"] is None
    assert rows["订单-中文-01"]["title"] == "点卡 月卡 🎮 «test»" and rows["订单-中文-01"]["pay_method"] == "支付宝"
    assert rows["订单-中文-01"]["buyer_contact"] == "买家@例子.中国"
    assert rows["NEG"]["status"] == "refunded" and rows["NULLS"]["status"] == "pending"
    if zone == "Europe/Berlin":  # 02:30 twice: the earlier (CEST, UTC+2)
        assert rows["AMBIGUOUS"]["created_at"] == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    else:
        assert rows["AMBIGUOUS"]["created_at"] == datetime.combine(day, datetime.min.time(), local).replace(
            hour=2, minute=30).astimezone(UTC)


# --- MariaDB ------------------------------------------------------------------------------------

MARIADB_SALES = """CREATE TABLE sales (id int AUTO_INCREMENT PRIMARY KEY, sn varchar(64) NOT NULL,
  price decimal(20,6) NOT NULL, state tinyint NOT NULL, gateway varchar(20) NULL, txid varchar(64) NULL,
  made datetime(6) NOT NULL, settled timestamp NULL DEFAULT NULL, settled_text varchar(40) NULL, settled_day date NULL,
  mail varchar(100) NULL, qty int NULL, title text NULL, deleted_at datetime NULL) CHARACTER SET utf8mb4"""
SALES_COLUMNS = ("sn", "price", "state", "gateway", "txid", "made", "settled", "settled_text", "settled_day", "mail",
                 "qty", "title", "deleted_at")


def seed_mariadb_sales(db: ShopDb, day: date) -> None:
    con = db.connect()
    try:
        with con.cursor() as cur:
            cur.execute(MARIADB_SALES)
            cur.executemany(f"INSERT INTO sales ({', '.join(SALES_COLUMNS)}) VALUES ({', '.join(['%s'] * 13)})",
                            rows_of_day(day))
            # MySQL's zero date in a TIMESTAMP column: the driver reads text, both reads make it NULL
            cur.execute("INSERT INTO sales (sn, price, state, made, settled, mail) "
                        f"VALUES ('ZERO', 1, 2, '{day} 18:00:00', '0000-00-00 00:00:00', 'z@x')")
        con.commit()
    finally:
        con.close()


@pytest.mark.parametrize("zone", list(DAYS))
def test_a_configured_select_on_mariadb_reads_the_same_fast(mariadb_database: ShopDb, tmp_path: Path, zone: str,
                                                            counted: list[str]) -> None:
    day = DAYS[zone]
    seed_mariadb_sales(mariadb_database, day)
    start, end = window(day, zone)
    for paid in ("settled", "settled_text", "settled_day"):
        shop = open_shop(write_config(tmp_path, sql_shop(mariadb_database.dsn, "made", paid), zone))
        frame = both(shop, start, end)
        check_values(frame.filter(pl.col("order_no") != "ZERO"), day, zone)
        assert frame.filter(pl.col("order_no") == "ZERO")["paid_at"].to_list() == [None]
        paid_at = dict(zip(frame["order_no"], frame["paid_at"], strict=True))
        if paid == "settled_text":  # text: 'T' and 'Z' dropped, fraction cut, nonsense → NULL, as the driver reads
            assert paid_at["EDGE-START"] == start + timedelta(seconds=5)
            assert paid_at["DEC-010"] is None and paid_at["DEC-MAX"] is None
        if paid == "settled_day":
            assert paid_at["EDGE-START"] == start
        if zone == "Europe/Berlin" and paid != "settled_day":
            assert paid_at["DEC-MIN"] is None  # 02:30 that never happened
            assert paid_at["NEG"] == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert len(counted) == 3 and all("LIKE '%@%'" in q for q in counted)  # the query as written, not %-doubled


DUJIAOKA_SEED = [  # sn, amount, status, trade_no, created, updated, title, deleted
    ("DJ-START", "0.10", 1, "", "{d} 00:00:00", None, "点卡", None),
    ("DJ-PAID", "99999999.99", 4, "T2", "{d} 09:30:00", "{d} 09:31:15", "月卡 🎮", None),
    ("DJ-MANUAL", "12.34", 2, "T3", "{d} 10:00:00", "{d} 10:00:30", "代充", None),
    ("DJ-NOSTOCK", "7.77", 6, "T4", "{d} 23:59:59", "{d} 23:59:59", "t", None),
    ("DJ-EXPIRED", "5.00", -1, "", "{d} 02:30:00", "{d} 03:00:00", "t", None),
    ("DJ-ZERO", "1.00", 4, "T6", "{d} 12:00:00", "0000-00-00 00:00:00", "t", None),
    ("DJ-GONE", "3.00", 4, "TG", "{d} 13:00:00", None, "t", "{d} 14:00:00"),
    ("DJ-NEXT", "5.00", 4, "T8", "{n} 00:00:00", None, "t", None),
    ("DJ-PREV", "5.00", 4, "T9", "{p} 23:59:59", None, "t", None),
]


@pytest.mark.parametrize("zone, batch", [("Asia/Shanghai", 100_000), ("Europe/Berlin", 100_000), ("Asia/Shanghai", 2)])
def test_dujiaoka_on_mariadb_reads_the_same_fast(mariadb_dujiaoka: ShopDb, tmp_path: Path, zone: str, batch: int,
                                                 counted: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast, "ARROW_BATCH", batch)  # 2: many Arrow batches, some with paid_at all NULL
    day = DAYS[zone]
    fill = {"d": day, "n": day + timedelta(days=1), "p": day - timedelta(days=1)}
    con = mariadb_dujiaoka.connect()
    try:
        insert_orders(con, [order_row(sn, amount, status=status, trade_no=trade, created=created.format(**fill),
                                      updated=updated and updated.format(**fill),
                                      deleted=deleted and deleted.format(**fill),
                                      goods_type=2 if status == 2 else 1)
                            for sn, amount, status, trade, created, updated, _, deleted in DUJIAOKA_SEED])
        with con.cursor() as cur:
            cur.executemany("UPDATE orders SET title = %s WHERE order_sn = %s",
                            [(title, sn) for sn, *_, title, _ in DUJIAOKA_SEED])
        con.commit()
    finally:
        con.close()
    shop = open_shop(write_config(tmp_path, f'kind = "dujiaoka"\ndsn = "{mariadb_dujiaoka.dsn}"', zone))
    frame = both(shop, *window(day, zone))
    assert frame["order_no"].to_list() == ["DJ-EXPIRED", "DJ-MANUAL", "DJ-NOSTOCK", "DJ-PAID", "DJ-START", "DJ-ZERO"]
    rows = {r["order_no"]: r for r in frame.to_dicts()}
    assert str(rows["DJ-PAID"]["amount"]) == "99999999.990000" and str(rows["DJ-START"]["amount"]) == "0.100000"
    assert rows["DJ-PAID"]["title"] == "月卡 🎮" and rows["DJ-MANUAL"]["goods_kind"] == "manual"
    assert rows["DJ-START"]["paid_at"] is None and rows["DJ-ZERO"]["paid_at"] is None
    assert rows["DJ-START"]["channel_txn_id"] is None and rows["DJ-START"]["created_at"] == window(day, zone)[0]
    assert len(counted) == 1
    empty = both(shop, *window(day + timedelta(days=30), zone))
    assert empty.height == 0


def test_the_fast_sessions_are_read_only_and_in_the_shop_zone(mariadb_database: ShopDb,
                                                              postgres_database: ShopDb) -> None:
    my = connector(mariadb_database.dsn, "Asia/Shanghai")
    [frame] = fast.read_batches(my, "t", "SELECT IF(@@session.tx_read_only, 'on', 'off') AS ro, "
                                         "CAST(@@session.time_zone AS CHAR) AS tz", {})
    assert frame.rows() == [("on", "SYSTEM")]  # the server's default zone, as the driver's session has it
    pg = connector(postgres_database.dsn, "Europe/Berlin")
    [frame] = fast.read_batches(pg, "t", "SELECT current_setting('transaction_read_only') AS ro, "
                                         "current_setting('TimeZone') AS tz", {})
    assert frame.rows() == [("on", "Europe/Berlin")]


@pytest.fixture
def mariadb_user(mariadb_database: ShopDb) -> Iterator[str]:
    """A user of the test database that needs PASSWORD; yields its DSN without the password."""
    user = f"recon_fast_{secrets.token_hex(4)}"
    admin = pymysql.connect(**MARIADB, autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", [user, PASSWORD])
            cur.execute(f"GRANT SELECT ON `{mariadb_database.name}`.* TO %s@'%%'", [user])
        yield mariadb_database.dsn.replace("root@", f"{user}@")
    finally:
        with admin.cursor() as cur:
            cur.execute("DROP USER IF EXISTS %s@'%%'", [user])
        admin.close()


def shown(caught: pytest.ExceptionInfo[ShopError]) -> str:
    return "".join(traceback.format_exception(caught.value)) + repr(caught.value)


def assert_no_password(text: str) -> None:
    for form in secret_forms(PASSWORD):
        assert form not in text


def test_a_password_travels_to_connectorx_and_never_back(mariadb_database: ShopDb, mariadb_user: str,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         counted: list[str]) -> None:
    seed_mariadb_sales(mariadb_database, DAYS["Asia/Shanghai"])
    with_password = mariadb_user.replace("@", f":{quote(PASSWORD, safe='')}@", 1)
    monkeypatch.setenv("RECON_TEST_SHOP_DSN", with_password)
    config = write_config(tmp_path, sql_shop("env:RECON_TEST_SHOP_DSN", "made", "settled"))
    check_values(both(open_shop(config), *window(DAYS["Asia/Shanghai"], "Asia/Shanghai")).filter(
        pl.col("order_no") != "ZERO"), DAYS["Asia/Shanghai"], "Asia/Shanghai")
    assert counted
    # a query that fails only once rows flow (the probe of its columns reads none): connectorx's own error
    failing = sql_shop("env:RECON_TEST_SHOP_DSN", "made", "settled").replace(
        "SELECT * FROM sales", "SELECT sales.*, (SELECT 1 UNION SELECT 2) AS boom FROM sales").replace(
        'title = "title"', 'title = "boom"')
    shop = open_shop(write_config(tmp_path, failing))
    said = r"^shop 'sql': query failed: ERROR 1242 \(21000\): Subquery returns more than 1 row$"
    with pytest.raises(ShopError, match=said) as caught:
        shop.orders_created_between(*window(DAYS["Asia/Shanghai"], "Asia/Shanghai"))
    assert_no_password(shown(caught))
    # a wrong password, and no server at all: the config key, never the password
    monkeypatch.setenv("RECON_TEST_SHOP_DSN", with_password.replace("Fa5t", "Slow"))
    with pytest.raises(ShopError, match=r"cannot connect to the shop database mysql://recon_fast_\w+@127\.0\.0\.1:3306/"
                                        r"\w+ \(shop\.dsn\): .*Access denied") as caught:
        open_shop(config).orders_created_between(*window(DAYS["Asia/Shanghai"], "Asia/Shanghai"))
    assert_no_password(shown(caught).replace(PASSWORD.replace("Fa5t", "Slow"), ""))
    monkeypatch.setenv("RECON_TEST_SHOP_DSN", with_password.replace("Fa5t", quote("密", safe="")))
    with pytest.raises(ShopError, match=r"\(shop\.dsn\): the password has characters the MySQL driver cannot send"):
        open_shop(config).orders_created_between(*window(DAYS["Asia/Shanghai"], "Asia/Shanghai"))
    monkeypatch.setenv("RECON_TEST_SHOP_DSN", with_password.replace(":3306/", ":1/"))
    refused = r"cannot connect to the shop database mysql://\S+:1/\S+ \(shop\.dsn\)"
    with pytest.raises(ShopError, match=refused) as caught:
        open_shop(config).orders_created_between(*window(DAYS["Asia/Shanghai"], "Asia/Shanghai"))
    assert_no_password(shown(caught))


def test_connectorx_errors_are_redacted() -> None:
    """Whatever connectorx puts in a message (its URI, the password in any encoding) is not shown."""
    c = connector(f"mysql://shop:{quote(PASSWORD, safe='')}@db.example:3306/shop", "Asia/Shanghai")
    for form in secret_forms(PASSWORD) | {fast.uri(c)}:
        error = fast._error(c, "sql", RuntimeError(f"timed out waiting for connection: no luck with {form} here"))
        assert str(error).startswith("cannot connect to the shop database mysql://shop@db.example:3306/shop (shop.dsn)")
        assert_no_password(str(error))
    error = fast._error(c, "sql", RuntimeError(f"MySqlError {{ ERROR 1064 {fast.uri(c)} }}"))
    assert str(error) == "shop 'sql': query failed: ERROR 1064 mysql://shop@db.example:3306/shop"


def test_the_connectorx_uri_quotes_every_part() -> None:
    c = connector(f"postgresql://u%40x:{quote(PASSWORD, safe='')}@[::1]:6543/db%20name", "Asia/Shanghai")
    assert fast.uri(c) == f"postgresql://u%40x:{quote(PASSWORD, safe='')}@[::1]:6543/db%20name"
    assert fast.uri(connector("mysql://root@127.0.0.1/shop", "UTC")) == "mysql://root@127.0.0.1:3306/shop"


def test_bounds_are_the_only_values_written_into_the_statement() -> None:
    c = connector("mysql://shop@db.example:3306/shop", "Asia/Shanghai")
    kinds: dict[str, fast.Kind] = {"order_no": "text", "created_at": "wall"}
    columns = {"order_no": "sn", "created_at": "made`x"}
    sql = fast.window_select(c, "SELECT 1", columns, kinds, "2026-11-20 00:00:00", "2026-11-21 00:00:00")
    assert sql.endswith("WHERE q.`made``x` >= '2026-11-20 00:00:00' AND q.`made``x` < '2026-11-21 00:00:00'")
    with pytest.raises(ShopError, match="wall-clock"):
        fast.window_select(c, "SELECT 1", columns, kinds, "2026-11-20' OR '1'='1", "2026-11-21 00:00:00")


# --- PostgreSQL ---------------------------------------------------------------------------------

PG_SALES = """CREATE TABLE sales (sn text NOT NULL, price numeric(20,6) NOT NULL, state integer NOT NULL,
  gateway text, txid text, made timestamp(6) NOT NULL, made_tz timestamptz, settled timestamp, settled_text text,
  settled_day date, mail text, qty integer, title text, deleted_at timestamp, settled_tz timestamptz)"""


@pytest.mark.parametrize("zone", list(DAYS))
def test_a_configured_select_on_postgresql_reads_the_same_fast(postgres_database: ShopDb, tmp_path: Path, zone: str,
                                                               counted: list[str]) -> None:
    day = DAYS[zone]
    con = postgres_database.connect()
    with con:
        con.execute(PG_SALES)
        with con.cursor() as cur:
            cur.executemany(f"INSERT INTO sales ({', '.join(SALES_COLUMNS)}) VALUES ({', '.join(['%s'] * 13)})",
                            rows_of_day(day))
        # the same wall clocks as instants of the shop's zone (timestamptz)
        con.execute(f"UPDATE sales SET made_tz = made AT TIME ZONE '{zone}', "
                    f"settled_tz = settled AT TIME ZONE '{zone}'")
    con.close()
    start, end = window(day, zone)
    for created in ("made", "made_tz"):
        for paid in ("settled", "settled_tz", "settled_text", "settled_day"):
            shop = open_shop(write_config(tmp_path, sql_shop(postgres_database.dsn, created, paid), zone))
            frame = both(shop, start, end)
            if created == "made":  # timestamptz keeps the AT TIME ZONE choices PostgreSQL made for 02:30
                check_values(frame, day, zone)
            else:
                assert frame["order_no"].to_list() == EXPECTED
    assert len(counted) == 8


def test_dujiaoka_on_postgresql_reads_the_same_fast(postgres_database: ShopDb, tmp_path: Path,
                                                    counted: list[str]) -> None:
    con = postgres_database.connect()
    with con:
        con.execute(PG_DUJIAOKA_ORDERS)
        con.execute("INSERT INTO orders (order_sn, goods_id, title, actual_price, email, pay_id, trade_no, status, "
                    "created_at, updated_at, deleted_at) VALUES "
                    "('PG-START', 1, '点卡', 0.10, 'a@x', 1, '', 1, '2026-11-20 00:00:00', NULL, NULL), "
                    "('PG-PAID', 1, '月卡 🎮', 99999999.99, 'b@x', NULL, 'T2', 4, '2026-11-20 10:00:00', "
                    "'2026-11-20 10:00:09', NULL), "
                    "('PG-LAST', 1, 't', 5.55, 'c@x', 2, NULL, 6, '2026-11-20 23:59:59', '2026-11-20 23:59:59', NULL), "
                    "('PG-GONE', 1, 't', 1.00, 'd@x', 1, 'T4', 4, '2026-11-20 12:00:00', '2026-11-20 12:00:00', "
                    "'2026-11-20 13:00:00'), "
                    "('PG-NEXT', 1, 't', 1.00, 'e@x', 1, 'T5', 4, '2026-11-21 00:00:00', NULL, NULL)")
    con.close()
    shop = open_shop(write_config(tmp_path, f'kind = "sql"\nschema = "dujiaoka"\ndsn = "{postgres_database.dsn}"'))
    frame = both(shop, *window(DAYS["Asia/Shanghai"], "Asia/Shanghai"))
    assert frame["order_no"].to_list() == ["PG-LAST", "PG-PAID", "PG-START"]
    assert [str(a) for a in frame["amount"]] == ["5.550000", "99999999.990000", "0.100000"]
    assert frame["pay_method"].to_list() == ["2", None, "1"] and frame["channel_txn_id"].to_list() == [None, "T2", None]
    assert len(counted) == 1


def test_a_postgresql_error_in_connectorx_never_shows_the_password(postgres_database: ShopDb, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    con = postgres_database.connect()
    with con:
        con.execute(PG_SALES)
        con.execute("INSERT INTO sales (sn, price, state, made, mail) VALUES ('S-1', 1, 2, '2026-11-20 10:00', 'a@x')")
    con.close()
    # trust authentication here: the password is accepted, travels in connectorx's URI, and must not come back
    dsn = postgres_database.dsn.replace("postgres@", f"postgres:{quote(PASSWORD + '密', safe='')}@")
    monkeypatch.setenv("RECON_TEST_SHOP_DSN", dsn)
    failing = sql_shop("env:RECON_TEST_SHOP_DSN", "made", "settled").replace(
        "SELECT * FROM sales", "SELECT sales.*, 1 / (state - 2) AS boom FROM sales").replace(
        'title = "title"', 'title = "boom"')
    shop = open_shop(write_config(tmp_path, failing))
    with pytest.raises(ShopError, match=r"^shop 'sql': query failed: division by zero$") as caught:
        shop.orders_created_between(*window(DAYS["Asia/Shanghai"], "Asia/Shanghai"))
    assert_no_password(shown(caught))
