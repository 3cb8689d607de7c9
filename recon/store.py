"""The DuckDB store: one file, opened per command, one writer process at a time (see recon.lock)."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from recon.config import Config
from recon.errors import LockBusy, StoreError
from recon.filecopy import copy_file
from recon.migrations import MIGRATIONS

# A reader waits this long for a writer to close the file before reading the last published
# snapshot instead, or, when there is none, before giving up with exit 75.
READ_WAIT_SECONDS = 15.0
SNAPSHOT_WAIT_SECONDS = 2.0

log = logging.getLogger("recon.store")


def snapshot_path(path: Path) -> Path:
    return path.with_name(path.name + ".snapshot")


def publish_snapshot(config: Config) -> Path | None:
    """Copy the closed store for readers (``recon report``, ``exceptions list``, ``jobs``, the console).

    DuckDB lets one process open a file while it writes, so a reader arriving during a long run
    reads this copy of the last finished run instead of waiting. Call it holding the writer lock,
    after the write connection is closed (closing checkpoints the WAL into the file).
    """
    if not config.store.snapshot:
        return None
    source = config.store_path
    target = snapshot_path(source)
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        copy_file(source, partial)  # shares the blocks where the file system can
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        log.warning("could not publish the store snapshot for readers: %s", exc)
        return None
    return target


# Rows of one DuckDB row group. Bulk inserts hand DuckDB whole row groups where they can: an insert that ends in a
# part-filled group leaves it for the commit's checkpoint to merge, and the checkpoint rewrites every group it
# merges (ten million shop orders stored in 29 batches: 4.8 s at the commit, not 0.1 s).
ROW_GROUP_ROWS = 122_880


@contextmanager
def unordered_inserts(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Inserts inside run in parallel, their rows stored in whatever order the threads finish.

    For bulk inserts of rows that carry no order of their own (a run's results, the shop's orders):
    keeping the order of the SELECT makes DuckDB write a million rows on one thread, twice as slow.
    Ids handed out by nextval inside the insert must not rely on the order, so it is never used there.
    """
    con.execute("SET preserve_insertion_order = false")
    try:
        yield
    finally:
        try:
            con.execute("RESET preserve_insertion_order")
        except duckdb.Error:
            pass  # an aborted transaction refuses even this; the connection is rolled back and closed after it


# The connection variable holding the store's configured memory limit (see memory_capped).
CONFIGURED_MEMORY_LIMIT = "recon_memory_limit"
# Sizes as DuckDB writes them ("953.6 MiB") and as a config gives them ("1GB").
# No limit (-1) reads "16383.9 PiB".
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTPE]?i?B|bytes)\s*$", re.IGNORECASE)
_UNITS = {"bytes": 1, "b": 1, **{f"{p}b": 1000.0 ** n for n, p in enumerate("kmgtpe", 1)},
          **{f"{p}ib": 1024.0 ** n for n, p in enumerate("kmgtpe", 1)}}


def size_bytes(size: str) -> float:
    """Bytes of a memory size such as ``1GB`` or ``953.6 MiB``."""
    found = _SIZE.match(size)
    if found is None:
        raise ValueError(f"not a memory size: {size!r}")
    return float(found.group(1)) * _UNITS[found.group(2).lower()]


@contextmanager
def memory_capped(con: duckdb.DuckDBPyConnection, limit: str) -> Iterator[None]:
    """DuckDB's memory held to ``limit`` inside (never raised above the connection's own limit).

    Lowering the limit makes DuckDB let go of the blocks it keeps cached up to it. For a step whose rows land in
    Python: after a run of ten million orders a gigabyte of its blocks stayed cached beside a report's million
    fetched exceptions, and the process went past 2 GB.
    """
    [(shown, configured)] = con.execute(
        f"SELECT current_setting('memory_limit'), getvariable('{CONFIGURED_MEMORY_LIMIT}')").fetchall()
    if size_bytes(limit) >= size_bytes(shown):
        yield
        return
    try:
        con.execute(f"SET memory_limit = '{limit}'")
    except duckdb.Error:  # more than that is pinned and cannot be let go: go on within the store's own limit
        yield
        return
    try:
        yield
    finally:
        # Put back as configured, or DuckDB's default where the config has none. Not as shown: DuckDB rounds it to
        # a tenth of a unit ("1.8GB" reads "1.6 GiB", and set from that is 1.5 GiB), so the store's own is kept on
        # the connection when it is opened.
        con.execute(f"SET memory_limit = '{configured}'" if configured else "RESET memory_limit")


