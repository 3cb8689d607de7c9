"""Hostile text stays text: formulas and markup in every report, SQL in every shop database and command.

Formulas and markup: order numbers, channel transaction ids, buyer mails, product names, the shop's
recorded trade_no (which the exception detail quotes) and an operator's redelivery reason (a remark)
carry ``=HYPERLINK(…)``, ``+1+1``, ``-2+3``, ``@SUM``, TAB/CR-prefixed formulas, ``<script>``,
``"><img onerror>`` and ``{{7*7}}`` through `recon run`, `recon redeliver` and `recon report`; the
workbook holds no formula, the CSV no live cell, and a real browser runs no script of theirs.

SQL: order numbers from statements, command arguments and configured identifiers reach SQLite,
MariaDB and PostgreSQL shops only as bound values or quoted identifiers; the shop's tables are
byte-identical afterwards.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from selenium.common.exceptions import NoAlertPresentException

from tests.browser import rows as table_rows
from tests.browser import start_chrome
from tests.reliability.hostile_world import (
    DAY_TEXT,
    Channels,
    channels,  # noqa: F401 (fixture)
    cli,
    shop_with_lost_orders,
)
from tests.scenario import CHANNEL_TOML, Scenario
from tests.shopdb import DUJIAOKA_DDL, insert_order, mariadb_db, postgres_db

TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")
HYPERLINK = '=HYPERLINK("http://evil.example/x","open")'
SCRIPT = "<script>window.__pwned=1;alert(1)</script>"
IMG = '"><img src=x onerror="window.__pwned=1">'
# Order numbers, txn ids, mails and product names (the shop and the statement strip surrounding blanks,
# so TAB/CR-prefixed text comes through the operator's --reason instead).
HOSTILE = (HYPERLINK, "+1+1", "-2+3", "@SUM(1)", SCRIPT, IMG, "{{7*7}}", 'a";=1+2')
REASONS = ("\t=1+1", "\r@SUM(1)")
REDELIVERED = ("REDO-1", "REDO-2")  # forced redeliveries whose reasons are the TAB/CR-prefixed texts


# ---------------------------------------------------------------------------------------------- reports


@pytest.fixture(scope="module")
def hostile_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A reconciled day full of hostile text, with two redeliveries, rendered by `recon report`."""
    folder = tmp_path_factory.mktemp("hostile")
    s = Scenario(folder)
    con = sqlite3.connect(s.shop_path)
    con.execute("INSERT INTO goods (id, group_id, gd_name, actual_price, type, in_stock) "
                "VALUES (1, 1, ?, '5.00', 1, 0)", [SCRIPT])
    con.executemany("INSERT INTO carmis (goods_id, status, carmi) VALUES (1, 1, ?)", [(f"CARD-{i}",) for i in range(3)])
    con.commit()
    for text in HOSTILE:  # each lost: paid at the channel, pending in the shop
        s.order(text, "5.00", status=1)
    for order_no in REDELIVERED:
        s.order(order_no, "5.00", status=1)
    s.order("TNM-1", "7.00", status=4, trade_no=HYPERLINK)  # the shop recorded another (hostile) trade_no
    s.order("TNM-2", "7.00", status=4, trade_no=SCRIPT + IMG)
    con.executemany("UPDATE orders SET title = ?, email = ? WHERE order_sn = ?", [(t, t, t) for t in HOSTILE])
    con.commit()
    con.close()
    s.import_(s.statement([{"txn": text, "order": text, "amount": "5.00"} for text in (*HOSTILE, *REDELIVERED)]
                          + [{"txn": "T-REAL-1", "order": "TNM-1", "amount": "7.00"},
                             {"txn": "T-REAL-2", "order": "TNM-2", "amount": "7.00"}]))
    config = folder / "recon.toml"
    ran = cli(config, "run", "--date", DAY_TEXT, "--no-fetch", "--json")
    assert ran.exit_code == 3, ran.output
    assert json.loads(ran.stdout)["counts"] == {"missing_callback": len(HOSTILE) + 2,
                                                "trade_no_mismatch": 2}
    for order_no, reason in zip(REDELIVERED, REASONS, strict=True):
        done = cli(config, "redeliver", order_no, "--force", "--reason", reason, "--yes", "--json")
        assert done.exit_code == 0 and json.loads(done.stdout)["state"] == "applied", done.output
    out = folder / "out"
    reported = cli(config, "report", "--date", DAY_TEXT, "--format", "xlsx,html,csv", "--out", str(out), "--lang", "en")
    assert reported.exit_code == 0, reported.output
    return {p.suffix + ("-" + p.stem.rsplit("_", 1)[-1] if p.suffix == ".csv" else ""): p for p in out.iterdir()}


