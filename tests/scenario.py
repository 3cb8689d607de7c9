"""A small shop and a generic-CSV channel built per test: real SQLite shop, real DuckDB store."""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from jobs.reconcile import reconcile
from recon.config import Config, load_config
from recon.importer import ImportOutcome, import_file
from recon.lock import store_lock
from recon.pipeline import RunSummary
from recon.store import open_store
from reports import ReportData, load_report

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
DAY = date(2026, 11, 20)

CHANNEL_TOML = """
[[channels]]
id = "pay"
kind = "csv"
shop_pay_ids = [1]
auto_repair_max = 500
{extra}
[channels.mapping]
columns = {{ channel_txn_id = "txn", order_no = "order", kind = "kind", occurred_at = "time", amount = "amount", currency = "currency", fee = "fee", status = "status" }}
"""
STATEMENT_COLUMNS = ("txn", "order", "kind", "time", "amount", "currency", "fee", "status")


class Scenario:
    """One shop (dujiaoka tables in SQLite) and one ``csv`` channel ``pay`` mapped to pays.id 1."""

    def __init__(self, folder: Path, channel_extra: str = "", more_channels: str = "") -> None:
        self.folder = folder
        self.shop_path = folder / "shop.sqlite"
        con = sqlite3.connect(self.shop_path)
        con.executescript((SAMPLES / "dujiaoka_sqlite.sql").read_text(encoding="utf-8"))
        con.close()
        (folder / "recon.toml").write_text(
            '[store]\npath = "recon.duckdb"\n\n[shop]\nkind = "sqlite"\npath = "shop.sqlite"\nschema = "dujiaoka"\n'
            + CHANNEL_TOML.format(extra=channel_extra) + more_channels
            + '\n[reports]\nout_dir = "reports"\nformats = []\n',
            encoding="utf-8",
        )
        self.config: Config = load_config(folder / "recon.toml")
        self._files = 0

    def order(self, sn: str, amount: str, status: int = 4, pay_id: int = 1, trade_no: str = "",
              created: str = "2026-11-20 10:00:00", goods_type: int = 1) -> None:
        con = sqlite3.connect(self.shop_path)
        con.execute(
            "INSERT INTO orders (order_sn, goods_id, title, type, goods_price, total_price, actual_price, email, "
            "pay_id, trade_no, status, created_at, updated_at) VALUES (?, 1, 't', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [sn, goods_type, amount, amount, amount, f"{sn.lower()}@example.com", pay_id, trade_no, status,
             created, created],
        )
        con.commit()
        con.close()

    def stock(self, cards: int = 3) -> None:
        """Goods 1 (an auto-delivered card, ¥10) with ``cards`` unsold cards CARD-0…"""
        con = sqlite3.connect(self.shop_path)
        con.execute("INSERT INTO goods (id, group_id, gd_name, actual_price, type, in_stock) "
                    "VALUES (1, 1, '点卡', '10.00', 1, 0)")
        con.executemany("INSERT INTO carmis (goods_id, status, carmi) VALUES (1, 1, ?)",
                        [(f"CARD-{i}",) for i in range(cards)])
        con.commit()
        con.close()

    def statement(self, rows: list[dict[str, str]], name: str | None = None) -> Path:
        """A statement file of channel ``pay``; each row gives txn/order/amount and optionally the rest."""
        self._files += 1
        path = self.folder / (name or f"statement_{self._files}.csv")
        with open(path, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(STATEMENT_COLUMNS)
            for row in rows:
                full = {"kind": "payment", "time": "2026-11-20 10:00:30", "currency": "CNY", "fee": "",
                        "status": "success", **row}
                writer.writerow([full.get(c, "") for c in STATEMENT_COLUMNS])
        return path

    @contextmanager
    def store(self, write: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        with open_store(self.config, write=write) as con:
            yield con

    def import_(self, path: Path, channel: str = "pay") -> ImportOutcome:
        with store_lock(self.config.store_path), self.store() as con:
            return import_file(con, self.config, channel, path)

    def run(self, day: date = DAY, channels: list[str] | None = None) -> RunSummary:
        summary, _ = reconcile(self.config, day, channels, "test run", formats=[])
        return summary

    def query(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        with self.store(write=False) as con:
            cur = con.execute(sql, params or [])
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def results(self, run_id: int) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM results WHERE run_id = ? ORDER BY unit_key", [run_id])

    def result(self, run_id: int, key: str) -> dict[str, Any]:
        found = [r for r in self.results(run_id) if r["unit_key"] == key]
        assert len(found) == 1, f"{key}: {found}"
        return found[0]

    def exceptions(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM exceptions ORDER BY id")


def full_report(folder: Path, run_id: int) -> ReportData:
    """A run's report read as ``recon report --format csv,parquet`` reads it: with every result row."""
    with open_store(load_config(folder / "recon.toml"), write=False) as con:
        return load_report(con, None, run_id, "Asia/Shanghai")
