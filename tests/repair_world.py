"""A dujiaoka shop on a real server (MariaDB or PostgreSQL) with 掉单 orders and a channel statement,
plus a recon folder configured for it; shared by tests/test_repair_databases.py.

The shop rows are written through ``tests.dujiaoka_db.ShopDb`` (``?`` placeholders for every dialect),
so ``dujiaoka_unlocked`` can act on the same database as a genuine late notify.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
from typer.testing import CliRunner, Result

from recon_cli import app
from tests.dujiaoka_db import ShopDb as DjDb
from tests.dujiaoka_db import ddl_statements, translate
from tests.scenario import CHANNEL_TOML

ROOT = Path(__file__).resolve().parent.parent
DAY = "2026-11-20"
CREATED = "2026-11-20 10:00:00"
SHORTAGE = "库存可使用卡密不足，请联系管理员核查"
runner = CliRunner()

# goods id → (name, type, price, in_stock, sales_volume)
GOODS = {
    1: ("Steam 充值卡 ¥50", 1, "50.00", 0, 1),
    2: ("Netflix 月卡 (循环卡密)", 1, "30.00", 0, 0),
    3: ("代充 人工处理", 2, "20.00", 10, 0),
    4: ("大额 礼品卡", 1, "800.00", 0, 0),
}
# goods id → (cards, is_loop, status)
CARDS = [
    (1, [f"STEAM-{i:04d}" for i in range(1, 9)], 0, 1),
    (1, ["STEAM-OLD-1"], 0, 2),              # sold to DJ-DONE-1 long ago
    (2, ["NETFLIX-LOOP-1"], 1, 1),           # a loop card: handed to every buyer, never marked sold
    (4, ["GIFT-0001", "GIFT-0002"], 0, 1),
]


@dataclass(frozen=True)
class Seed:
    sn: str
    goods: int
    status: int
    price: str  # unit price; actual_price = price × quantity
    quantity: int = 1
    trade_no: str = ""
    info: str = ""
    paid: str | None = None  # what the channel statement says was paid (None: the order price)
    txn: str | None = None   # channel transaction id (None: no statement row)


ORDERS = [
    # repaired: 掉单 at 1 and -1 (one of two cards), a loop card, after restock (6), manual goods (→ 2)
    Seed("DJ-PEND-1", 1, 1, "50.00", txn="T-PEND-1"),
    Seed("DJ-PEND-2", 1, -1, "50.00", quantity=2, txn="T-PEND-2"),
    Seed("DJ-LOOP-1", 2, 1, "30.00", txn="T-LOOP-1"),
    Seed("DJ-RESTOCK", 1, 6, "50.00", trade_no="T-RESTOCK", info=SHORTAGE, txn="T-RESTOCK"),
    Seed("DJ-MANUAL", 3, 1, "20.00", txn="T-MANUAL"),
    # never touched
    Seed("DJ-DONE-1", 1, 4, "50.00", trade_no="T-DONE-1", info="STEAM-OLD-1", txn="T-DONE-1"),
    Seed("DJ-BIG", 4, 1, "800.00", txn="T-BIG"),                        # above auto_repair_max = 500
    Seed("DJ-DIFF", 1, 1, "50.00", paid="45.00", txn="T-DIFF"),         # the channel paid another amount
    Seed("DJ-S2", 3, 2, "20.00", trade_no="T-S2", txn="T-S2"),
    Seed("DJ-S3", 3, 3, "20.00", trade_no="T-S3", txn="T-S3"),
    Seed("DJ-S5", 1, 5, "50.00", trade_no="T-S5", txn="T-S5"),
    Seed("DJ-UNPAID", 1, 1, "50.00"),                                   # no payment at all
]
REPAIRED = ("DJ-PEND-1", "DJ-PEND-2", "DJ-LOOP-1", "DJ-RESTOCK", "DJ-MANUAL")
UNTOUCHED = tuple(o.sn for o in ORDERS if o.sn not in REPAIRED)
BY_SN = {o.sn: o for o in ORDERS}

CHANNEL = CHANNEL_TOML.format(extra="")


def create_pg_tables(connect: Any) -> None:
    """dujiaoka's real DDL, translated mechanically for PostgreSQL (bench.shop_ddl.translate)."""
    con = connect()
    try:
        for statement in ddl_statements():
            for part in translate(statement, "postgresql"):
                con.execute(part)
        con.commit()
    finally:
        con.close()