def text_cells(values: list[str]) -> list[str]:
    """Values that would be live in a spreadsheet: starting with a trigger and not a plain number."""
    live = []
    for value in values:
        if not value.startswith(TRIGGERS):
            continue
        try:
            Decimal(value)
        except InvalidOperation:
            live.append(value)
    return live


def test_the_workbook_holds_no_formula_and_shows_every_hostile_text_as_text(hostile_reports: dict[str, Path]) -> None:
    path = hostile_reports[".xlsx"]
    with zipfile.ZipFile(path) as archive:
        xml = [archive.read(n).decode() for n in archive.namelist() if n.startswith("xl/worksheets/")]
    assert not any("<f>" in sheet or "<f " in sheet for sheet in xml)
    book = load_workbook(path)
    strings: list[str] = []
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate, cell.value)
                if isinstance(cell.value, str):
                    strings.append(cell.value)
                    if cell.value.startswith(TRIGGERS):
                        assert cell.data_type == "s" and cell.quotePrefix, (sheet.title, cell.coordinate, cell.value)
    # a CR is stored as is; XML readers (openpyxl's, Excel's) give it back as LF
    wanted = {*HOSTILE, "\t=1+1", "\n@SUM(1)", f"shop recorded {HYPERLINK}, channel reports T-REAL-1",
              f"shop recorded {SCRIPT + IMG}, channel reports T-REAL-2"}
    assert wanted <= set(strings), wanted - set(strings)


