"""One reconciliation run: load shop orders, classify each channel's date, update the ledger."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import duckdb
import polars as pl

from recon.classify import KEY, classify, end_run, prepare, prepare_run, shop_window
from recon.config import ChannelConfig, Config
from recon.errors import Interrupted, ReconError
from recon.faults import pause_point
from recon.frames import insert_frame, repeated
from recon.fetching import FetchOutcome
from recon.ledger import update_from_run
from recon.money import money_str
from recon.shops import ShopAdapter, open_shop
from recon.store import ROW_GROUP_ROWS
from recon.taxonomy import WAITING_CODES


@dataclass
class RunSummary:
    """What a run found, in the shape of ``recon run --json`` (DESIGN §7)."""

    run_id: int
    business_date: date
    channels: list[str]
    counts: dict[str, int]
    amounts: dict[str, Decimal]
    differences: dict[str, Decimal]
    exceptions_open: int
    needs_person: int
    incomplete_channels: list[str]
    ledger: dict[str, int]
    repairs: dict[str, int] = field(default_factory=lambda: {"planned": 0, "applied": 0, "skipped": 0, "failed": 0})
    reports: list[str] = field(default_factory=list)
    fetch: list[FetchOutcome] = field(default_factory=list)
    alerts: list[Any] = field(default_factory=list)  # reports.alerts.AlertOutcome, one per webhook / mail
    repair_report: Any = None  # recon.repair.run.RepairReport when the run applied repairs

    @property
    def fetch_failed(self) -> list[FetchOutcome]:
        return [f for f in self.fetch if f.error is not None]

    def to_json(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "business_date": self.business_date.isoformat(),
            "channels": self.channels,
            "counts": self.counts,
            "amounts": {k: money_str(v) for k, v in self.amounts.items()},
            "differences": {k: money_str(v) for k, v in self.differences.items()},
            "exceptions_open": self.exceptions_open,
            "needs_person": self.needs_person,
            "incomplete_channels": self.incomplete_channels,
            "repairs": self.repairs,
            "reports": self.reports,
            "fetch": [{"channel": f.channel, "mode": f.mode,
                       "rows_new": sum(i.rows_new for i in f.imports),
                       "error": str(f.error) if f.error else None} for f in self.fetch],
            "alerts": [{"target": a.target, "status": a.status} for a in self.alerts],
        }


def abort_stale_runs(con: duckdb.DuckDBPyConnection) -> int:
    """Runs left 'running' by a killed process; call only while holding the store lock."""
    rows = con.execute(
        "UPDATE runs SET status = 'aborted', finished_at = now(), error = 'the process ended without finishing' "
        "WHERE status = 'running' RETURNING run_id"
    ).fetchall()
    return len(rows)


# How far an earlier read of an order may have put its creation time from this read's: wall clocks of the shop
# zone (changed in the config between two runs) differ by at most 26 hours.
EARLIER_COPY_MARGIN = timedelta(days=2)


def load_shop_orders(con: duckdb.DuckDBPyConnection, shop: ShopAdapter, channels: list[ChannelConfig],
                     day: date, loaded_at: datetime | None = None) -> int:
    """Refresh shop_orders for the day's window, the orders the day's channel rows name and carried ones.

    Orders of recent ``pending`` exceptions are re-read even once closed, so a rerun of a date sees
    the carried order as the shop has it now. The window is stored a batch at a time as the shop hands
    it over, so a day of millions of orders is never held in memory whole. The orders are stored as read at
    ``loaded_at`` (now by default). Returns the orders loaded.
    """
    start, end = shop_window(day, channels)
    loaded_at = loaded_at or datetime.now(UTC)
    # The 64-bit hash of every order number stored: when none repeats, no order was stored twice (see below).
    stored = [_append_orders(con, batch, loaded_at) for batch in _whole_row_groups(shop.order_batches(start, end))]
    # The orders named by the date's rows and the ledger that the window did not hold: asked for by number, and
    # kept as ``named_orders`` for the run (``on_rows``: named by the date's channel rows), whose classification
    # takes an earlier read of one the shop no longer hands over (recon.classify).
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE named_orders AS
        WITH named AS (
            SELECT order_no, true AS on_rows FROM channel_txn
            WHERE order_no IS NOT NULL AND business_date = $d AND list_contains($channels, channel)
            UNION ALL
            SELECT order_no, false FROM exceptions
            WHERE order_no IS NOT NULL AND list_contains($channels, channel)
              AND (status = 'open' OR (code = 'pending' AND business_date >= $d - INTERVAL 7 DAY))
        )
        -- Told apart only once the loaded orders are taken away: of millions of names, a few thousand are left.
        SELECT order_no, bool_or(on_rows) AS on_rows FROM named
        WHERE {KEY} NOT IN (SELECT {KEY} FROM shop_orders WHERE loaded_at = $at)
        GROUP BY order_no
        """,
        {"d": day, "channels": [c.id for c in channels], "ci": shop.case_insensitive, "at": loaded_at},
    )
    [named] = con.execute("SELECT list(order_no ORDER BY order_no) FROM named_orders").fetchone() or [None]
    if named:
        stored.append(_append_orders(con, shop.orders_by_no(named, loaded=(start, end)), loaded_at))
    if not _distinct(stored):
        _keep_first_read(con, loaded_at)
    # The rows of earlier runs for the orders read now. An order's creation time does not change, so the earlier
    # rows of the window's orders are among the window's days (with a margin for a shop zone changed in between):
    # the store's zone maps pass over the other days, which a store of months holds by the hundred million. The
    # orders asked for by number may have been created on any day; there are few.
    con.execute(
        "DELETE FROM shop_orders WHERE loaded_at <> $at AND created_at >= $since AND created_at < $until "
        "AND order_no IN (SELECT order_no FROM shop_orders WHERE loaded_at = $at AND created_at >= $start "
        "AND created_at < $end)",
        {"at": loaded_at, "start": start, "end": end, "since": start - EARLIER_COPY_MARGIN,
         "until": end + EARLIER_COPY_MARGIN})
    con.execute(
        "DELETE FROM shop_orders WHERE loaded_at <> $at AND order_no IN (SELECT order_no FROM shop_orders "
        "WHERE loaded_at = $at AND NOT (created_at >= $start AND created_at < $end))",
        {"at": loaded_at, "start": start, "end": end})
    [(loaded,)] = con.execute("SELECT count(*) FROM shop_orders WHERE loaded_at = $at", {"at": loaded_at}).fetchall()
    return int(loaded)


