"""The measured phases of the benchmark. Each runs in a fresh child process (see ``bench.run.in_child``),
so its wall time and peak RSS are its own, not the generator's or another phase's."""

from __future__ import annotations

import resource
import time
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from bench.generate import CHANNELS, DAY, NULL, Day

if TYPE_CHECKING:  # recon is imported inside each phase, in its own process
    from recon.config import Config
    from recon.pipeline import RunSummary

STORE_MEMORY_LIMIT = "1GB"
# The statements' columns the bare baseline needs, by position (0-based) in each native layout.
ALIPAY_ORDER, ALIPAY_AMOUNT = 1, 12   # 商户订单号, 商家实收（元）
WECHAT_ORDER, WECHAT_AMOUNT = 6, 12  # 商户订单号, 应结订单金额 (the 7-cell summary rows have no 13th cell)

CONFIG = """\
[store]
path = "recon.duckdb"
memory_limit = "{memory_limit}"
[shop]
{shop}
schema = "dujiaoka"
[reports]
formats = ["xlsx"]
language = "en"
[[channels]]
id = "alipay"
kind = "alipay"
shop_pay_ids = [{alipay}]
grace_hours = 0
[[channels]]
id = "wechat"
kind = "wechatpay"
shop_pay_ids = [{wechat}]
grace_hours = 0
[[channels]]
id = "pay"
kind = "csv"
shop_pay_ids = [{pay}]
grace_hours = 0
[channels.mapping]
columns = {{ channel_txn_id = "txn", order_no = "order", occurred_at = "time", amount = "amount" }}
"""

BASELINE = r"""
WITH c AS (
    SELECT trim(column{ao:02d}, chr(9)) AS order_no, trim(column{aa:02d}, chr(9)) AS amount
    FROM read_csv('{alipay}', header = false, skip = 1, comment = '#', all_varchar = true)
    UNION ALL
    SELECT ltrim(column{wo:02d}, '`'), ltrim(column{wa:02d}, '`')
    FROM read_csv('{wechat}', header = false, skip = 1, all_varchar = true, null_padding = true, strict_mode = false)
    WHERE column{wa:02d} IS NOT NULL
    UNION ALL
    SELECT "order", amount FROM read_csv('{generic}', all_varchar = true)
),
s AS (SELECT * FROM read_csv('{shop}', all_varchar = true, nullstr = '{null}'))
SELECT CASE WHEN s.order_sn IS NULL THEN 'channel_only'
            WHEN c.order_no IS NULL THEN 'shop_only'
            WHEN c.amount::DECIMAL(20,6) <> s.actual_price::DECIMAL(20,6) THEN 'amount_mismatch'
            WHEN s.status = '1' THEN 'missing_callback'
            ELSE 'matched' END AS code, count(*) AS n
FROM c FULL OUTER JOIN s ON upper(c.order_no) = upper(s.order_sn)
GROUP BY ALL ORDER BY code
"""


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_config(folder: Path, shop: str, name: str = "recon.toml") -> Path:
    path = folder / name
    pay_ids = {channel: pay_id for channel, (pay_id, _) in CHANNELS.items()}
    path.write_text(CONFIG.format(memory_limit=STORE_MEMORY_LIMIT, shop=shop, **pay_ids), encoding="utf-8")
    return path


def baseline(day: Day, folder: Path) -> dict[str, Any]:
    """A bare DuckDB read + join + classify of the same files (the GBK bill decoded once, as any reader must)."""
    start = time.perf_counter()
    alipay_utf8 = folder / "baseline_alipay_utf8.csv"
    alipay_utf8.write_bytes(day.statements["alipay"].read_bytes().decode("gb18030").encode("utf-8"))
    sql = BASELINE.format(alipay=alipay_utf8, wechat=day.statements["wechat"], generic=day.statements["pay"],
                          shop=day.shop_export, null=NULL, ao=ALIPAY_ORDER, aa=ALIPAY_AMOUNT, wo=WECHAT_ORDER,
                          wa=WECHAT_AMOUNT)
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")
        counts = {str(k): int(v) for k, v in con.execute(sql).fetchall()}
    seconds = time.perf_counter() - start
    alipay_utf8.unlink()
    return {"seconds": seconds, "counts": counts, "rss": peak_rss_mib()}


def import_day(day: Day, config: Config) -> float:
    """Import every statement of ``day`` into the store of ``config``; the seconds it took."""
    from recon.importer import import_file, read_statements
    from recon.lock import store_lock
    from recon.store import open_store

    start = time.perf_counter()
    files = list(day.statements.items())
    # As `recon import` reads its files: hashed ahead, the first while the store opens.
    reads = read_statements([(path, config.channel(channel).kind) for channel, path in files])
    with store_lock(config.store_path), open_store(config, write=True) as con:
        for (channel, path), read in zip(files, reads, strict=True):
            import_file(con, config, channel, path, read=read.result())
    return time.perf_counter() - start


