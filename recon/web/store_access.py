"""The console's way into the store: opened per request, closed right away, never in a run's way.

DuckDB lets one process open a file while it writes, and a writer refuses to start while any
reader has the file open. So the console reads the published snapshot of the last finished run
whenever that snapshot holds exactly what the store holds (and, during a run, whatever it holds),
and opens the store itself only after someone changed it since (a resolve, a repair). Writes take
the store lock like every other writer and never wait: a busy store is a ``LockBusy`` (HTTP 503).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from recon.config import Config
from recon.errors import LockBusy
from recon.lock import lock_path, read_holder, store_lock
from recon.store import open_store, snapshot_path

log = logging.getLogger("recon.web")

# DuckDB's file starts with its main header and two checkpoint headers (4 KiB each). Every
# checkpoint writes a new header with a higher iteration, so equal headers mean equal contents.
HEADER_BYTES = 3 * 4096
# Requests of one console take turns: DuckDB refuses a read-only and a read-write connection to
# one file in one process at the same time. Reads take milliseconds.
TURN_WAIT_SECONDS = 20.0


@dataclass(frozen=True)
class Source:
    path: Path
    snapshot_at: datetime | None   # set when the page shows a snapshot because a run holds the store


def _run_in_progress(store: Path) -> bool:
    """The lock file names a living holder (read without taking the lock, so no writer is disturbed)."""
    holder = read_holder(lock_path(store))
    if not holder:
        return False
    pid = holder.get("pid")
    if holder.get("host") == socket.gethostname() and isinstance(pid, int):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False  # killed without releasing: the next writer takes over
        except PermissionError:
            return True
    return True


def _same_contents(store: Path, snapshot: Path) -> bool:
    if Path(f"{store}.wal").exists():
        return False
    try:
        with open(store, "rb") as a, open(snapshot, "rb") as b:
            return a.read(HEADER_BYTES) == b.read(HEADER_BYTES)
    except OSError:
        return False


def choose_source(config: Config) -> Source:
    """The file a read should open: the snapshot when a run holds the store or nothing changed since."""
    store = config.store_path
    snapshot = snapshot_path(store)
    if snapshot.exists():
        if _run_in_progress(store):
            return Source(snapshot, datetime.fromtimestamp(snapshot.stat().st_mtime, UTC))
        if _same_contents(store, snapshot):
            return Source(snapshot, None)
    return Source(store, None)


def _config_for(config: Config, path: Path) -> Config:
    if path == config.store_path:
        return config
    return config.model_copy(update={"store": config.store.model_copy(update={"path": path})})


class StoreAccess:
    """Reads and writes of one console process."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._turn = threading.Lock()

    @contextmanager
    def _my_turn(self) -> Iterator[None]:
        if not self._turn.acquire(timeout=TURN_WAIT_SECONDS):
            raise LockBusy("the console is busy with another request; try again in a moment")
        try:
            yield
        finally:
            self._turn.release()

    @contextmanager
    def reading(self) -> Iterator[tuple[duckdb.DuckDBPyConnection, Source]]:
        """A read-only connection to the store or its snapshot, closed when the block ends.

        Without a snapshot, a run in progress is waited for briefly (recon.store), then LockBusy.
        """
        with self._my_turn():
            source = choose_source(self.config)
            with open_store(_config_for(self.config, source.path), write=False) as con:
                yield con, source

    @contextmanager
    def writing(self, command: str) -> Iterator[duckdb.DuckDBPyConnection]:
        """The store for writing, holding the store lock; LockBusy at once when a run holds it."""
        with self._my_turn(), store_lock(self.config.store_path, command), \
                open_store(self.config, write=True) as con:
            yield con
        log.info("%s", command, extra={"web_write": command})
