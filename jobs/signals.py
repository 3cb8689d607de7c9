"""Graceful stops. A one-shot command (``recon run``, ``sweep``, ``schedule --once``) turns SIGTERM
into ``Interrupted`` in its main thread: the open transaction rolls back, the run is recorded
aborted, nothing is half-written. The daemon instead lets its current step finish (see jobs.daemon).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from recon.errors import Interrupted

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _raise(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


@contextmanager
def interruptible() -> Iterator[None]:
    """Within the block, SIGTERM and SIGINT raise Interrupted (main thread only; elsewhere a no-op)."""
    try:
        previous = {s: signal.signal(s, _raise) for s in STOP_SIGNALS}
    except ValueError:  # not the main thread (an in-process test runner thread): leave signals alone
        yield
        return
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
