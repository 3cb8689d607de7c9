"""One advisory lock for every process that writes to the store: cron runs, the daemon, operators.

``flock`` is released by the kernel when its holder dies, so a lock left by a killed process
never blocks the next run; the holder's PID, command and start time are written inside the
file so a refused writer can say who holds it, and a holder that died without clearing the file
is reported when the next writer takes over (its run is marked aborted by the pipeline).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from recon.errors import LockBusy

log = logging.getLogger("recon.lock")


def lock_path(store_path: Path) -> Path:
    return store_path.with_name(store_path.name + ".lock")


def daemon_lock_path(store_path: Path) -> Path:
    return store_path.with_name(store_path.name + ".schedule.lock")


def read_holder(path: Path) -> dict[str, object]:
    """What the lock file says about its (last) holder; empty when released cleanly."""
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def describe(info: dict[str, object]) -> str:
    if not info:
        return "another recon process"
    return (f"PID {info.get('pid', '?')} on {info.get('host', '?')}, `{info.get('command', '?')}`, "
            f"started {info.get('started_at', '?')}")


def _holder_soon(path: Path, wait: float = 1.0) -> dict[str, object]:
    """The holder's details; a holder that has only just taken the lock gets a moment to write them."""
    deadline = time.monotonic() + wait
    while True:
        info = read_holder(path)
        if info or time.monotonic() >= deadline:
            return info
        time.sleep(0.01)


def is_held(path: Path) -> bool:
    """True while some process holds the lock at ``path`` (probed without taking it for long)."""
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock taken by the probe
    return False


@contextmanager
def held(path: Path, command: str | None, what: str) -> Iterator[dict[str, object]]:
    """Hold the flock at ``path`` for the block, or raise LockBusy (exit 75) naming the holder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockBusy(f"{what} is locked by {describe(_holder_soon(path))}; try again when it has finished") from None
        left = read_holder(path)
        holder: dict[str, object] = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command or " ".join(["recon", *sys.argv[1:]]),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if left:
            # Released by the kernel, not by its holder: that process was killed or crashed.
            holder["recovered_from"] = left
            log.warning("%s: taking over a lock left by %s, which ended without releasing it", what, describe(left),
                        extra={"stale_lock": left})
        # Written first, then cut to length: a refused process never reads an empty file mid-way.
        data = json.dumps(holder).encode()
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
        os.fsync(fd)
        try:
            yield holder
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def store_lock(store_path: Path, command: str | None = None) -> Iterator[dict[str, object]]:
    """The writer lock of the store."""
    with held(lock_path(store_path), command, "the store") as holder:
        yield holder


@contextmanager
def daemon_lock(store_path: Path, command: str | None = None) -> Iterator[dict[str, object]]:
    """One ``recon schedule`` daemon per store, for as long as it runs."""
    with held(daemon_lock_path(store_path), command, "the scheduler") as holder:
        yield holder