@pytest.mark.parametrize("part", ["results", "exceptions"])
def test_every_csv_cell_that_could_run_is_defused(hostile_reports: dict[str, Path], part: str) -> None:
    raw = hostile_reports[f".csv-{part}"].read_bytes()
    cells = [c for row in csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")) for c in row]
    assert text_cells(cells) == []
    for text in HOSTILE:
        assert ("'" + text if text.startswith(TRIGGERS) else text) in cells, text
    if part == "exceptions":
        assert f"shop recorded {SCRIPT + IMG}, channel reports T-REAL-2" in cells


def test_the_page_runs_no_script_of_the_data_and_shows_it_literally(hostile_reports: dict[str, Path]) -> None:
    driver = start_chrome()
    try:
        driver.get(hostile_reports[".html"].as_uri())
        with pytest.raises(NoAlertPresentException):
            driver.switch_to.alert.text  # noqa: B018 - reading it is what raises
        found = driver.execute_script(
            "return [typeof window.__pwned, document.scripts.length, document.images.length,"
            " document.querySelectorAll('[onerror]').length];")
        assert found == ["undefined", 1, 0, 0]  # the page's own script only
        exceptions = [c for r in table_rows(driver, "exceptions") for c in r["cells"]]
        repairs = [c for r in table_rows(driver, "repairs") for c in r["cells"]]
        page_text = driver.execute_script("return document.body.innerText;")
    finally:
        driver.quit()
    for text in HOSTILE:
        assert text in exceptions, text
    assert f"shop recorded {SCRIPT + IMG}, channel reports T-REAL-2" in exceptions
    assert set(REDELIVERED) <= set(repairs) and any(c.strip() == "=1+1" for c in repairs)
    assert any(c.strip() == "@SUM(1)" for c in repairs)
    assert "{{7*7}}" in page_text and "49" not in exceptions


# ---------------------------------------------------------------------------------------------- SQL

SQL_HOSTILE = ("' OR '1'='1", "'; DROP TABLE orders; --", "x\\' OR 1=1 --", 'x" OR "1"="1', "%s", "%(x)s", "?",
               ":order_no", "$1", "1); UPDATE orders SET status = 4; --", "\\")
# An order whose number is itself an injection attempt: stored as data, it must be found as data.
NAMED = "'); DELETE FROM orders; --"
OLD_DAY = "2026-11-17 10:00:00"  # outside the run's window: found only by name (orders_by_no)


@dataclass
class Shop:
    """One shop database for the SQL tests: its [shop] table, a writer and a dump of all its tables."""

    toml: str
    add: Callable[[str, str, int], None]  # (order no, amount, status) created OLD_DAY
    dump: Callable[[], dict[str, list[tuple[Any, ...]]]]
    dujiaoka: bool


SALES_COLUMNS = ('columns = { order_no = "sn", amount = "price", status = "state", pay_method = "gateway", '
                 'channel_txn_id = "txid", created_at = "made" }\nstatus_map = { "0" = "pending", "2" = "delivered" }')


def _mysql_dump(connect: Callable[[], Any]) -> dict[str, list[tuple[Any, ...]]]:
    con = connect()
    try:
        with con.cursor() as cur:
            cur.execute("SHOW TABLES")
            tables = sorted(r[0] for r in cur.fetchall())
            out = {}
            for table in tables:
                cur.execute(f"SELECT * FROM `{table}` ORDER BY 1")
                out[table] = [tuple(r) for r in cur.fetchall()]
        return out
    finally:
        con.close()


def _pg_dump(connect: Callable[[], Any]) -> dict[str, list[tuple[Any, ...]]]:
    con = connect()
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables "
                                            "WHERE table_schema = 'public' ORDER BY 1").fetchall()]
        return {t: [tuple(r) for r in con.execute(f'SELECT * FROM "{t}" ORDER BY 1').fetchall()] for t in tables}
    finally:
        con.close()


@contextmanager
def shop(kind: str, folder: Path) -> Iterator[Shop]:
    if kind == "sqlite-dujiaoka":
        scenario = Scenario(folder)

        def dump_sqlite() -> dict[str, list[tuple[Any, ...]]]:
            con = sqlite3.connect(scenario.shop_path)
            try:
                names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")]
                return {n: con.execute(f'SELECT * FROM "{n}" ORDER BY 1').fetchall() for n in names}
            finally:
                con.close()

        yield Shop("", lambda sn, amount, st: scenario.order(sn, amount, status=st, created=OLD_DAY), dump_sqlite,
                   True)
    elif kind == "mariadb-dujiaoka":
        with mariadb_db(DUJIAOKA_DDL) as db:
            def add_dj(sn: str, amount: str, st: int) -> None:
                con = db.connect()
                try:
                    insert_order(con, sn, amount, status=st, created=OLD_DAY)
                finally:
                    con.close()
            yield Shop(f'kind = "dujiaoka"\ndsn = "{db.dsn}"', add_dj, lambda: _mysql_dump(db.connect), True)
    else:
        maker, dump = (mariadb_db, _mysql_dump) if kind == "mariadb-sql" else (postgres_db, _pg_dump)
        with maker() as db:
            con = db.connect()
            cur = con.cursor()
            cur.execute("CREATE TABLE sales (sn varchar(100) PRIMARY KEY, price decimal(10,2) NOT NULL, "
                        "state int NOT NULL, gateway varchar(10), txid varchar(50), made timestamp NOT NULL)")
            con.commit()
            con.close()

            def add_sale(sn: str, amount: str, st: int) -> None:
                c = db.connect()
                try:
                    c.cursor().execute("INSERT INTO sales VALUES (%s, %s, %s, '1', '', %s)",
                                       [sn, amount, 0 if st == 1 else 2, OLD_DAY])
                    c.commit()
                finally:
                    c.close()
            yield Shop(f'kind = "sql"\ndsn = "{db.dsn}"\nquery = "SELECT * FROM sales"\n{SALES_COLUMNS}\n'
                       "order_no_case_insensitive = true", add_sale, lambda: dump(db.connect), False)


