"""``python -m bench.run --orders 100000 1000000``: recon end to end vs a bare DuckDB join of the same files.

For each N: generates a business day (bench/generate.py), runs the bare DuckDB baseline and recon end to
end (import of every statement, shop load, classification, ledger, exception workbook), re-imports the
same files, and checks recon's counts against the seeded differences and the baseline's. With
``--days K`` K consecutive days are also reconciled one after the other into one store, each day's import
and run timed (a run must not cost more as the store's history grows). With
``--mariadb DSN`` / ``--postgres DSN`` the same orders are also loaded into dujiaoka's table there and read
into a store through the ``dujiaoka`` shop kind. The store floor is what storing the day costs DuckDB alone: the
day's channel rows, shop orders and results, as recon left them, each copied into a fresh table of the same store.
Every phase runs in its own child process, so the peak RSS printed is that phase's. Exit 1 when counts disagree.
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import recon  # noqa: F401  first: its allocator setting reaches polars in every phase's process (recon/__init__.py)
from bench import phases
from bench.generate import Day, generate

DEFAULT_MARIADB = "mysql://root@127.0.0.1:3306/recon_bench"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/recon_bench"
# Shop databases the orders can also be read from: option → (label, module whose load_orders fills dujiaoka's table).
DATABASES = {"mariadb": ("MariaDB", "bench.mariadb"), "postgres": ("PostgreSQL", "bench.postgres")}


def in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``fn(*args)`` in a fresh (spawned) process; its result dict."""
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(fn, args)


def _generate(folder: Path, n: int, day_index: int = 0) -> dict[str, Any]:
    day = generate(folder, n, day_index=day_index)
    return {"day": day}


def bench_days(n: int, folder: Path, first: Day, count: int) -> dict[str, Any]:
    """``count`` business days of ``n`` orders (the first already generated) reconciled one after the other
    into one store of their own."""
    history = folder / "days"
    history.mkdir(exist_ok=True)
    for old in history.glob("recon.duckdb*"):
        old.unlink()
    days = [first] + [in_child(_generate, folder / f"day{k}", n, k)["day"] for k in range(1, count)]
    configs = [phases.write_config(history, f'kind = "export"\npath = "{day.shop_export.resolve()}"',
                                   name=f"recon-{day.business_date}.toml") for day in days]
    return in_child(phases.day_after_day, days, configs)


def bench_database(name: str, dsn: str, folder: Path, day: Day) -> dict[str, Any]:
    """The day's orders loaded into dujiaoka's table on database ``name`` (a key of DATABASES) at ``dsn``, then
    read into an empty store through the ``dujiaoka`` shop kind, timed."""
    load_orders = importlib.import_module(DATABASES[name][1]).load_orders
    loaded = load_orders(dsn, day.shop_export)
    db_folder = folder / name
    db_folder.mkdir(exist_ok=True)
    for old in db_folder.glob("recon.duckdb*"):
        old.unlink()
    db_config = phases.write_config(db_folder, f'kind = "dujiaoka"\ndsn = "{dsn}"')
    return {"loaded": loaded, **in_child(phases.shop_into_store, db_config)}


