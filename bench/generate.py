"""A synthetic business day with seeded differences and the counts they must produce.

Vectorised with polars: generating 1 M orders takes seconds.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from recon.demo import SAMPLES

DAY = "2026-11-20"
# share of orders seeded with each difference (the rest match)
SEEDED = {"missing_callback": 0.02, "shop_only": 0.01, "amount_mismatch": 0.01, "channel_only": 0.01}


@dataclass(frozen=True)
class Day:
    shop: Path
    statement: Path
    shop_csv: Path
    expected: dict[str, int]


def generate(folder: Path, n: int, seed: int = 7) -> Day:
    """Write ``n`` shop orders (dujiaoka SQLite + the same as CSV) and the channel's CSV statement."""
    folder.mkdir(parents=True, exist_ok=True)
    idx = pl.int_range(0, n, eager=True).alias("i")
    frame = pl.DataFrame(idx).with_columns(
        u=pl.col("i").hash(seed) % 10_000 / 10_000,
        order_sn=pl.format("B{}", pl.col("i").cast(pl.String).str.zfill(15)),
        cents=(pl.col("i").hash(seed + 1) % 50_000 + 100),
        second=(pl.col("i") * 79_000 // max(n, 1)),
    )
    edges, code = 0.0, pl.lit("matched")
    for name, share in SEEDED.items():
        code = pl.when((pl.col("u") >= edges) & (pl.col("u") < edges + share)).then(pl.lit(name)).otherwise(code)
        edges += share
    frame = frame.with_columns(code=code).with_columns(
        price=(pl.col("cents") // 100).cast(pl.String) + "." + (pl.col("cents") % 100).cast(pl.String).str.zfill(2),
        created=pl.lit(f"{DAY} 00:00:00").str.strptime(pl.Datetime("us")) + pl.duration(seconds=pl.col("second")),
        trade_no=pl.format("T{}", pl.col("i")),
    )
    shop = frame.filter(pl.col("code") != "channel_only").select(
        order_sn="order_sn", actual_price="price",
        status=pl.when(pl.col("code") == "missing_callback").then(1).otherwise(4),
        pay_id=pl.lit(1), trade_no=pl.when(pl.col("code") == "missing_callback").then(pl.lit("")).otherwise("trade_no"),
        created_at=pl.col("created").dt.strftime("%Y-%m-%d %H:%M:%S"),
    )
    paid = (pl.col("cents") + pl.when(pl.col("code") == "amount_mismatch").then(1).otherwise(0))
    statement = frame.filter(pl.col("code") != "shop_only").select(
        txn="trade_no",
        order=pl.when(pl.col("code") == "channel_only").then(pl.format("X{}", pl.col("i"))).otherwise("order_sn"),
        time=(pl.col("created") + pl.duration(seconds=20)).dt.strftime("%Y-%m-%d %H:%M:%S"),
        amount=(paid // 100).cast(pl.String) + "." + (paid % 100).cast(pl.String).str.zfill(2),
    )
    day = Day(folder / "shop.sqlite", folder / "statement.csv", folder / "shop_orders.csv",
              {k: int(v) for k, v in frame["code"].value_counts().iter_rows()})
    statement.write_csv(day.statement)
    shop.write_csv(day.shop_csv)
    _write_shop(day.shop, shop)
    return day


def _write_shop(path: Path, shop: pl.DataFrame) -> None:
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    con.executescript((SAMPLES / "dujiaoka_sqlite.sql").read_text(encoding="utf-8"))
    con.executemany(
        "INSERT INTO orders (order_sn, goods_id, title, actual_price, status, pay_id, trade_no, created_at, "
        "updated_at, email) VALUES (?, 1, 'bench', ?, ?, ?, ?, ?, ?, 'b@example.com')",
        shop.select("order_sn", "actual_price", "status", "pay_id", "trade_no", "created_at",
                    pl.col("created_at").alias("updated_at")).iter_rows(),
    )
    con.commit()
    con.close()