def write_config(folder: Path, shop_toml: str) -> Path:
    config = folder / "recon.toml"
    config.write_text(f'[store]\npath = "recon.duckdb"\n\n[shop]\n{shop_toml}\n{CHANNEL_TOML.format(extra="")}\n'
                      '[reports]\nformats = []\n', encoding="utf-8")
    return config


def statement(folder: Path, orders: list[tuple[str, str]]) -> Path:
    path = folder / "statement.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("txn", "order", "kind", "time", "amount", "currency", "fee", "status"))
        for i, (order_no, amount) in enumerate(orders):
            writer.writerow((f"T{i}", order_no, "payment", "2026-11-20 10:00:30", amount, "CNY", "", "success"))
    return path


@pytest.mark.parametrize("kind", ["sqlite-dujiaoka", "mariadb-dujiaoka", "mariadb-sql", "postgresql-sql"])
def test_hostile_order_numbers_are_only_ever_data(tmp_path: Path, kind: str) -> None:
    with shop(kind, tmp_path) as db:
        config = write_config(tmp_path, db.toml) if db.toml else tmp_path / "recon.toml"
        db.add("OK-1", "10.00", 4)
        db.add(NAMED, "3.00", 1)
        before = db.dump()
        paid = [("OK-1", "10.00"), (NAMED, "3.00"), *((h, "1.00") for h in SQL_HOSTILE)]
        imported = cli(config, "import", "--channel", "pay", str(statement(tmp_path, paid)))
        ran = cli(config, "run", "--date", DAY_TEXT, "--no-fetch", "--json")
        listed = cli(config, "exceptions", "list", "--json")
        by_channel = [cli(config, "exceptions", "list", "--channel", h, "--json") for h in SQL_HOSTILE[:1]]
        by_code = cli(config, "exceptions", "list", "--code", SQL_HOSTILE[0])
        redelivered = [cli(config, "redeliver", h, "--yes") for h in SQL_HOSTILE[:2]] if db.dujiaoka else []
        after = db.dump()

    assert imported.exit_code == 0, imported.output
    assert ran.exit_code == 3, ran.output
    counts = json.loads(ran.stdout)["counts"]
    # OK-1 and NAMED were found by their numbers although created days before; no hostile one matched anything
    assert counts == {"matched": 1, "missing_callback": 1, "channel_only": len(SQL_HOSTILE)}, counts
    rows = {r["order_no"]: r["code"] for r in json.loads(listed.stdout)}
    assert rows[NAMED] == "missing_callback" and all(rows[h] == "channel_only" for h in SQL_HOSTILE)
    assert all(r.exit_code == 0 and json.loads(r.stdout) == [] for r in by_channel)
    assert by_code.exit_code == 2 and "is not a difference code" in by_code.stderr
    for result in redelivered:
        assert result.exit_code == 1 and "the shop has no order" in result.stderr, result.output
    assert after == before


def test_order_numbers_cannot_smuggle_parameters_into_a_channel_query(channels: Channels, tmp_path: Path) -> None:
    """`recon query` sends the number as one value: no extra query parameter, no other path."""
    config = tmp_path / "recon.toml"
    shop_with_lost_orders(tmp_path, channels)
    smuggled = {"ep": "NOPE&out_trade_no=EP-LOST-1", "wx": "../out-trade-no/WX-LOST-1",
                "ali": 'NOPE","out_trade_no":"ALI-LOST-1'}
    for channel, order_no in smuggled.items():
        result = cli(config, "query", order_no, "--channel", channel, "--json")
        assert result.exit_code == 0, result.output
        [answer] = json.loads(result.stdout)
        assert (answer["order_no"], answer["state"]) == (order_no, "not_found"), answer


