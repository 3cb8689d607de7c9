"""Shop adapters against the live MariaDB and PostgreSQL servers (dujiaoka's real DDL on MariaDB)."""

from __future__ import annotations

import sqlite3
import traceback
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import psycopg
import pymysql
import pytest

from recon.config import Config, load_config
from recon.errors import ConfigError, ShopError
from recon.shops import SHOP_SCHEMA, open_shop
from recon.shops.connect import MYSQL, POSTGRESQL, SQLITE, connector, parse_dsn
from tests.scenario import CHANNEL_TOML, Scenario
from tests.shopdb import (
    DUJIAOKA_DDL,
    PG_DUJIAOKA_ORDERS,
    ShopDb,
    insert_order,
    insert_orders,
    mariadb_dujiaoka,  # noqa: F401 (fixture)
    order_row,
    postgres_database,  # noqa: F401 (fixture)
    run_mysql_script,
    split_sql,
)

# The PRC business day 2026-11-20 as UTC instants.
START, END = datetime(2026, 11, 19, 16, tzinfo=UTC), datetime(2026, 11, 20, 16, tzinfo=UTC)
HOSTILE = ["' OR '1'='1", "'; DROP TABLE orders; --", "x\\' OR 1=1 -- ", 'x" OR "1"="1', "%s", "?"]
CHANNEL = CHANNEL_TOML.format(extra="") + '[reports]\nformats = []\n'


def write_config(folder: Path, shop: str) -> Config:
    (folder / "recon.toml").write_text(f'[store]\npath = "recon.duckdb"\n\n[shop]\n{shop}\n{CHANNEL}',
                                       encoding="utf-8")
    return load_config(folder / "recon.toml")


def dujiaoka_config(folder: Path, db: ShopDb) -> Config:
    return write_config(folder, f'kind = "dujiaoka"\ndsn = "{db.dsn}"')


def count(db: ShopDb, table: str) -> int:
    con = db.connect()
    try:
        with con.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {table}")
            return int(cur.fetchone()[0])
    finally:
        con.close()


# Every dujiaoka status, times as PRC wall clock. (sn, amount, status, trade_no, created, updated)
SEED = [
    ("ABCD0001", "10.00", 1, "", "2026-11-20 00:00:00", None),            # window start: included
    ("ABCD0002", "0.01", -1, "", "2026-11-20 08:00:00", "2026-11-20 08:05:00"),
    ("ABCD0003", "123456.78", 2, "T3", "2026-11-20 09:30:00", "2026-11-20 09:31:15"),
    ("ABCD0004", "99999999.99", 3, "T4", "2026-11-20 10:00:00", "2026-11-20 10:00:30"),
    ("ABCD0005", "19.90", 4, "T5", "2026-11-20 12:00:00", "2026-11-20 12:00:01"),
    ("ABCD0006", "0.00", 5, "T6", "2026-11-20 15:59:59", "2026-11-20 16:00:00"),
    ("ABCD0007", "7.77", 6, "T7", "2026-11-20 23:59:59", "2026-11-20 23:59:59"),  # window end − 1 s
    ("ABCD0008", "5.00", 4, "T8", "2026-11-21 00:00:00", None),            # next day: excluded
    ("ABCD0009", "5.00", 4, "T9", "2026-11-19 23:59:59", None),            # day before: excluded
]


def seed_statuses(db: ShopDb) -> None:
    con = db.connect()
    try:
        insert_orders(con, [order_row(sn, amount, status=status, trade_no=trade, created=created, updated=updated,
                                      goods_type=2 if status in (2, 3) else 1, quantity=2 if sn == "ABCD0005" else 1)
                            for sn, amount, status, trade, created, updated in SEED])
        insert_order(con, "GONE0001", "3.00", status=4, trade_no="TG", deleted="2026-11-20 13:00:00")
        insert_order(con, "MiXeD-case-01", "4.20", status=4, trade_no="TM", created="2026-11-20 11:11:11")
    finally:
        con.close()


