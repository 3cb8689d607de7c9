"""Kill points for crash tests: ``RECON_CRASH_AT=<point>`` makes the process SIGKILL itself there.

``RECON_CRASH_AT=<point>:<n>`` dies the n-th time the process reaches the point (a repair batch
passes each point once per order, so ``after_shop_update:3`` dies at the third order's act);
``<point>`` alone is ``<point>:1``.

Production never sets the variable; the reliability tests run recon in a child process with it to
prove that a crash at that point loses nothing and delivers nothing twice.
"""

from __future__ import annotations

import os
import signal

CRASH_VARIABLE = "RECON_CRASH_AT"

_reached: dict[str, int] = {}  # point → how many times this process has passed it


def crash_point(name: str) -> None:
    """Die here, without cleanup, when the crash test asks for this point (and this pass of it)."""
    wanted = os.environ.get(CRASH_VARIABLE)
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    if nth and not (nth.isdigit() and int(nth) >= 1):
        raise ValueError(f"{CRASH_VARIABLE}={wanted!r}: expected <point> or <point>:<n> with n ≥ 1")
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


PAUSE_VARIABLE = "RECON_PAUSE_AT"
PAUSE_SECONDS_VARIABLE = "RECON_PAUSE_SECONDS"


def pause_point(name: str) -> None:
    """Wait here when a test asks (``RECON_PAUSE_AT=<point>``), so it can signal or race the process
    at a known step. Says so on stderr first; sleeps in short steps so signal handlers run."""
    if os.environ.get(PAUSE_VARIABLE) != name:
        return
    import sys
    import time

    print(f"paused at {name}", file=sys.stderr, flush=True)
    until = time.monotonic() + float(os.environ.get(PAUSE_SECONDS_VARIABLE, "5"))
    while time.monotonic() < until:
        time.sleep(0.05)