def _distinct(hashes: list[pl.Series]) -> bool:
    """True when no hash repeats across the batches: then no order was stored twice (a repeat needs equal
    hashes; equal hashes of two orders only cost the exact look in ``_keep_first_read``)."""
    every = pl.concat(hashes) if hashes else pl.Series(dtype=pl.UInt64)
    return every.n_unique() == every.len()


def _keep_first_read(con: duckdb.DuckDBPyConnection, loaded_at: datetime) -> None:
    """An order two batches both hold keeps the row read first, as one read of the shop would. Those orders are
    looked for first: there are rarely any, and the delete would compare every row's id."""
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE loaded_twice AS
        SELECT order_no, min(rowid) AS first_row FROM shop_orders WHERE loaded_at = $at
        GROUP BY order_no HAVING count(*) > 1
        """,
        {"at": loaded_at},
    )
    con.execute(
        """
        DELETE FROM shop_orders s USING loaded_twice t
        WHERE s.loaded_at = $at AND s.order_no = t.order_no AND s.rowid <> t.first_row
        """,
        {"at": loaded_at},
    )


def _whole_row_groups(batches: Iterable[pl.DataFrame]) -> Iterator[pl.DataFrame]:
    """The orders of ``batches``, in order, re-cut so that every batch but the last fills whole row groups.

    What is left of a batch is filled up to a row group from the head of the next, and only that group is
    copied into one piece: a batch joined whole to what was left before it was copied every time.
    """
    carried: pl.DataFrame | None = None
    for batch in batches:
        if carried is not None:
            head = batch.head(ROW_GROUP_ROWS - carried.height)
            carried = pl.concat([carried, head], how="vertical_relaxed", rechunk=True)
            batch = batch.slice(head.height)
            if carried.height < ROW_GROUP_ROWS:
                continue
            yield carried
        whole = batch.height - batch.height % ROW_GROUP_ROWS
        carried = batch.slice(whole) if whole < batch.height else None
        if whole:
            yield batch.slice(0, whole).rechunk()  # one Arrow chunk (as a batch mostly is already)
    if carried is not None:
        yield carried


def _append_orders(con: duckdb.DuckDBPyConnection, orders: pl.DataFrame, loaded_at: datetime) -> pl.Series:
    """Append a batch of orders read at ``loaded_at``; within the batch an order keeps its first row. Returns
    the 64-bit hashes of the order numbers stored."""
    if orders.is_empty():
        return pl.Series(dtype=pl.UInt64)
    columns = [d[0] for d in con.execute("SELECT * FROM shop_orders LIMIT 0").description]
    # Asked first: a batch rarely repeats an order, and keeping the first of each copies every column.
    if repeated(orders["order_no"]).any():
        orders = orders.unique(subset="order_no", keep="first", maintain_order=True)
    batch = orders.with_columns(loaded_at=pl.lit(loaded_at))
    batch = batch.select([pl.col(c) if c in batch.columns else pl.lit(None, pl.String).alias(c) for c in columns])
    insert_frame(con, "shop_orders", batch)  # the batch is appended after the ones before it all the same
    return orders["order_no"].hash()


def channel_complete(con: duckdb.DuckDBPyConnection, channel_id: str, day: date) -> bool:
    """True when an import for the channel covers the whole business date."""
    row = con.execute(
        "SELECT count(*) FROM imports WHERE channel = ? AND period_start <= ? AND period_end >= ?",
        [channel_id, day, day],
    ).fetchone()
    return bool(row and row[0])


def run(con: duckdb.DuckDBPyConnection, config: Config, day: date, channel_ids: list[str] | None,
        command: str, finish: bool = True) -> RunSummary:
    """Reconcile ``day`` for the channels (all when None). Results and ledger change in one transaction.

    With ``finish=False`` the run stays ``running`` after that commit: the caller does more of the
    run's work (repairs) and calls ``finish_run``; a crash in between leaves it to be marked aborted,
    so the scheduler does not take the date as done.
    """
    # A channel named twice (`--channel x --channel x`) is classified once: its rows would be counted twice.
    channels = [config.channel(c) for c in dict.fromkeys(channel_ids)] if channel_ids else list(config.channels)
    abort_stale_runs(con)
    run_id = start_run(con, day, [c.id for c in channels], command, "reconcile")
    try:
        shop = open_shop(config)
        prepare(con)
        con.execute("BEGIN")
        try:
            loaded_at = datetime.now(UTC)
            load_shop_orders(con, shop, channels, day, loaded_at)
            parts = prepare_run(con, shop.case_insensitive, day, channels, loaded_at)
            incomplete = []
            for ch in channels:
                complete = channel_complete(con, ch.id, day)
                if not complete:
                    incomplete.append(ch.id)
                classify(con, run_id, ch, day, shop, complete, parts)
            end_run(con)
            ledger = update_from_run(con, run_id, config.reports.language if config.reports.language == "en" else "zh")
            pause_point("before_commit")
            con.execute(
                "UPDATE runs SET status = ?, finished_at = ?, incomplete_channels = ? WHERE run_id = ?",
                ["succeeded" if finish else "running", datetime.now(UTC) if finish else None, incomplete, run_id],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    except (ReconError, duckdb.Error, OSError) as exc:
        status = "aborted" if isinstance(exc, Interrupted) else "failed"
        con.execute("UPDATE runs SET status = ?, finished_at = ?, error = ? WHERE run_id = ?",
                    [status, datetime.now(UTC), str(exc)[:2000], run_id])
        raise
    return summarise(con, run_id, day, [c.id for c in channels], incomplete, ledger)


def start_run(con: duckdb.DuckDBPyConnection, day: date, channels: list[str], command: str, kind: str) -> int:
    """A ``running`` row in ``runs`` for this process (kind reconcile or sweep); its id."""
    [(run_id,)] = con.execute("SELECT nextval('run_ids')").fetchall()
    con.execute(
        "INSERT INTO runs (run_id, business_date, channels, status, command, pid, host, started_at, kind) "
        "VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?)",
        [run_id, day, channels, command, os.getpid(), socket.gethostname(), datetime.now(UTC), kind],
    )
    return int(run_id)


def finish_run(con: duckdb.DuckDBPyConnection, run_id: int) -> None:
    """Mark a run left ``running`` by ``run(..., finish=False)`` as succeeded, its work all done."""
    con.execute("UPDATE runs SET status = 'succeeded', finished_at = ? WHERE run_id = ? AND status = 'running'",
                [datetime.now(UTC), run_id])


def summarise(con: duckdb.DuckDBPyConnection, run_id: int, day: date, channels: list[str], incomplete: list[str],
              ledger: dict[str, int]) -> RunSummary:
    rows = con.execute(
        """
        SELECT code, sum(results), sum(amount), sum(difference)
        FROM run_counts WHERE run_id = ? GROUP BY code ORDER BY code
        """,
        [run_id],
    ).fetchall()
    open_rows = con.execute(
        """
        SELECT count(*), count(*) FILTER (WHERE auto_repairable)
        FROM exceptions WHERE status = 'open' AND list_contains($channels, channel)
        """,
        {"channels": channels},
    ).fetchone()
    assert open_rows is not None
    summary = RunSummary(
        run_id=run_id, business_date=day, channels=channels,
        counts={str(c): int(n) for c, n, _, _ in rows},
        amounts={str(c): Decimal(a) for c, _, a, _ in rows},
        differences={str(c): Decimal(d) for c, _, _, d in rows},
        exceptions_open=int(open_rows[0]), needs_person=count_needing_person(con, channels),
        incomplete_channels=incomplete,
        ledger=ledger,
    )
    summary.repairs["planned"] = int(open_rows[1])
    return summary


def count_needing_person(con: duckdb.DuckDBPyConnection, channels: list[str]) -> int:
    """Open exceptions of the channels that wait for a person (not for evidence)."""
    row = con.execute(
        "SELECT count(*) FROM exceptions WHERE status = 'open' AND NOT list_contains($waiting, code) "
        "AND list_contains($channels, channel)",
        {"channels": channels, "waiting": list(WAITING_CODES)},
    ).fetchone()
    return int(row[0]) if row else 0
