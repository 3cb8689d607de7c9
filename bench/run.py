"""``python -m bench.run --orders 100000``: recon end to end vs a bare DuckDB join, same data, same process.

Prints wall times, peak RSS and the ratio to the baseline, and checks recon's counts against the
seeded differences (exit 1 when they disagree).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from bench.generate import DAY, generate
from jobs.reconcile import reconcile
from recon.config import load_config
from recon.importer import import_file
from recon.lock import store_lock
from recon.store import open_store

CONFIG = """\
[store]
path = "recon.duckdb"
[shop]
kind = "sqlite"
path = "shop.sqlite"
schema = "dujiaoka"
[[channels]]
id = "pay"
kind = "csv"
shop_pay_ids = [1]
grace_hours = 0
[channels.mapping]
columns = { channel_txn_id = "txn", order_no = "order", occurred_at = "time", amount = "amount" }
[reports]
formats = []
"""

BASELINE = """
WITH c AS (SELECT * FROM read_csv('{statement}', all_varchar = true)),
     s AS (SELECT * FROM read_csv('{shop}', all_varchar = true))
SELECT CASE WHEN s.order_sn IS NULL THEN 'channel_only'
            WHEN c.order IS NULL THEN 'shop_only'
            WHEN c.amount::DECIMAL(20,6) <> s.actual_price::DECIMAL(20,6) THEN 'amount_mismatch'
            WHEN s.status = '1' THEN 'missing_callback'
            ELSE 'matched' END AS code, count(*) AS n
FROM c FULL OUTER JOIN s ON upper(c.order) = upper(s.order_sn)
GROUP BY ALL ORDER BY code
"""


def timed(step: str, times: dict[str, float], fn, *args):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn(*args)
    times[step] = time.perf_counter() - start
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="recon-bench-"))
    day = generate(folder, args.orders)
    (folder / "recon.toml").write_text(CONFIG, encoding="utf-8")
    config = load_config(folder / "recon.toml")
    times: dict[str, float] = {}

    baseline = timed("baseline", times, lambda: duckdb.connect().execute(
        BASELINE.format(statement=day.statement, shop=day.shop_csv)).fetchall())

    def do_import() -> None:
        with store_lock(config.store_path), open_store(config, write=True) as con:
            import_file(con, config, "pay", day.statement)

    timed("import", times, do_import)
    summary, _ = timed("run", times, reconcile, config, __import__("datetime").date.fromisoformat(DAY), None,
                       "bench", [], None)
    timed("reimport", times, do_import)
    recon_total = times["import"] + times["run"]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"orders {args.orders:,}  folder {folder}")
    print(f"baseline (DuckDB read_csv + join + classify): {times['baseline']:.2f} s")
    print(f"recon import {times['import']:.2f} s + run {times['run']:.2f} s = {recon_total:.2f} s "
          f"→ ratio {recon_total / times['baseline']:.1f}x; re-import {times['reimport']:.3f} s; "
          f"peak RSS {rss_mb:.0f} MiB")
    got = {k: v for k, v in summary.counts.items()}
    expected = day.expected
    base = {k: int(v) for k, v in baseline}
    ok = got == expected == base
    print(f"counts recon {got}\n       seeded {expected}\n     baseline {base}\n{'OK' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