def seed_shop(db: DjDb) -> None:
    db.run("INSERT INTO pays (id, pay_name, pay_check, pay_method, pay_client, merchant_id, merchant_key, "
           "merchant_pem, pay_handleroute, is_open, created_at, updated_at) "
           "VALUES (1, '支付宝当面付', 'zfbf2f', 2, 3, '', '', '', '/pay/alipay', 1, ?, ?)", (CREATED, CREATED))
    for gid, (name, kind, price, stock, sales) in GOODS.items():
        db.run("INSERT INTO goods (id, group_id, gd_name, gd_description, gd_keywords, actual_price, retail_price,"
               " in_stock, sales_volume, type, created_at, updated_at) VALUES (?, 1, ?, '', '', ?, ?, ?, ?, ?, ?, ?)",
               (gid, name, Decimal(price), Decimal(price), stock, sales, kind, CREATED, CREATED))
    card_id = 0
    for gid, cards, loop, status in CARDS:
        for carmi in cards:
            card_id += 1
            db.run("INSERT INTO carmis (id, goods_id, status, is_loop, carmi, created_at, updated_at)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?)", (card_id, gid, status, loop, carmi, CREATED, CREATED))
    for oid, o in enumerate(ORDERS, start=1):
        unit = Decimal(o.price)
        total = unit * o.quantity
        db.run("INSERT INTO orders (id, order_sn, goods_id, title, type, goods_price, buy_amount, total_price,"
               " actual_price, email, info, pay_id, buy_ip, trade_no, status, created_at, updated_at)"
               " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, '127.0.0.1', ?, ?, ?, ?)",
               (oid, o.sn, o.goods, f"{GOODS[o.goods][0]} x {o.quantity}", GOODS[o.goods][1], unit, o.quantity,
                total, total, f"{o.sn.lower()}@example.com", o.info or None, o.trade_no, o.status, CREATED,
                CREATED))


def write_statement(path: Path) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(("txn", "order", "kind", "time", "amount", "currency", "fee", "status"))
        for o in ORDERS:
            if o.txn is None:
                continue
            paid = o.paid or str(Decimal(o.price) * o.quantity)
            writer.writerow((o.txn, o.sn, "payment", "2026-11-20 10:00:30", paid, "CNY", "", "success"))
    return path


