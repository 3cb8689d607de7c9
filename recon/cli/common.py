"""What every command shares: the config option, error → exit-code mapping, JSON and table output."""

from __future__ import annotations

import functools
import getpass
import json
import os
import sys
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from recon.config import DEFAULT_CONFIG, Config, load_config
from recon.errors import ReconError, UsageError
from recon.money import money_str

P = ParamSpec("P")
R = TypeVar("R")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NEEDS_PERSON = 3
EXIT_LOCKED = 75

# markup off: order numbers, product names and config keys contain brackets that must print as they are
out = Console(highlight=False, soft_wrap=True, markup=False)


def config_path(ctx: typer.Context) -> Path:
    obj = ctx.find_root().obj or {}
    return Path(obj.get("config") or os.environ.get("RECON_CONFIG") or DEFAULT_CONFIG)


def load(ctx: typer.Context) -> Config:
    return load_config(config_path(ctx))


def handled(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn recon's errors into one clear line on stderr and the contract's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ReconError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(exc.exit_code) from None

    return wrapper


def parse_date(value: str | None, option: str = "--date") -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{option}: {value!r} is not a date like 2026-11-20") from None


def actor() -> str:
    """Who is at the keyboard, for the audit trail."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return money_str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def print_json(value: Any) -> None:
    """Machine-readable output: stable keys, amounts as strings, UTF-8 text."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False, default=_plain, indent=2) + "\n")