def _connect(path: Path, read_only: bool, memory_limit: str | None) -> duckdb.DuckDBPyConnection:
    # DuckDB's allocator keeps memory a finished statement freed until it is asked again; between the steps of
    # a job polars works outside DuckDB's budget, so the two added up (the WeChat import after the Alipay one
    # peaked at 2.3 GB). Freed memory is given back in the background instead.
    settings: dict[str, str] = {"allocator_background_threads": "true", "allocator_flush_threshold": "32MB"}
    if memory_limit:
        settings["memory_limit"] = memory_limit
    if not read_only:
        settings["temp_directory"] = str(path.parent / f".{path.name}.tmp")
    con = duckdb.connect(str(path), read_only=read_only, config=settings)
    # Instants are stored and compared in UTC; zones are applied explicitly where a wall clock is meant.
    con.execute("SET TimeZone = 'UTC'")
    # DuckDB draws a progress bar on stdout for any query over two seconds: at millions of rows it would
    # land in the middle of `--json` output and in cron's mail. A connection option, not a database one.
    con.execute("SET enable_progress_bar = false")
    # A name the store does not hold is an error, never a Python variable of the same name in the calling
    # function (DuckDB's replacement scans): a report's local `results` frame is not the results table.
    con.execute("SET python_enable_replacements = false")
    if memory_limit:
        con.execute(f"SET VARIABLE {CONFIGURED_MEMORY_LIMIT} = ?", [memory_limit])
    return con


def _is_lock_error(exc: duckdb.Error) -> bool:
    return "lock" in str(exc).lower()


@contextmanager
def open_store(config: Config, write: bool) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the store; writers must hold ``recon.lock.store_lock`` first. Migrates on a write open."""
    path = config.store_path
    if not write and not path.exists():
        raise StoreError(f"no store at {path} yet: run `recon import` or `recon run` first")
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    target = path
    while True:
        try:
            con = _connect(target, read_only=not write, memory_limit=config.store.memory_limit)
            break
        except duckdb.IOException as exc:
            if not _is_lock_error(exc):
                raise StoreError(f"cannot open store {target}: {exc}") from None
            waited = time.monotonic() - started
            snapshot = snapshot_path(path)
            if not write and target == path and waited > SNAPSHOT_WAIT_SECONDS and snapshot.exists():
                stamp = datetime.fromtimestamp(snapshot.stat().st_mtime, UTC).isoformat(timespec="seconds")
                log.warning("a run holds the store; reading the snapshot of the last finished run (%s)", stamp)
                target = snapshot
                continue
            if write or waited > READ_WAIT_SECONDS:
                raise LockBusy(f"the store {path} is held by another process; try again when it has finished") from None
            time.sleep(0.25)
        except duckdb.Error as exc:
            raise StoreError(f"cannot open store {path}: {exc}") from None
    try:
        if write:
            migrate(con)
        else:
            check_version(con)
        yield con
    finally:
        con.close()


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    # The table asked for directly: a probe of information_schema loads the whole catalog first, which was a
    # third of opening a small store (6 ms of every command, page and re-import).
    try:
        # fetchall, not fetchone: DuckDB refuses other work on a connection with an unfinished result.
        [(version,)] = con.execute("SELECT max(version) FROM schema_version").fetchall()
    except duckdb.CatalogException:  # a new store: no table yet
        return 0
    return int(version) if version is not None else 0


def check_version(con: duckdb.DuckDBPyConnection) -> None:
    current, known = schema_version(con), MIGRATIONS[-1][0]
    if current > known:
        raise StoreError(f"the store is at schema version {current}, newer than this recon ({known}): upgrade recon")
    if current < known:
        raise StoreError(f"the store is at schema version {current}; run a writing command once to migrate it")


def migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Apply every migration newer than the store, each in its own transaction."""
    current = schema_version(con)
    if current > MIGRATIONS[-1][0]:
        check_version(con)
    if current == 0:
        con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ)")
    for version, sql in MIGRATIONS:
        if version <= current:
            continue
        con.execute("BEGIN")
        try:
            con.execute(sql)
            con.execute("INSERT INTO schema_version VALUES (?, now())", [version])
            con.execute("COMMIT")
        except duckdb.Error:
            con.execute("ROLLBACK")
            raise