class World:
    """A recon folder (store, config) in front of one seeded dujiaoka shop database."""

    def __init__(self, folder: Path, db: DjDb, shop_toml: str, repair_toml: str = "") -> None:
        self.folder, self.db = folder, db
        self.config = folder / "recon.toml"
        self.config.write_text(
            f'[store]\npath = "recon.duckdb"\n\n[shop]\n{shop_toml}\n{CHANNEL}\n{repair_toml}\n'
            '[reports]\nout_dir = "reports"\nformats = []\n', encoding="utf-8")
        seed_shop(db)
        self.statement = write_statement(folder / "pay_2026-11-20.csv")

    # --- recon ---------------------------------------------------------------------------------
    def cli(self, *args: str) -> Result:
        return runner.invoke(app, ["--config", str(self.config), *args])

    def process(self, *args: str, crash_at: str | None = None) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("RECON_CRASH_AT", "RECON_CONFIG")}
        if crash_at:
            env["RECON_CRASH_AT"] = crash_at
        return subprocess.Popen([sys.executable, "-c", "from recon_cli import main; main()", "--config",
                                 str(self.config), *args], cwd=self.folder, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def run_process(self, *args: str, crash_at: str | None = None) -> tuple[int, str, str]:
        proc = self.process(*args, crash_at=crash_at)
        out, err = proc.communicate(timeout=120)
        return proc.returncode, out, err

    def import_and_reconcile(self) -> None:
        """The statement imported and the date reconciled (no repairs yet): the 掉单 are open exceptions."""
        imported = self.cli("import", "--channel", "pay", str(self.statement))
        assert imported.exit_code == 0, imported.output
        ran = self.cli("run", "--date", DAY, "--no-fetch")
        assert ran.exit_code == 3, ran.output
        open_codes = {r["order_no"]: r["code"] for r in self.store("SELECT order_no, code FROM exceptions "
                                                                     "WHERE status = 'open'")}
        assert {sn: open_codes.get(sn) for sn in REPAIRED} == {
            "DJ-PEND-1": "missing_callback", "DJ-PEND-2": "missing_callback", "DJ-LOOP-1": "missing_callback",
            "DJ-RESTOCK": "paid_not_delivered", "DJ-MANUAL": "missing_callback"}

    def store(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        con = duckdb.connect(str(self.folder / "recon.duckdb"), read_only=True)
        try:
            cur = con.execute(sql, params or [])
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        finally:
            con.close()

    def journal(self) -> list[dict[str, Any]]:
        return self.store("SELECT * FROM repairs ORDER BY repair_id")

    # --- the shop ------------------------------------------------------------------------------
    def orders(self) -> dict[str, dict[str, Any]]:
        rows = self.db.run("SELECT order_sn, status, info, trade_no, actual_price, goods_id, buy_amount, type"
                           " FROM orders ORDER BY id")
        return {str(sn): {"status": int(st), "info": info or "", "trade_no": tn or "",
                          "actual_price": Decimal(str(price)), "goods_id": int(g), "buy_amount": int(n),
                          "type": int(t)}
                for sn, st, info, tn, price, g, n, t in rows}

    def cards(self) -> dict[str, dict[str, int]]:
        """carmi → {goods_id, status, is_loop}."""
        return {str(c): {"goods_id": int(g), "status": int(s), "is_loop": int(loop)}
                for c, g, s, loop in self.db.run("SELECT carmi, goods_id, status, is_loop FROM carmis ORDER BY id")}

    def goods(self) -> dict[int, tuple[int, int]]:
        """goods id → (sales_volume, in_stock)."""
        return {int(g): (int(sv), int(st))
                for g, sv, st in self.db.run("SELECT id, sales_volume, in_stock FROM goods ORDER BY id")}

    def raw(self, table: str) -> list[tuple[Any, ...]]:
        return self.db.run(f"SELECT * FROM {table} ORDER BY id")

    def raw_orders(self, sns: tuple[str, ...]) -> dict[str, tuple[Any, ...]]:
        rows = self.db.run("SELECT * FROM orders ORDER BY id")
        cols = [r[0] for r in self.db.run(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'orders'"
            + (" AND table_schema = DATABASE()" if self.db.dialect == "mysql" else "")
            + " ORDER BY ordinal_position")]
        sn_at = [c.lower() for c in cols].index("order_sn")
        return {str(r[sn_at]): r for r in rows if r[sn_at] in sns}


def delivered_cards(order: dict[str, Any]) -> list[str]:
    return [line for line in order["info"].split("\n") if line.strip()] if order["status"] == 4 else []


def assert_no_card_twice(world: World) -> None:
    """Every single-use card sold belongs to exactly one delivered order, and no order holds a card twice;
    every delivered order holds exactly buy_amount cards of its own goods."""
    orders, cards = world.orders(), world.cards()
    owners: dict[str, list[str]] = {}
    for sn, o in orders.items():
        got = delivered_cards(o)
        if o["status"] == 4 and o["type"] == 1:
            assert len(got) == o["buy_amount"], f"{sn} holds {got} for buy_amount {o['buy_amount']}"
        for card in got:
            assert card in cards and cards[card]["goods_id"] == o["goods_id"], f"{sn}: {card} is not its goods'"
            owners.setdefault(card, []).append(sn)
    for card, sns in owners.items():
        if cards[card]["is_loop"]:
            assert cards[card]["status"] == 1, f"loop card {card} marked sold"
        else:
            assert sns == [sns[0]], f"single-use card {card} delivered to {sns}"
            assert cards[card]["status"] == 2, f"{card} delivered to {sns} but not marked sold"
    sold = {c for c, v in cards.items() if v["status"] == 2}
    assert sold == {c for c in owners if not cards[c]["is_loop"]}, f"sold but owned by no order: {sold - set(owners)}"
