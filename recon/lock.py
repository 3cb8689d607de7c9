"""One advisory lock for every process that writes to the store: cron runs, the daemon, operators.

``flock`` is released by the kernel when its holder dies, so a lock left by a killed process
never blocks the next run; the holder's PID, command and start time are written inside the
file so a refused writer can say who holds it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from recon.errors import LockBusy


def lock_path(store_path: Path) -> Path:
    return store_path.with_name(store_path.name + ".lock")


def describe_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return "another recon process"
    return (f"PID {info.get('pid', '?')} on {info.get('host', '?')}, `{info.get('command', '?')}`, "
            f"started {info.get('started_at', '?')}")


@contextmanager
def store_lock(store_path: Path, command: str | None = None) -> Iterator[dict[str, object]]:
    """Hold the writer lock for the block, or raise LockBusy (exit 75) naming the holder."""
    path = lock_path(store_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockBusy(f"the store is locked by {describe_holder(path)}; try again when it has finished") from None
        holder: dict[str, object] = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command or " ".join(["recon", *sys.argv[1:]]),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        os.fsync(fd)
        try:
            yield holder
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
