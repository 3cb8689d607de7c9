"""Kill points for crash tests: ``RECON_CRASH_AT=<point>`` makes the process SIGKILL itself there.

Production never sets the variable; the reliability tests run recon in a child process with it to
prove that a crash at that point loses nothing and delivers nothing twice.
"""

from __future__ import annotations

import os
import signal

CRASH_VARIABLE = "RECON_CRASH_AT"


def crash_point(name: str) -> None:
    """Die here, without cleanup, when the crash test asks for this point."""
    if os.environ.get(CRASH_VARIABLE) == name:
        os.kill(os.getpid(), signal.SIGKILL)