def prc(text: str) -> datetime:
    """PRC wall clock → the UTC instant (UTC+8 all year)."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC) - timedelta(hours=8)


# --- DSNs ---------------------------------------------------------------------------------------

def test_dsn_parsing_and_dialects() -> None:
    d = parse_dsn("mysql://root@127.0.0.1:3306/shop")
    assert (d.dialect, d.user, d.host, d.port, d.database, d.password) == (MYSQL, "root", "127.0.0.1", 3306, "shop", "")
    d = parse_dsn("mariadb://u%40x:p%3Aw@db.local/shop")
    assert (d.dialect, d.user, d.password, d.port) == (MYSQL, "u@x", "p:w", 3306)
    assert "p:w" not in repr(d) and "p:w" not in d.where
    d = parse_dsn("postgres://postgres@127.0.0.1/s")
    assert (d.dialect, d.port, d.database) == (POSTGRESQL, 5432, "s")
    assert parse_dsn("postgresql://a@h:6543/x").port == 6543
    assert parse_dsn("sqlite:///rel/shop.db").database == "rel/shop.db"
    assert parse_dsn("sqlite:////abs/shop.db").database == "/abs/shop.db"
    assert (MYSQL.quote("a`b"), POSTGRESQL.quote('a"b'), SQLITE.quote("x")) == ("`a``b`", '"a""b"', '"x"')
    assert (MYSQL.placeholder, POSTGRESQL.placeholder, SQLITE.placeholder) == ("%s", "%s", "?")


@pytest.mark.parametrize("dsn, problem", [
    ("oracle://u@h/db", "scheme 'oracle' is not supported"),
    ("mysql://root:Hunter2Secret@h:99999/db", "port is not a number"),
    ("mysql://root:Hunter2Secret@h:3306", "name the database"),
    ("postgresql://:Hunter2Secret@h:5432/db", "name the user"),
    ("Hunter2Secret", "scheme '(none)' is not supported"),
    ("sqlite://shop.db", "sqlite:///relative"),
])
def test_bad_dsns_are_config_errors_naming_shop_dsn(dsn: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_dsn(dsn)
    assert str(caught.value).startswith("shop.dsn: ") and problem in str(caught.value)
    assert "Hunter2Secret" not in str(caught.value)


def test_kind_dujiaoka_needs_a_dsn_and_no_query(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"shop: kind 'dujiaoka' needs dsn"):
        write_config(tmp_path, 'kind = "dujiaoka"')
    with pytest.raises(ConfigError, match=r"for your own query use kind = \"sql\""):
        write_config(tmp_path, 'kind = "dujiaoka"\ndsn = "mysql://root@h/s"\nquery = "SELECT 1"')


# --- dujiaoka on MariaDB, real DDL ----------------------------------------------------------------

def test_the_real_ddl_loads_and_reloads_without_warnings(mariadb_dujiaoka: ShopDb) -> None:
    statements = split_sql(DUJIAOKA_DDL.read_text(encoding="utf-8"))
    assert statements[:2] == ["SET NAMES utf8mb4", "SET FOREIGN_KEY_CHECKS = 0"]
    assert sum(s.startswith("CREATE TABLE") for s in statements) == 4 and len(statements) == 11
    con = mariadb_dujiaoka.connect()
    try:
        run_mysql_script(con, DUJIAOKA_DDL.read_text(encoding="utf-8"))  # DROP of existing tables this time
        with con.cursor() as cur:
            cur.execute("SHOW FULL COLUMNS FROM orders WHERE Field = 'order_sn'")
            assert cur.fetchone()[2].endswith("_unicode_ci")
            cur.execute("SHOW TABLES")
            assert sorted(r[0] for r in cur.fetchall()) == ["carmis", "goods", "orders", "pays"]
    finally:
        con.close()


@pytest.mark.parametrize("batch", [20_000, 2])
def test_dujiaoka_window_on_mariadb(mariadb_dujiaoka: ShopDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    batch: int) -> None:
    monkeypatch.setattr("recon.shops.sql.STREAM_BATCH", batch)  # 2: many batches, some all-NULL paid_at
    seed_statuses(mariadb_dujiaoka)
    shop = open_shop(dujiaoka_config(tmp_path, mariadb_dujiaoka))
    assert shop.case_insensitive is True
    frame = shop.orders_created_between(START, END).sort("order_no")
    assert frame.schema == pl.Schema(SHOP_SCHEMA)
    assert frame["order_no"].to_list() == [f"ABCD000{i}" for i in range(1, 8)] + ["MiXeD-case-01"]
    rows = {r["order_no"]: r for r in frame.to_dicts()}
    expected_status = {1: "pending", -1: "expired", 2: "paid", 3: "paid", 4: "delivered", 5: "delivery_failed",
                       6: "delivery_failed"}
    for sn, amount, status, trade, created, updated in SEED[:7]:
        row = rows[sn]
        assert row["amount"] == Decimal(amount) and isinstance(row["amount"], Decimal)
        assert str(row["amount"]) == f"{Decimal(amount):.6f}"  # exact, never through float
        assert (row["status"], row["shop_status"]) == (expected_status[status], str(status))
        assert row["created_at"] == prc(created)
        assert row["paid_at"] == (None if status in (1, -1) else prc(updated or created))
        assert row["channel_txn_id"] == (trade or None)
        assert row["goods_kind"] == ("manual" if status in (2, 3) else "auto")
        assert (row["currency"], row["pay_method"], row["buyer_contact"]) == ("CNY", "1", f"{sn.lower()}@example.com")
    assert rows["ABCD0005"]["quantity"] == 2
    assert rows["ABCD0001"]["created_at"] == datetime(2026, 11, 19, 16, tzinfo=UTC)


def test_dujiaoka_orders_by_no_on_mariadb(mariadb_dujiaoka: ShopDb, tmp_path: Path) -> None:
    seed_statuses(mariadb_dujiaoka)
    con = mariadb_dujiaoka.connect()
    try:
        insert_order(con, "ZERODATE1", "1.00", status=1, created="0000-00-00 00:00:00")
    finally:
        con.close()
    shop = open_shop(dujiaoka_config(tmp_path, mariadb_dujiaoka))
    found = shop.orders_by_no(["abcd0003", "AbCd0007", "mixed-CASE-01", "gone0001", "ZERODATE1", "nope"])
    assert sorted(found["order_no"].to_list()) == ["ABCD0003", "ABCD0007", "MiXeD-case-01", "ZERODATE1"]
    amounts = dict(zip(found["order_no"], found["amount"], strict=True))
    assert amounts["ABCD0003"] == Decimal("123456.78") and amounts["MiXeD-case-01"] == Decimal("4.20")
    assert found.filter(pl.col("order_no") == "ZERODATE1")["created_at"].to_list() == [None]  # MySQL's zero date
    assert shop.orders_by_no([]).schema == pl.Schema(SHOP_SCHEMA)
    many = shop.orders_by_no([f"NOPE{i:05d}" for i in range(12_000)] + ["ABCD0004"])  # more than one IN chunk
    assert many["order_no"].to_list() == ["ABCD0004"]


def test_hostile_order_numbers_are_inert_on_mariadb(mariadb_dujiaoka: ShopDb, tmp_path: Path) -> None:
    seed_statuses(mariadb_dujiaoka)
    before = count(mariadb_dujiaoka, "orders")
    shop = open_shop(dujiaoka_config(tmp_path, mariadb_dujiaoka))
    assert shop.orders_by_no(HOSTILE).height == 0
    assert shop.orders_by_no([*HOSTILE, "ABCD0005"])["order_no"].to_list() == ["ABCD0005"]
    con = mariadb_dujiaoka.connect()
    try:
        insert_order(con, HOSTILE[1], "1.00")  # stored as data, found as data
    finally:
        con.close()
    assert shop.orders_by_no([HOSTILE[1]])["order_no"].to_list() == [HOSTILE[1]]
    assert count(mariadb_dujiaoka, "orders") == before + 1


def test_the_reader_cannot_write(mariadb_dujiaoka: ShopDb, postgres_database: ShopDb) -> None:
    con = connector(mariadb_dujiaoka.dsn, "Asia/Shanghai")()
    try:
        with con.cursor() as cur, pytest.raises(pymysql.MySQLError, match="READ ONLY"):
            cur.execute("INSERT INTO pays (pay_name, pay_check, pay_method, merchant_pem, pay_handleroute) "
                        "VALUES ('x', 'x', 1, '', '/x')")
    finally:
        con.close()
    pg = connector(postgres_database.dsn, "Asia/Shanghai")()
    try:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            pg.execute("CREATE TABLE t (a int)")
        pg.rollback()
        assert pg.execute("SHOW TimeZone").fetchone() == ("Asia/Shanghai",)
    finally:
        pg.close()


def test_a_wrong_password_is_never_shown(mariadb_dujiaoka: ShopDb, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "Wr0ng-Pa55word-XyZ"
    dsn = mariadb_dujiaoka.dsn.replace("root@", f"root:{secret}@")
    monkeypatch.setenv("RECON_TEST_SHOP_DSN", dsn)
    config = write_config(tmp_path, 'kind = "dujiaoka"\ndsn = "env:RECON_TEST_SHOP_DSN"')
    shop = open_shop(config)
    with pytest.raises(ShopError, match=r"cannot connect to the shop database mysql://root@127\.0\.0\.1:3306/.*"
                                        r"Access denied") as caught:
        shop.orders_created_between(START, END)
    shown = "".join(traceback.format_exception(caught.value)) + repr(caught.value) + repr(shop.__dict__)
    assert secret not in shown
    # PostgreSQL (trust auth here): an unknown role with a password fails without showing it either
    monkeypatch.setenv("RECON_TEST_SHOP_DSN", f"postgresql://recon_nobody:{secret}@127.0.0.1:5432/postgres")
    shop = open_shop(write_config(tmp_path, 'kind = "sql"\nschema = "dujiaoka"\ndsn = "env:RECON_TEST_SHOP_DSN"'))
    with pytest.raises(ShopError, match="recon_nobody") as caught:
        shop.orders_by_no(["A"])
    assert secret not in "".join(traceback.format_exception(caught.value))


def test_bulk_read_of_50000_orders_from_mariadb(mariadb_dujiaoka: ShopDb, tmp_path: Path) -> None:
    n = 50_000
    rows = [order_row(f"BULK{i:08d}", f"{i % 1000}.{i % 100:02d}", status=(4, 1, 6, -1)[i % 4],
                      trade_no=f"T{i}", created=f"2026-11-20 {i % 24:02d}:{i % 60:02d}:{i % 59:02d}")
            for i in range(n)]
    con = mariadb_dujiaoka.connect()
    try:
        insert_orders(con, rows)
    finally:
        con.close()
    # Speed is measured by the benchmark harness (bench/), not here: this checks the bulk read is whole.
    frame = open_shop(dujiaoka_config(tmp_path, mariadb_dujiaoka)).orders_created_between(START, END)
    assert frame.height == n and frame["order_no"].n_unique() == n
    assert frame["amount"].sum() == sum(Decimal(r[7]) for r in rows)
    assert frame["status"].value_counts().sort("status")["count"].to_list() == [n // 4] * 4


# --- reconcile end to end: the MariaDB shop gives what the SQLite demo shop gives -----------------

def test_reconcile_against_the_mariadb_shop(mariadb_dujiaoka: ShopDb, tmp_path: Path) -> None:
    orders = [  # sn, amount, status, trade_no
        ("M-MATCH", "10.00", 4, "T1"), ("M-LOST", "20.00", 1, ""), ("M-EXPIRED", "30.00", -1, ""),
        ("M-NOCARD", "15.50", 6, "T4"), ("M-FORGED", "8.00", 4, "T5"), ("M-AMOUNT", "12.00", 4, "T6"),
        ("M-CASE", "9.99", 4, "T7"), ("M-DELETED", "6.00", 4, "T8"),
    ]
    statement = [
        {"txn": "T1", "order": "M-MATCH", "amount": "10.00"}, {"txn": "T2", "order": "M-LOST", "amount": "20.00"},
        {"txn": "T3", "order": "M-EXPIRED", "amount": "30.00"}, {"txn": "T4", "order": "M-NOCARD", "amount": "15.50"},
        {"txn": "T6", "order": "M-AMOUNT", "amount": "11.00"}, {"txn": "T7", "order": "m-case", "amount": "9.99"},
        {"txn": "T8", "order": "M-DELETED", "amount": "6.00"}, {"txn": "T9", "order": "NO-SUCH", "amount": "1.00"},
    ]
    expected = {"M-MATCH": "matched", "M-LOST": "missing_callback", "M-EXPIRED": "missing_callback",
                "M-NOCARD": "paid_not_delivered", "M-FORGED": "shop_only", "M-AMOUNT": "amount_mismatch",
                "M-CASE": "matched", "M-DELETED": "channel_only", "NO-SUCH": "channel_only"}
    outcomes: dict[str, dict[str, str]] = {}
    for backend in ("sqlite", "mariadb"):
        folder = tmp_path / backend
        folder.mkdir()
        sc = Scenario(folder)
        if backend == "mariadb":
            con = mariadb_dujiaoka.connect()
            try:
                insert_orders(con, [order_row(sn, amt, status=st, trade_no=tn) for sn, amt, st, tn in orders])
                with con.cursor() as cur:
                    cur.execute("UPDATE orders SET deleted_at = '2026-11-20 12:00:00' WHERE order_sn = 'M-DELETED'")
                con.commit()
            finally:
                con.close()
            sc.config = dujiaoka_config(folder, mariadb_dujiaoka)
        else:
            for sn, amt, st, tn in orders:
                sc.order(sn, amt, status=st, trade_no=tn)
            lite = sqlite3.connect(sc.shop_path)
            lite.execute("UPDATE orders SET deleted_at = '2026-11-20 12:00:00' WHERE order_sn = 'M-DELETED'")
            lite.commit()
            lite.close()
        sc.import_(sc.statement(statement))
        summary = sc.run()
        results = sc.results(summary.run_id)
        outcomes[backend] = {r["unit_key"].upper(): r["code"] for r in results}
        assert {k.replace("TXN:T9", "NO-SUCH"): v for k, v in outcomes[backend].items()} == expected, backend
        amount = next(r for r in results if r["unit_key"] == "M-AMOUNT")
        assert (amount["shop_amount"], amount["channel_amount"]) == (Decimal("12.00"), Decimal("11.00"))
    assert outcomes["sqlite"] == outcomes["mariadb"]


# --- PostgreSQL -----------------------------------------------------------------------------------

PG_SALES = """
CREATE TABLE sales (sn text PRIMARY KEY, price numeric(12, 2) NOT NULL, state integer NOT NULL, gateway text,
                    txid text, made timestamp NOT NULL, settled timestamptz, mail text, qty integer);
