"""USDT-TRC20 transfers carry no order number: they match an order by wallet, exact amount and time."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from fetchers.sandbox import Payment, Sandbox
from fetchers.sandbox.trongrid import TronGridSandbox
from jobs.reconcile import reconcile
from recon.config import load_config
from tests.scenario import DAY, SAMPLES

WALLET = "TXYZopYRdj2D9XRtbG411XZZ3kM5VkAeBf"
SH = ZoneInfo("Asia/Shanghai")
CONFIG = """
[store]
path = "recon.duckdb"
[shop]
kind = "sqlite"
path = "shop.sqlite"
schema = "dujiaoka"
currency = "USDT"
[[channels]]
id = "usdt"
kind = "usdt_trc20"
currency = "USDT"
shop_pay_ids = [23]
api = {{ wallet = "{wallet}" }}
api_base = "{base}"
[reports]
formats = []
"""


def order(con: sqlite3.Connection, sn: str, amount: str, created: datetime, status: int) -> None:
    con.execute(
        "INSERT INTO orders (order_sn, goods_id, title, actual_price, email, pay_id, status, created_at, updated_at) "
        "VALUES (?, 1, 't', ?, 'b@example.com', 23, ?, ?, ?)",
        [sn, amount, status, created.strftime("%Y-%m-%d %H:%M:%S"), created.strftime("%Y-%m-%d %H:%M:%S")])


def test_transfers_match_orders_by_exact_amount_after_creation(tmp_path: Path) -> None:
    noon = datetime(2026, 11, 20, 12, 0, tzinfo=SH)
    con = sqlite3.connect(tmp_path / "shop.sqlite")
    con.executescript((SAMPLES / "dujiaoka_sqlite.sql").read_text(encoding="utf-8"))
    order(con, "U1PAID", "10.01", noon, 4)             # paid and delivered: matched
    order(con, "U2LOST", "10.02", noon, 1)             # paid on chain, shop never heard: missing_callback
    order(con, "U3LATE", "10.03", noon, -1)            # paid two hours after creation: too late to match
    order(con, "U4NONE", "10.04", noon, -1)            # never paid: unpaid
    con.commit()
    con.close()
    transfers = [Payment("", Decimal("10.01"), "a" * 64, noon + timedelta(minutes=3), currency="USDT"),
                 Payment("", Decimal("10.02"), "b" * 64, noon + timedelta(minutes=9), currency="USDT"),
                 Payment("", Decimal("10.03"), "c" * 64, noon + timedelta(hours=2), currency="USDT"),
                 Payment("", Decimal("10.00"), "d" * 64, noon - timedelta(minutes=1), currency="USDT")]
    with Sandbox(TronGridSandbox(WALLET, transfers)) as sandbox:
        (tmp_path / "recon.toml").write_text(CONFIG.format(wallet=WALLET, base=sandbox.url("/trongrid")),
                                             encoding="utf-8")
        summary, data = reconcile(load_config(tmp_path / "recon.toml"), DAY, None, "test", formats=[])
    assert summary.fetch_failed == []
    codes = {e["order_no"] or e["channel_txn_id"]: e["code"] for e in data.exceptions.iter_rows(named=True)}
    assert summary.counts == {"matched": 1, "missing_callback": 1, "channel_only": 2, "unpaid": 2}
    assert codes == {"U2LOST": "missing_callback", "c" * 64: "channel_only", "d" * 64: "channel_only"}
    assert summary.amounts["missing_callback"] == Decimal("10.02")
