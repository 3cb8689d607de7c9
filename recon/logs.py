"""Logging for people and for machines: readable lines on a terminal, one JSON object per line for
cron mail and log shippers (``--log-json`` or ``RECON_LOG_JSON=1``).

Every record passes through the secret redaction of each channel session first (fetchers.http), and
recon's own messages name channels, dates and counts, never credentials.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else was passed as ``extra=`` and becomes a JSON field.
_STANDARD = set(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {"message", "asctime"}


class JsonLines(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra}`` on one line; times in UTC with their offset."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(json_lines: bool | None = None, verbose: bool = False) -> None:
    """Route recon's log records to stderr; JSON lines when asked or by environment.

    A command at a terminal shows warnings only (its own output says the rest); the daemon, JSON
    mode and ``--verbose`` show each step at INFO.
    """
    if json_lines is None:
        json_lines = os.environ.get("RECON_LOG_JSON", "") not in ("", "0", "false")
    root = logging.getLogger("recon")
    for handler in list(root.handlers):
        if getattr(handler, "_recon", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._recon = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonLines() if json_lines else logging.Formatter("%(asctime)s %(levelname)s %(message)s",
                                                                          "%Y-%m-%d %H:%M:%S%z"))
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose or json_lines else logging.WARNING)
    root.propagate = True
