"""The benchmark harness at a small N: recon's counts equal the seeded differences and the baseline's, on the
first day and on a second day reconciled into the same store; the day's orders reach a store from dujiaoka's
table on the live MariaDB and PostgreSQL; the store floor's copies hold the whole day."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from pathlib import Path

import psycopg
import pymysql

ROOT = Path(__file__).resolve().parent.parent


def test_bench_counts_agree_at_small_n(tmp_path: Path) -> None:
    database = f"recon_bench_{secrets.token_hex(4)}"
    try:
        done = subprocess.run([sys.executable, "-m", "bench.run", "--orders", "3000", "--days", "2",
                               "--workdir", str(tmp_path),
                               "--mariadb", f"mysql://root@127.0.0.1:3306/{database}",
                               "--postgres", f"postgresql://postgres@127.0.0.1:5432/{database}"],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
    finally:
        with pymysql.connect(host="127.0.0.1", user="root", autocommit=True) as my, my.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as pg:
            pg.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')  # type: ignore[arg-type]
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("OK")
    assert "ratio" in done.stdout
    assert "2026-11-21: import" in done.stdout and "MISMATCH" not in done.stdout
    # What storing the day costs DuckDB alone is measured beside the baseline (its copies held the whole day:
    # a MISMATCH otherwise).
    assert re.search(r"store floor \(DuckDB copying .*channel_txn [\d.]+ s, shop_orders [\d.]+ s, results [\d.]+ s\): "
                     r"[\d.]+ s = [\d.]+x the baseline\n", done.stdout), done.stdout
    # Each database held the day's orders, and every one of them was read into the store.
    for label in ("MariaDB", "PostgreSQL"):
        read = re.search(rf"{label} \(dujiaoka kind\): ([\d,]+) orders into the store .*\(table holds ([\d,]+)\)",
                         done.stdout)
        assert read is not None, done.stdout
        assert read.group(1) == read.group(2) and int(read.group(1).replace(",", "")) > 2900
