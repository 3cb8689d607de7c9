"""A seeded fault-injection soak: random small worlds, random step sequences, crashes and kills, and a
history checker after every step (tests/reliability/history.py).

Each seed builds a dujiaoka shop (SQLite, or a database on the live MariaDB) with lost callbacks (掉单),
an out-of-stock order to redeliver, and orders recon must never touch; a ``csv`` channel's rows add
duplicate payments, a refund, an amount mismatch and money for no order. Then a random sequence of
imports (new, the same file again, overlapping files), ``recon run``, ``recon repair --apply``, processes
SIGKILLed at a kill point (``RECON_CRASH_AT``) or at a random moment, and the shop's own late notify.
After each step and at the end: no order given goods twice, nothing untouchable touched, no seeded
difference lost, the ledger and the journal consistent, each buyer mailed once.

``RECON_SOAK_SEEDS=N`` runs seeds 0…N−1 (default 5); ``RECON_SOAK_SEED=n`` replays one seed. A killed
process dies at a moment that depends on the machine, so a replay repeats the plan, not every timing.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from typer.testing import CliRunner, Result

from recon_cli import app
from tests.alert_servers import MailBox, smtp_server
from tests.dujiaoka_db import ShopDb as DjDb
from tests.dujiaoka_db import dujiaoka_unlocked
from tests.reliability.history import (
    Ledger,
    ShopHistory,
    assert_found,
    assert_journal_true,
    assert_ledger_consistent,
    has_ledger,
    reading,
    store_rows,
)
from tests.scenario import CHANNEL_TOML, SAMPLES, STATEMENT_COLUMNS
from tests.shopdb import DUJIAOKA_DDL, mariadb_db

DAY = "2026-11-20"
SHORTAGE = "库存可使用卡密不足，请联系管理员核查"
KILL_POINTS = ("after_intent", "after_shop_update", "before_verify")  # each repair, in order
IMPORT_KILL_POINTS = ("import_mid_store", "import_after_commit")
# seeded kind → the difference recon must find (the rest must end matched or never be an exception)
FINDS = {"lost": "missing_callback", "restock": "paid_not_delivered", "big": "missing_callback",
         "mismatch": "amount_mismatch", "dup": "duplicate_payment", "refund": "refund_not_reflected",
         "shop_only": "shop_only", "channel_only": "channel_only"}
REPAIRABLE = ("lost", "restock")
PROCESSES_PER_SEED = 2
NEVER_TOUCHED = ("big", "mismatch", "dup", "refund", "shop_only", "matched", "unpaid")
runner = CliRunner()


def seeds() -> list[int]:
    if os.environ.get("RECON_SOAK_SEED"):
        return [int(os.environ["RECON_SOAK_SEED"])]
    return list(range(int(os.environ.get("RECON_SOAK_SEEDS", "5"))))


@dataclass(frozen=True)
class Order:
    sn: str
    kind: str
    status: int
    goods: int  # 1: cards (auto), 2: manual goods
    price: Decimal
    trade_no: str = ""
    info: str = ""


@dataclass(frozen=True)
class Row:
    txn: str
    order: str
    kind: str  # payment | refund
    amount: Decimal


def make_world(rng: random.Random, seed: int) -> tuple[list[Order], list[Row], list[str]]:
    """Orders, channel rows and the goods' cards (the first ``sold`` already in delivered orders)."""
    kinds = (["lost"] * rng.randint(1, 3) + ["restock"] * rng.randint(0, 1) + ["matched"]
             + rng.sample(["big", "mismatch", "dup", "refund", "shop_only", "channel_only", "unpaid", "matched"],
                          rng.randint(3, 6)))
    orders: list[Order] = []
    rows: list[Row] = []
    cards = [f"CARD-{seed}-{i:03d}" for i in range(len(kinds) + 3)]
    sold = iter(cards)
    for i, kind in enumerate(kinds):
        sn = f"S{seed}-{kind.upper()}-{i}"
        price = Decimal(rng.randint(60000, 90000) if kind == "big" else rng.randint(100, 30000)) / 100
        txn = f"T-{sn}"
        if kind in ("lost", "big", "mismatch", "unpaid"):
            manual = kind == "lost" and rng.random() < 0.25
            orders.append(Order(sn, kind, rng.choice([1, -1]), 2 if manual else 1, price))
        elif kind == "restock":
            orders.append(Order(sn, kind, 6, 1, price, txn, SHORTAGE))
        elif kind != "channel_only":
            orders.append(Order(sn, kind, 4, 1, price, txn, next(sold)))
        if kind not in ("unpaid", "shop_only"):
            rows.append(Row(txn, sn, "payment", price - 1 if kind == "mismatch" else price))
        if kind == "dup":
            rows.append(Row(f"T2-{sn}", sn, "payment", price))
        if kind == "refund":
            rows.append(Row(f"R-{sn}", sn, "refund", -price))
    rng.shuffle(rows)
    return orders, rows, cards


