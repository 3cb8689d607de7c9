"""Configured completion statements (``shop.completion``) repair lost payments of any SQL shop."""

from __future__ import annotations

import csv
import json
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from recon.config import load_config
from recon.errors import ConfigError
from recon.repair.shop import open_repairer
from recon.repair.sql_completion import (
    SqlCompletionRepairer,
    open_sql_repairer,
    translate,
)
from recon.shops.connect import POSTGRESQL, SQLITE
from recon.store import open_store
from recon_cli import app
from tests.scenario import CHANNEL_TOML, STATEMENT_COLUMNS
from tests.shopdb import ShopDb, postgres_database  # noqa: F401  (fixture)

runner = CliRunner()
COMPLETE = "UPDATE sales SET state = 2, txid = :channel_txn_id WHERE sn = :order_no AND state = 0 AND price = :amount"
SALES = "CREATE TABLE sales (sn varchar(100) PRIMARY KEY, price numeric(10,2) NOT NULL, state int NOT NULL, " \
        "txid varchar(100), made timestamp NOT NULL, done_at varchar(19))"
EVIL = "X1'; DROP TABLE sales; --"


def write_config(folder: Path, shop_lines: str, completion: list[str]) -> Path:
    path = folder / "recon.toml"
    path.write_text(
        '[store]\npath = "recon.duckdb"\n\n[shop]\n' + shop_lines
        + 'query = "SELECT sn, price, state, txid, made FROM sales"\n'
        + f"completion = {json.dumps(completion)}\n"
        + "[shop.columns]\norder_no = \"sn\"\namount = \"price\"\nstatus = \"state\"\n"
          "channel_txn_id = \"txid\"\ncreated_at = \"made\"\n"
        + '[shop.status_map]\n"0" = "pending"\n"2" = "paid"\n"3" = "expired"\n'
        + CHANNEL_TOML.format(extra="")
        + '\n[reports]\nout_dir = "reports"\nformats = []\n',
        encoding="utf-8",
    )
    return path


def pg_config(folder: Path, dsn: str, completion: list[str]) -> Path:
    return write_config(folder, f'kind = "sql"\ndsn = "{dsn}"\n', completion)


def seed(connect: Any, rows: list[tuple[str, str, int, str | None]], placeholder: str = "%s") -> None:
    con = connect()
    try:
        cur = con.cursor()
        cur.execute(SALES)
        marks = ", ".join([placeholder] * 4)
        cur.executemany(f"INSERT INTO sales (sn, price, state, txid, made) VALUES ({marks}, '2026-11-20 10:00:00')",
                        rows)
        con.commit()
    finally:
        con.close()


def sales(connect: Any) -> dict[str, tuple[Any, ...]]:
    con = connect()
    try:
        cur = con.cursor()
        cur.execute("SELECT sn, price, state, txid, done_at FROM sales ORDER BY sn")
        return {r[0]: tuple(r[1:]) for r in cur.fetchall()}
    finally:
        con.close()


def statement(folder: Path, rows: list[tuple[str, str, str]]) -> Path:
    path = folder / "statement.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(STATEMENT_COLUMNS)
        for txn, order, amount in rows:
            writer.writerow([txn, order, "payment", "2026-11-20 10:00:30", amount, "CNY", "", "success"])
    return path


def import_and_run(config: Path, stmt: Path) -> dict[str, Any]:
    imported = runner.invoke(app, ["--config", str(config), "import", "--channel", "pay", str(stmt)])
    assert imported.exit_code == 0, imported.output
    return run(config)


def run(config: Path) -> dict[str, Any]:
    done = runner.invoke(app, ["--config", str(config), "run", "--date", "2026-11-20", "--apply", "--json"])
    assert done.exception is None or isinstance(done.exception, SystemExit), done.output
    return json.loads(done.stdout)


def repairs(config: Path) -> list[dict[str, Any]]:
    with open_store(load_config(config), write=False) as con:
        cur = con.execute("SELECT order_no, channel_txn_id, state, detail FROM repairs ORDER BY repair_id")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def test_postgres_lost_payment_is_completed_once(tmp_path: Path, postgres_database: ShopDb) -> None:  # noqa: F811
    dsn, connect = postgres_database
    seed(connect, [("LOST1", "10.00", 0, None), ("PAID2", "10.00", 2, "T2"), ("OTHER", "10.00", 0, None)])
    config = pg_config(tmp_path, dsn, [COMPLETE, "UPDATE sales SET done_at = :now WHERE sn = :order_no"])
    first = import_and_run(config, statement(tmp_path, [("T1", "LOST1", "10.00"), ("T2", "PAID2", "10.00")]))
    assert first["repairs"]["applied"] == 1, first
    assert [(r["order_no"], r["channel_txn_id"], r["state"]) for r in repairs(config)] == [("LOST1", "T1", "applied")]
    rows = sales(connect)
    assert rows["LOST1"][:3] == (Decimal("10.00"), 2, "T1")
    assert len(rows["LOST1"][3]) == 19  # :now, the shop zone's wall clock
    assert rows["PAID2"] == (Decimal("10.00"), 2, "T2", None)
    assert rows["OTHER"] == (Decimal("10.00"), 0, None, None)
    second = run(config)
    assert second["repairs"].get("applied", 0) == 0, second
    assert sales(connect) == rows
    assert len(repairs(config)) == 1