def reconcile_day(day: Day, config: Config) -> tuple[RunSummary, dict[str, float]]:
    """Reconcile ``day`` (shop load, classification, ledger, workbook): its summary, and the seconds of the
    run (as the store records it) and of the report after it."""
    from jobs.reconcile import reconcile

    start = time.perf_counter()
    summary, _ = reconcile(config, day.business_date, None, "bench", fetch=False)
    reconciled = time.perf_counter() - start
    with duckdb.connect(str(config.store_path), read_only=True) as con:
        [(run_seconds,)] = con.execute("SELECT epoch(finished_at - started_at) FROM runs WHERE run_id = ?",
                                       [summary.run_id]).fetchall()
    return summary, {"reconcile": reconciled, "run": float(run_seconds), "report": reconciled - float(run_seconds)}


def recon_end_to_end(day: Day, config_path: Path) -> dict[str, Any]:
    """Import every statement, reconcile the day (shop load, classification, ledger), write the workbook."""
    from recon.config import load_config

    config = load_config(config_path)
    times = {"import": import_day(day, config)}
    summary, run_times = reconcile_day(day, config)
    times.update(run_times)
    times["reimport"] = import_day(day, config)
    return {"times": times, "counts": dict(summary.counts), "reports": summary.reports, "rss": peak_rss_mib()}


def shop_into_store(config_path: Path) -> dict[str, Any]:
    """Read the day's shop orders into an empty store: the shop-load step of a run, timed alone."""
    from recon.classify import prepare
    from recon.config import load_config
    from recon.lock import store_lock
    from recon.pipeline import load_shop_orders
    from recon.shops import open_shop
    from recon.store import open_store

    config = load_config(config_path)
    with store_lock(config.store_path), open_store(config, write=True) as con:
        prepare(con)
        start = time.perf_counter()
        rows = load_shop_orders(con, open_shop(config), list(config.channels), date.fromisoformat(DAY))
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": rows, "rss": peak_rss_mib()}


def day_after_day(days: list[Day], configs: list[Path]) -> dict[str, Any]:
    """Each day's statements imported and the day reconciled, one day after the other, into one store (the
    configs differ only in the day's shop export): what the nightly job costs as the store's history grows."""
    from recon.config import load_config

    per_day = []
    for day, config_path in zip(days, configs, strict=True):
        config = load_config(config_path)
        imported = import_day(day, config)
        summary, times = reconcile_day(day, config)
        per_day.append({"date": day.business_date.isoformat(), "import": imported, "run": times["run"],
                        "report": times["report"], "counts": dict(summary.counts), "expected": day.expected})
    return {"days": per_day, "rss": peak_rss_mib()}


# What the store keeps of a day, one row each (README "The store"): a statement line, a shop order, a result.
STORED_TABLES = ("channel_txn", "shop_orders", "results")
FLOOR_COPY = "bench_store_floor"


def store_floor(config_path: Path) -> dict[str, Any]:
    """What storing the day costs DuckDB alone, in the store recon's end-to-end run left: each table of
    STORED_TABLES copied whole into a fresh table, committed, under the store's memory limit, then dropped.

    Nothing is parsed, joined or classified: this is the part of recon's time that no code of its own can
    save while the store keeps every statement line, shop order and result, beside the bare join's.
    """
    from recon.config import load_config
    from recon.lock import store_lock
    from recon.store import open_store, unordered_inserts

    config = load_config(config_path)
    seconds: dict[str, float] = {}
    rows: dict[str, int] = {}
    with store_lock(config.store_path), open_store(config, write=True) as con, unordered_inserts(con):
        for table in STORED_TABLES:
            con.execute(f"DROP TABLE IF EXISTS {FLOOR_COPY}")
            con.execute("CHECKPOINT")  # the copy's writes are its own, not the ones left before it
            start = time.perf_counter()
            con.execute("BEGIN")
            con.execute(f"CREATE TABLE {FLOOR_COPY} AS SELECT * FROM {table}")
            con.execute("COMMIT")
            seconds[table] = time.perf_counter() - start
            [(rows[table],)] = con.execute(f"SELECT count(*) FROM {FLOOR_COPY}").fetchall()
        con.execute(f"DROP TABLE {FLOOR_COPY}")
    return {"seconds": seconds, "rows": rows, "rss": peak_rss_mib()}