INSERT INTO sales VALUES
 ('S-1', 12.50, 2, 'bank', 'B1', '2026-11-20 09:00:00', '2026-11-20 01:00:05+00', 'a@example.com', 1),
 ('s-2', 8.00, 0, 'bank', '', '2026-11-20 00:00:00', NULL, 'b@example.com', 3),
 ('S-3', 3.00, 2, 'bank', 'B3', '2026-11-19 23:59:59', '2026-11-19 15:59:59+00', 'c@example.com', 1),
 ('S-4', 0.07, 2, 'bank', 'B4', '2026-11-20 23:59:59', '2026-11-20 16:00:00+00', 'nomail', 1)
"""
PG_SHOP = """kind = "sql"
dsn = "{dsn}"
query = "SELECT * FROM sales WHERE mail LIKE '%@%'"
columns = {{ order_no = "sn", amount = "price", status = "state", pay_method = "gateway", channel_txn_id = "txid", created_at = "made", paid_at = "settled", buyer_contact = "mail", quantity = "qty" }}
status_map = {{ "0" = "pending", "2" = "delivered" }}
order_no_case_insensitive = true"""


def test_a_configured_select_on_postgresql(postgres_database: ShopDb, tmp_path: Path) -> None:
    con = postgres_database.connect()
    with con:
        con.execute(PG_SALES)
    con.close()
    shop = open_shop(write_config(tmp_path, PG_SHOP.format(dsn=postgres_database.dsn)))
    frame = shop.orders_created_between(START, END).sort("order_no")
    assert frame.schema == pl.Schema(SHOP_SCHEMA)
    assert frame.select("order_no", "amount", "status", "shop_status", "created_at", "paid_at", "channel_txn_id",
                        "quantity").rows() == [
        ("S-1", Decimal("12.50"), "delivered", "2", datetime(2026, 11, 20, 1, tzinfo=UTC),
         datetime(2026, 11, 20, 1, 0, 5, tzinfo=UTC), "B1", 1),
        ("s-2", Decimal("8.00"), "pending", "0", datetime(2026, 11, 19, 16, tzinfo=UTC), None, None, 3),
    ]  # S-3 is the day before; S-4 is filtered out by the configured query's own LIKE '%@%'
    assert sorted(shop.orders_by_no(["s-1", "S-2", "S-3", "S-4"])["order_no"].to_list()) == ["S-1", "S-3", "s-2"]
    assert shop.orders_by_no(HOSTILE).height == 0
    assert shop.orders_by_no([*HOSTILE, "S-1"])["order_no"].to_list() == ["S-1"]
    con = postgres_database.connect()
    assert con.execute("SELECT count(*) FROM sales").fetchone() == (4,)
    con.close()


PG_DUJIAOKA = PG_DUJIAOKA_ORDERS + """;
INSERT INTO orders (order_sn, goods_id, title, actual_price, email, pay_id, trade_no, status, created_at, updated_at,
                    deleted_at) VALUES
 ('PGORDER1', 1, 't', 10.00, 'a@x', 1, 'T1', 4, '2026-11-20 10:00:00', '2026-11-20 10:00:09', NULL),
 ('PGORDER2', 1, 't', 5.55, 'b@x', 1, '', -1, '2026-11-20 11:00:00', '2026-11-20 11:05:00', NULL),
 ('PGORDER3', 1, 't', 1.00, 'c@x', 1, 'T3', 4, '2026-11-20 12:00:00', '2026-11-20 12:00:00', '2026-11-20 13:00:00');