def bench_one(n: int, folder: Path, databases: dict[str, str], days: int = 1) -> dict[str, Any]:
    """All phases at ``n`` orders in ``folder``; a row of the scaling table."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("recon.duckdb*"):
        old.unlink()
    start = time.perf_counter()
    day = in_child(_generate, folder, n)["day"]
    generated = time.perf_counter() - start
    config = phases.write_config(folder, f'kind = "export"\npath = "{day.shop_export.name}"')
    base = in_child(phases.baseline, day, folder)
    recon = in_child(phases.recon_end_to_end, day, config)
    floor = in_child(phases.store_floor, config)
    row = {"n": n, "generated": generated, "baseline": base, "recon": recon, "floor": floor,
           "expected": day.expected, "orders": day.orders}
    for name, dsn in databases.items():
        row[name] = bench_database(name, dsn, folder, day)
    if days > 1:
        row["days"] = bench_days(n, folder, day, days)
    return row


def report(row: dict[str, Any]) -> bool:
    """Print one N's figures; True when the counts agree (and every order of a shop database reached the store)."""
    t, base = row["recon"]["times"], row["baseline"]
    total = t["import"] + t["reconcile"]
    print(f"\n== {row['n']:,} orders (generated in {row['generated']:.1f} s)")
    print(f"baseline (DuckDB read_csv + join + classify): {base['seconds']:.2f} s, peak RSS {base['rss']:.0f} MiB")
    print(f"recon: import {t['import']:.2f} s + run {t['run']:.2f} s + report {t['report']:.2f} s = {total:.2f} s "
          f"→ ratio {total / base['seconds']:.1f}x; re-import {t['reimport']:.3f} s "
          f"({100 * t['reimport'] / t['import']:.1f} % of the import); peak RSS {row['recon']['rss']:.0f} MiB")
    got, expected, bare = row["recon"]["counts"], row["expected"], base["counts"]
    ok = got == expected == bare
    floor = row["floor"]
    # The copies hold the day: every order of the export once, and a result for every unit counted.
    whole = floor["rows"]["shop_orders"] == row["orders"] and floor["rows"]["results"] == sum(expected.values())
    ok = ok and whole
    parts = ", ".join(f"{table} {seconds:.2f} s" for table, seconds in floor["seconds"].items())
    floor_total = sum(floor["seconds"].values())
    print(f"store floor (DuckDB copying what the store keeps of the day: {parts}): {floor_total:.2f} s "
          f"= {floor_total / base['seconds']:.1f}x the baseline{'' if whole else ' MISMATCH ' + str(floor['rows'])}")
    for name, (label, _) in DATABASES.items():
        if name in row:
            m = row[name]
            # Every order of the table is of the day, so all of them are in the run's window.
            agree = m["rows"] == m["loaded"]
            ok = ok and agree
            print(f"{label} (dujiaoka kind): {m['rows']:,} orders into the store in {m['seconds']:.2f} s "
                  f"(table holds {m['loaded']:,}{'' if agree else ' MISMATCH'}), peak RSS {m['rss']:.0f} MiB")
    if "days" in row:
        print(f"day after day into one store (peak RSS {row['days']['rss']:.0f} MiB):")
        for day in row["days"]["days"]:
            agree = day["counts"] == day["expected"]
            ok = ok and agree
            print(f"  {day['date']}: import {day['import']:.2f} s, run {day['run']:.2f} s, report {day['report']:.2f} s"
                  f"{'' if agree else ' MISMATCH ' + str(day['counts'])}")
    print(f"counts recon {dict(sorted(got.items()))}\n       seeded {dict(sorted(expected.items()))}\n"
          f"     baseline {dict(sorted(bare.items()))}\n{'OK' if ok else 'MISMATCH'}")
    return ok


def table(rows: list[dict[str, Any]]) -> None:
    print("\n| orders | baseline s | import s | run s | report s | recon total s | ratio | store floor s (ratio) | "
          "s per 1 M | re-import s | peak RSS MiB | MariaDB → store s | PostgreSQL → store s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        t = row["recon"]["times"]
        total = t["import"] + t["reconcile"]
        db = " | ".join(f"{row[name]['seconds']:.2f}" if name in row else "–" for name in DATABASES)
        floor = sum(row["floor"]["seconds"].values())
        print(f"| {row['n']:,} | {row['baseline']['seconds']:.2f} | {t['import']:.2f} | {t['run']:.2f} | "
              f"{t['report']:.2f} | {total:.2f} | {total / row['baseline']['seconds']:.1f}x | "
              f"{floor:.2f} ({floor / row['baseline']['seconds']:.1f}x) | "
              f"{total / row['n'] * 1e6:.2f} | {t['reimport']:.3f} | {row['recon']['rss']:.0f} | {db} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, nargs="+", default=[100_000])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--days", type=int, default=1,
                        help="also reconcile this many consecutive days into one store, a day at a time, and print "
                             "each day's import and run time (the cost of a growing history)")
    parser.add_argument("--mariadb", nargs="?", const=DEFAULT_MARIADB, default=None, metavar="DSN",
                        help=f"also load the orders into MariaDB/MySQL and time reading them (default {DEFAULT_MARIADB})")
    parser.add_argument("--postgres", nargs="?", const=DEFAULT_POSTGRES, default=None, metavar="DSN",
                        help=f"also load the orders into PostgreSQL and time reading them (default {DEFAULT_POSTGRES})")
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="recon-bench-"))
    print(f"work folder {root}")
    rows, ok = [], True
    for n in args.orders:
        databases = {name: dsn for name, dsn in (("mariadb", args.mariadb), ("postgres", args.postgres)) if dsn}
        row = bench_one(n, root / f"n{n}", databases, args.days)
        ok = report(row) and ok
        rows.append(row)
    table(rows)
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