IDENTIFIERS = {"order_no": 'sn"x', "amount": "pr`ice", "status": "st%s", "created_at": "made%", "pay_method": "g'w"}


@pytest.mark.parametrize("kind", ["sqlite", "mariadb", "postgresql"])
def test_configured_column_names_are_quoted_not_spliced(tmp_path: Path, kind: str) -> None:
    """Quotes, backticks and % in a column mapping name columns; they never end an identifier or bind a value."""
    def quote(name: str) -> str:
        return "`" + name.replace("`", "``") + "`" if kind == "mariadb" else '"' + name.replace('"', '""') + '"'

    columns = ", ".join(f"{canonical} = {json.dumps(name)}" for canonical, name in IDENTIFIERS.items())
    create = (f"CREATE TABLE sales ({quote(IDENTIFIERS['order_no'])} varchar(50), {quote(IDENTIFIERS['amount'])} "
              f"decimal(10,2), {quote(IDENTIFIERS['status'])} int, {quote(IDENTIFIERS['created_at'])} "
              f"{'datetime' if kind == 'mariadb' else 'timestamp'}, {quote(IDENTIFIERS['pay_method'])} varchar(5))")
    rows = [("S-1", "12.50", 2, "2026-11-20 09:00:00", "1"), ("S-2", "8.00", 0, "2026-11-20 11:00:00", "1")]
    # a status_map key is a value compared in polars, never SQL text
    status_map = '{ "0" = "pending", "2" = "delivered", "9\' OR \'1\'=\'1" = "paid" }'
    shop_toml = f'query = "SELECT * FROM sales"\ncolumns = {{ {columns} }}\nstatus_map = {status_map}'

    @contextmanager
    def database() -> Iterator[str]:
        if kind == "sqlite":
            con = sqlite3.connect(tmp_path / "shop.sqlite")
            con.execute(create)
            con.executemany("INSERT INTO sales VALUES (?, ?, ?, ?, ?)", rows)
            con.commit()
            con.close()
            yield 'kind = "sql"\ndsn = "sqlite:///shop.sqlite"'
            return
        with (mariadb_db() if kind == "mariadb" else postgres_db()) as db:
            con = db.connect()
            cur = con.cursor()
            cur.execute(create)
            cur.executemany("INSERT INTO sales VALUES (%s, %s, %s, %s, %s)", rows)
            con.commit()
            con.close()
            yield f'kind = "sql"\ndsn = "{db.dsn}"'

    with database() as head:
        config = write_config(tmp_path, f"{head}\n{shop_toml}")
        imported = cli(config, "import", "--channel", "pay",
                       str(statement(tmp_path, [("S-1", "12.50"), ("S-2", "8.00")])))
        ran = cli(config, "run", "--date", DAY_TEXT, "--no-fetch", "--json")

    assert imported.exit_code == 0, imported.output
    assert ran.exit_code == 3, ran.output
    assert json.loads(ran.stdout)["counts"] == {"matched": 1, "missing_callback": 1}


def test_a_schema_that_is_not_dujiaoka_is_refused_at_load_naming_its_key(tmp_path: Path) -> None:
    Scenario(tmp_path)
    config = tmp_path / "recon.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('schema = "dujiaoka"', 'schema = "dujiaoka; DROP TABLE orders; --"'), encoding="utf-8")

    result = cli(config, "run", "--date", DAY_TEXT, "--no-fetch")

    assert result.exit_code == 2
    assert "shop.schema" in result.stderr and "dujiaoka" in result.stderr
    assert not (tmp_path / "recon.duckdb").exists()