def seed_shop(db: DjDb, orders: list[Order], cards: list[str], sold: int) -> None:
    """The rows in one connection (dujiaoka's columns common to the SQLite and MySQL DDL)."""
    con = db.connect()
    try:
        cur = con.cursor()
        cur.execute(db.sql("INSERT INTO pays (id, pay_name, pay_check, pay_method, pay_client, merchant_id, "
                           "merchant_key, merchant_pem, pay_handleroute, is_open) "
                           "VALUES (1, '支付宝当面付', 'zfbf2f', 2, 3, '', '', '', '/pay/alipay', 1)"))
        for gid, name, kind, stock in ((1, "Steam 充值卡", 1, 0), (2, "代充 人工处理", 2, 50)):
            cur.execute(db.sql("INSERT INTO goods (id, group_id, gd_name, gd_description, gd_keywords, actual_price,"
                               " retail_price, in_stock, sales_volume, type) VALUES (?, 1, ?, '', '', '1.00', '1.00',"
                               " ?, 0, ?)"), (gid, name, stock, kind))
        cur.executemany(db.sql("INSERT INTO carmis (goods_id, status, is_loop, carmi) VALUES (1, ?, 0, ?)"),
                        [(2 if i < sold else 1, c) for i, c in enumerate(cards)])
        cur.executemany(db.sql(
            "INSERT INTO orders (order_sn, goods_id, title, type, goods_price, buy_amount, total_price, actual_price,"
            " email, info, pay_id, buy_ip, trade_no, status, created_at, updated_at)"
            " VALUES (?, ?, 'Steam 充值卡 x 1', ?, ?, 1, ?, ?, ?, ?, 1, '127.0.0.1', ?, ?, ?, ?)"),
            [(o.sn, o.goods, o.goods, *[db.money(o.price)] * 3, f"{o.sn.lower()}@example.com", o.info or None,
              o.trade_no, o.status, f"{DAY} {10 + i % 6:02d}:{i % 60:02d}:00", f"{DAY} 10:00:00")
             for i, o in enumerate(orders)])
        con.commit()
    finally:
        con.close()


@contextmanager
def shop_database(kind: str, folder: Path) -> Iterator[tuple[DjDb, str]]:
    """A dujiaoka database and its [shop] TOML: a SQLite file, or a database on the live MariaDB."""
    if kind == "sqlite":
        path = folder / "shop.sqlite"
        con = sqlite3.connect(path)
        con.executescript((SAMPLES / "dujiaoka_sqlite.sql").read_text(encoding="utf-8"))
        con.close()
        yield (DjDb("sqlite", lambda: sqlite3.connect(path, timeout=30), str(path)),
               'kind = "sqlite"\npath = "shop.sqlite"\nschema = "dujiaoka"')
        return
    with mariadb_db(DUJIAOKA_DDL) as maria:
        yield DjDb("mysql", maria.connect, maria.name), f'kind = "dujiaoka"\ndsn = "{maria.dsn}"'