def test_postgres_statement_touching_no_row_rolls_back_all(tmp_path: Path,
                                                           postgres_database: ShopDb) -> None:  # noqa: F811
    dsn, connect = postgres_database
    seed(connect, [("LOST1", "10.00", 0, None)])
    config = pg_config(tmp_path, dsn, [
        "UPDATE sales SET txid = :channel_txn_id, done_at = :now WHERE sn = :order_no AND state = 0",
        "UPDATE sales SET state = 2 WHERE sn = :order_no AND state = 5",  # nothing in state 5: touches 0 rows
    ])
    before = sales(connect)
    summary = import_and_run(config, statement(tmp_path, [("T1", "LOST1", "10.00")]))
    assert summary["repairs"].get("applied", 0) == 0, summary
    [repair] = repairs(config)
    assert repair["state"] == "failed" and "statement 1 touched 0 rows" in repair["detail"]
    assert sales(connect) == before  # the first statement's change was rolled back


def test_postgres_order_completed_by_someone_else_is_not_touched(tmp_path: Path,
                                                                 postgres_database: ShopDb) -> None:  # noqa: F811
    dsn, connect = postgres_database
    seed(connect, [("LOST1", "10.00", 0, None)])
    repairer = open_repairer(load_config(pg_config(tmp_path, dsn, [COMPLETE])))
    assert isinstance(repairer, SqlCompletionRepairer) and repairer.name == "sql"
    state = repairer.read("LOST1")
    assert state is not None and not state.delivered and state.amount == Decimal("10.00") and state.cards == []
    con = connect()
    con.execute("UPDATE sales SET state = 2, txid = 'SHOP' WHERE sn = 'LOST1'")  # the shop's late callback
    con.commit()
    con.close()
    result = repairer.complete("LOST1", Decimal("10.00"), "T1")
    assert (result.done, result.detail) == (False, "statement 0 touched 0 rows")
    assert sales(connect)["LOST1"] == (Decimal("10.00"), 2, "SHOP", None)
    assert repairer.complete("LOST1", Decimal("9.99"), "T1").done is False
    assert repairer.deliver_after_restock("LOST1").detail == "not supported for this shop"
    assert repairer.read("NOPE") is None


def test_order_number_with_sql_in_it_stays_inert(tmp_path: Path, postgres_database: ShopDb) -> None:  # noqa: F811
    dsn, connect = postgres_database
    seed(connect, [(EVIL, "10.00", 0, None), ("X1", "10.00", 0, None)])
    repairer = open_sql_repairer(load_config(pg_config(tmp_path, dsn, [COMPLETE])))
    assert repairer.complete("X1' OR '1'='1", Decimal("10.00"), "T0").done is False
    result = repairer.complete(EVIL, Decimal("10.00"), "T1'); DROP TABLE sales; --")
    assert result.done, result.detail
    rows = sales(connect)  # the table is still there
    assert rows[EVIL][:3] == (Decimal("10.00"), 2, "T1'); DROP TABLE sales; --")
    assert rows["X1"] == (Decimal("10.00"), 0, None, None)
    state = repairer.read(EVIL)
    assert state is not None and state.delivered and state.order_no == EVIL


def test_unknown_parameter_is_a_config_error(tmp_path: Path) -> None:
    shop = tmp_path / "shop.sqlite"
    seed(lambda: sqlite3.connect(shop), [], placeholder="?")
    config = write_config(tmp_path, 'kind = "sqlite"\npath = "shop.sqlite"\n',
                          ["UPDATE sales SET state = 2 WHERE sn = :order_id"])
    with pytest.raises(ConfigError) as raised:
        open_repairer(load_config(config))
    assert raised.value.key == "shop.completion[0]" and ":order_id" in str(raised.value)


def test_sqlite_shop_lost_payment_is_completed(tmp_path: Path) -> None:
    shop = tmp_path / "shop.sqlite"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(shop)

    seed(connect, [("LOST1", "10.00", 0, None), ("LOST2", "20.00", 0, None)], placeholder="?")
    config = write_config(tmp_path, 'kind = "sqlite"\npath = "shop.sqlite"\n',
                          [COMPLETE, "UPDATE sales SET done_at = :now WHERE sn = :order_no"])
    first = import_and_run(config, statement(tmp_path, [("T1", "LOST1", "10.00")]))
    assert first["repairs"]["applied"] == 1, first
    rows = sales(connect)
    assert rows["LOST1"][1:3] == (2, "T1") and rows["LOST2"] == (20, 0, None, None)
    assert run(config)["repairs"].get("applied", 0) == 0
    assert sales(connect) == rows


def test_translate_binds_only_real_parameters() -> None:
    text = "UPDATE t SET a = :now::timestamp, b = ':order_no 100%' /* :x */ WHERE c = :order_no -- :y\n"
    pg = translate(text, POSTGRESQL, "k")
    assert pg.sql == "UPDATE t SET a = %s::timestamp, b = ':order_no 100%%' /* :x */ WHERE c = %s -- :y"
    assert pg.names == ("now", "order_no")
    lite = translate(text, SQLITE, "k")
    assert lite.sql == "UPDATE t SET a = ?::timestamp, b = ':order_no 100%' /* :x */ WHERE c = ? -- :y"
    with pytest.raises(ConfigError):
        translate("UPDATE t SET a = ':x", SQLITE, "k")