"""


def test_dujiaoka_tables_on_postgresql(postgres_database: ShopDb, tmp_path: Path) -> None:
    con = postgres_database.connect()
    with con:
        con.execute(PG_DUJIAOKA)
    con.close()
    shop = open_shop(write_config(tmp_path, f'kind = "sql"\nschema = "dujiaoka"\ndsn = "{postgres_database.dsn}"'))
    frame = shop.orders_created_between(START, END).sort("order_no")
    assert frame.select("order_no", "amount", "status", "created_at", "paid_at").rows() == [
        ("PGORDER1", Decimal("10.00"), "delivered", datetime(2026, 11, 20, 2, tzinfo=UTC),
         datetime(2026, 11, 20, 2, 0, 9, tzinfo=UTC)),
        ("PGORDER2", Decimal("5.55"), "expired", datetime(2026, 11, 20, 3, tzinfo=UTC), None),
    ]
    assert shop.orders_by_no(["pgorder2", "PGORDER3", *HOSTILE])["order_no"].to_list() == ["PGORDER2"]


def test_bulk_read_of_50000_orders_from_postgresql(postgres_database: ShopDb, tmp_path: Path) -> None:
    n = 50_000
    con = postgres_database.connect()
    with con:
        con.execute(PG_DUJIAOKA_ORDERS)
        con.execute("INSERT INTO orders (order_sn, goods_id, title, actual_price, email, pay_id, trade_no, status, "
                    "created_at, updated_at) SELECT 'BULK' || lpad(i::text, 8, '0'), 1, 't', (i %% 1000) + 0.25, "
                    "'x@y', 1, 'T' || i, 4, timestamp '2026-11-20 00:00:00' + (i %% 86400) * interval '1 second', "
                    "timestamp '2026-11-20 00:00:00' FROM generate_series(1, %s) AS i", [n])
    con.close()
    shop = open_shop(write_config(tmp_path, f'kind = "sql"\nschema = "dujiaoka"\ndsn = "{postgres_database.dsn}"'))
    frame = shop.orders_created_between(START, END)
    assert frame.height == n
    assert frame["amount"].sum() == sum(Decimal(i % 1000) + Decimal("0.25") for i in range(1, n + 1))


def test_errors_mid_stream_are_shop_errors_and_leave_nothing_open(mariadb_dujiaoka: ShopDb, postgres_database: ShopDb,
                                                                   tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("recon.shops.sql.STREAM_BATCH", 2)
    con = mariadb_dujiaoka.connect()
    try:
        insert_orders(con, [order_row(f"E{i}", "1.00", status=9 if i == 4 else 4) for i in range(8)])
    finally:
        con.close()
    shop = open_shop(dujiaoka_config(tmp_path, mariadb_dujiaoka))
    with pytest.raises(ShopError, match=r"order E4 has status '9', which shop.status_map does not map"):
        shop.orders_created_between(START, END)  # third batch; the unbuffered result is abandoned
    con = postgres_database.connect()
    with con:
        con.execute(PG_SALES)
        con.execute("UPDATE sales SET state = 7 WHERE sn = 'S-1'")
    con.close()
    shop = open_shop(write_config(tmp_path, PG_SHOP.format(dsn=postgres_database.dsn)))
    with pytest.raises(ShopError, match=r"order S-1 has status '7'"):
        shop.orders_by_no(["S-1", "S-2", "S-3"])
    broken = PG_SHOP.format(dsn=postgres_database.dsn).replace("FROM sales", "FROM no_such_table")
    with pytest.raises(ShopError, match=r"shop 'sql': query failed: relation \"no_such_table\" does not exist"):
        open_shop(write_config(tmp_path, broken)).orders_created_between(START, END)
    broken = f'kind = "sql"\ndsn = "{mariadb_dujiaoka.dsn}"\nquery = "SELEC nonsense"\n' + \
        'columns = { order_no = "a", amount = "b", status = "c", created_at = "d" }'
    with pytest.raises(ShopError, match=r"shop 'sql': query failed: \(1064, .*syntax"):
        open_shop(write_config(tmp_path, broken)).orders_created_between(START, END)