class Soak:
    """One seed's world, its plan of steps, and what the history checker expects of it."""

    def __init__(self, seed: int, folder: Path, db: DjDb, shop_toml: str, smtp_port: int) -> None:
        self.seed, self.folder, self.db = seed, folder, db
        self.rng = random.Random(seed)
        self.orders, self.rows, cards = make_world(self.rng, seed)
        seed_shop(db, self.orders, cards, sum(1 for o in self.orders if o.status == 4))
        self.shop = ShopHistory(db)
        self.untouched = self._never_touched()
        self.store = folder / "recon.duckdb"
        (folder / "recon.toml").write_text(
            f'[store]\npath = "recon.duckdb"\n\n[shop]\n{shop_toml}\n' + CHANNEL_TOML.format(extra="")
            + '\n[repair]\nshop_url = "https://shop.example"\n[repair.mail]\nhost = "127.0.0.1"\n'
            f'port = {smtp_port}\nsecurity = "none"\nsender = "shop@shop.example"\n'
            '\n[reports]\nout_dir = "reports"\nformats = []\n', encoding="utf-8")
        self.files: list[Path] = []
        self.imported: list[Path] = []  # files an import that finished stored
        self.log: list[str] = []
        self.notified: set[str] = set()  # orders the shop completed by itself (its own late notify)
        self.timed_kill = False  # a process was killed at a random moment (a mail may then go twice)
        self.processes_left = PROCESSES_PER_SEED

    # --- steps -----------------------------------------------------------------------------------
    def cli(self, *args: str) -> Result:
        return runner.invoke(app, ["--config", str(self.folder / "recon.toml"), *args])

    def bill(self, rows: list[Row]) -> Path:
        path = self.folder / f"bill_{len(self.files) + 1}.csv"
        lines = [",".join(STATEMENT_COLUMNS)] + [f"{r.txn},{r.order},{r.kind},{DAY} 10:00:30,{r.amount},CNY,,success"
                                                 for r in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.files.append(path)
        return path

    def some_rows(self) -> list[Row]:
        return sorted(self.rng.sample(self.rows, self.rng.randint(1, len(self.rows))), key=self.rows.index)

    def some_command(self) -> tuple[str, ...]:
        """A writing command for a child process: a repair pass, a run with repairs, an import of a new bill."""
        args = self.rng.choice([("repair", "--apply"), ("run", "--date", DAY, "--no-fetch", "--apply"),
                                ("import", "--channel", "pay")])
        return (*args, str(self.bill(self.some_rows()))) if args[0] == "import" else args

    def step(self) -> bool:
        """One random step; True when it ended with a repair run that finished normally."""
        choice = self.rng.choices(["import", "again", "run", "repair", "crash", "kill", "notify"],
                                  [3, 1, 2, 2, 2, 1, 1])[0]
        if choice in ("crash", "kill"):  # a process costs seconds: a few per seed
            self.processes_left -= 1
            choice = choice if self.processes_left >= 0 else "repair"
        if choice == "again" and self.imported:
            path = self.rng.choice(self.imported)
            before = store_rows(self.store, "SELECT count(*) AS n FROM channel_txn")
            self.expect(self.cli("import", "--channel", "pay", str(path)), 0, f"import {path.name} again")
            assert store_rows(self.store, "SELECT count(*) AS n FROM channel_txn") == before, "a file imported twice"
        elif choice in ("import", "again"):
            path = self.bill(self.some_rows())
            self.expect(self.cli("import", "--channel", "pay", str(path)), 0, f"import {path.name}")
            self.imported.append(path)
        elif choice == "run":
            apply = self.rng.random() < 0.5
            self.expect(self.cli("run", "--date", DAY, "--no-fetch", *(["--apply"] if apply else [])), 0, "run",
                        also=(3,))
            return apply
        elif choice == "repair":
            self.expect(self.cli("repair", "--apply", "--json"), 0, "repair --apply", also=(3,))
            return True
        elif choice == "crash":
            args = self.some_command()
            crash = (self.rng.choice(IMPORT_KILL_POINTS) if args[0] == "import"
                     else f"{self.rng.choice(KILL_POINTS)}:{self.rng.randint(1, 3)}")
            rc = self.process(args, crash_at=crash)
            self.log.append(f"{' '.join(args[:2])} with RECON_CRASH_AT={crash}: exit {rc}")
        elif choice == "kill":
            args, delay = self.some_command(), round(self.rng.uniform(0.5, 3.0), 2)
            rc = self.process(args, kill_after=delay)
            self.timed_kill |= rc == -9
            self.log.append(f"{' '.join(args[:2])} killed after {delay}s: exit {rc}")
        else:
            self.notify()
        return False

    def expect(self, result: Result, code: int, what: str, also: tuple[int, ...] = ()) -> None:
        self.log.append(f"{what}: exit {result.exit_code}")
        assert result.exit_code in (code, *also), f"{what}: exit {result.exit_code}\n{result.output}"

    def process(self, args: tuple[str, ...], crash_at: str | None = None, kill_after: float | None = None) -> int:
        env = {k: v for k, v in os.environ.items() if k not in ("RECON_CRASH_AT", "RECON_CONFIG")}
        if crash_at:
            env["RECON_CRASH_AT"] = crash_at
        proc = subprocess.Popen([sys.executable, "-c", "from recon_cli import main; main()", "--config",
                                 str(self.folder / "recon.toml"), *args], cwd=self.folder, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(timeout=kill_after if kill_after is not None else 120)
        except subprocess.TimeoutExpired:
            if kill_after is None:
                raise
            proc.kill()
            out, err = proc.communicate(timeout=30)
        assert proc.returncode in (-9, 0, 3), f"{args}: exit {proc.returncode}\n{out}\n{err}"
        return proc.returncode

    def notify(self) -> None:
        """The shop's own late notify for a lost order recon already found (plain dujiaoka, no locks)."""
        ledger = Ledger.read(self.store) if has_ledger(self.store) else None
        found = {e["order_no"] for e in ledger.exceptions if e["code"] == "missing_callback"} if ledger else set()
        waiting = [o for o in self.orders
                   if o.kind == "lost" and o.goods == 1 and o.sn in found and not self.shop.delivered(o.sn)]
        if not waiting:
            self.log.append("notify: no lost order waits")
            return
        order = self.rng.choice(waiting)
        answer = dujiaoka_unlocked(self.db, order.sn, order.price, f"T-{order.sn}")
        assert answer == "completed", answer
        self.notified.add(order.sn)
        self.log.append(f"the shop's own notify for {order.sn}: {answer}")

    # --- the history checker -----------------------------------------------------------------------
    def _never_touched(self, orders: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
        shop = orders or self.shop.orders()
        return {o.sn: shop[o.sn] for o in self.orders if o.kind in NEVER_TOUCHED}

    def check(self, settled: bool) -> None:
        self.shop.assert_delivered_at_most_once()
        orders = self.shop.orders()
        assert self._never_touched(orders) == self.untouched, "an order recon must not touch changed"
        if not has_ledger(self.store):
            return
        with reading(self.store) as con:
            ledger = Ledger.read(con)
            assert_ledger_consistent(ledger)
            assert_journal_true(ledger, self.shop, settled, orders)
            assert_found(ledger, self.found_so_far(con))

    def found_so_far(self, con: duckdb.DuckDBPyConnection) -> dict[str, str]:
        """Seeded differences whose rows were all in the store when the last successful run began."""
        last = store_rows(con, "SELECT max(started_at) AS t FROM runs WHERE status = 'succeeded'")[0]["t"]
        if last is None:
            return {}
        seen = {r["channel_txn_id"] for r in store_rows(
            con, "SELECT t.channel_txn_id FROM channel_txn t JOIN imports i USING (import_id) "
                 "WHERE i.imported_at < ?", [last])}
        kinds = {o.sn: o.kind for o in self.orders}
        expected: dict[str, str] = {}
        for sn, kind in {r.order: kinds.get(r.order, "channel_only") for r in self.rows}.items():
            if kind in FINDS and all(r.txn in seen for r in self.rows if r.order == sn):
                expected[sn] = FINDS[kind]
        if seen:  # the date's bill is in: an order the shop says paid without a channel row is found
            expected |= {o.sn: "shop_only" for o in self.orders if o.kind == "shop_only"}
        return expected

    def finish(self, box: MailBox) -> None:
        """Everything imported, one run and one repair pass: the world ends as it must."""
        self.expect(self.cli("import", "--channel", "pay", str(self.bill(list(self.rows)))), 0, "import all")
        self.expect(self.cli("run", "--date", DAY, "--no-fetch", "--apply"), 3, "final run --apply")
        self.expect(self.cli("repair", "--apply", "--json"), 0, "final repair --apply", also=(3,))
        self.check(settled=True)
        repairable = [o.sn for o in self.orders if o.kind in REPAIRABLE]
        self.shop.assert_delivered_exactly_once(repairable)
        ledger = Ledger.read(self.store)
        kinds = {o.sn: o.kind for o in self.orders}
        expected = {sn: FINDS[kind] for sn, kind in kinds.items() if kind in FINDS} | {
            r.order: "channel_only" for r in self.rows if r.order not in kinds}
        assert_found(ledger, expected)
        still_open = {(e["key"], e["code"]) for e in ledger.exceptions if e["status"] == "open"}
        assert still_open == {(sn, code) for sn, code in expected.items()
                              if kinds.get(sn, "channel_only") not in REPAIRABLE}, still_open
        applied = {r["order_no"] for r in ledger.journal if r["state"] == "applied"}
        assert set(repairable) - self.notified <= applied, (repairable, applied)
        by_status = Counter(e["status"] for e in ledger.exceptions)
        for status in ("open", "repaired", "resolved", "ignored"):
            listed = self.cli("exceptions", "list", "--status", status, "--json")
            assert len(json_list(listed)) == by_status[status], (status, listed.output)
        self.check_mail(box)

    def check_mail(self, box: MailBox) -> None:
        """Cards recon delivered reach the buyer once (at least once after a kill at a random moment);
        orders the shop completed itself, and manual goods, are not mailed by recon."""
        mailed = Counter(addr for e in box.envelopes for addr in e.rcpt_tos)
        for o in self.orders:
            got = mailed[f"{o.sn.lower()}@example.com"]
            if o.sn in self.notified:  # recon may have had an intent in flight: it cannot tell who acted
                assert got <= 1, f"{o.sn} mailed {got} times"
                continue
            want = 1 if o.kind in REPAIRABLE and o.goods == 1 else 0
            assert got == want or (want and self.timed_kill and got >= 1), f"{o.sn} mailed {got} times"


def json_list(result: Result) -> list[Any]:
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert isinstance(listed, list)
    return listed


@pytest.mark.parametrize("seed", seeds())
def test_seeded_faults_never_deliver_twice_nor_lose_a_difference(seed: int, tmp_path: Path) -> None:
    shop_kind = "mariadb" if random.Random(-seed - 1).random() < 0.3 else "sqlite"
    with smtp_server() as (box, port), shop_database(shop_kind, tmp_path) as (db, shop_toml):
        soak = Soak(seed, tmp_path, db, shop_toml, port)
        try:
            for _ in range(soak.rng.randint(5, 8)):
                settled = soak.step()
                soak.check(settled)
            soak.finish(box)
        except Exception as exc:
            raise AssertionError(f"{type(exc).__name__}: {exc}\n{shop_kind} shop; steps: {'; '.join(soak.log)}\n"
                                 f"replay with RECON_SOAK_SEED={seed}") from exc
