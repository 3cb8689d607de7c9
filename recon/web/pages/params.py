"""Query-string values of the console's pages: checked, with a 400 that says which one is wrong."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request


def text_param(request: Request, name: str, max_length: int = 200) -> str | None:
    """A text value; None when absent or empty."""
    value = request.query_params.get(name, "").strip()
    if len(value) > max_length:
        raise HTTPException(400, f"{name}: too long")
    return value or None


def optional_int(request: Request, name: str, minimum: int = 1) -> int | None:
    value = text_param(request, name, 20)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise HTTPException(400, f"{name}: {value!r} is not a number") from None
    if number < minimum:
        raise HTTPException(400, f"{name}: at least {minimum}")
    return number


def int_param(request: Request, name: str, default: int, minimum: int = 1) -> int:
    value = optional_int(request, name, minimum)
    return default if value is None else value


def date_param(request: Request, name: str) -> date | None:
    value = text_param(request, name, 20)
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise HTTPException(400, f"{name}: {value!r} is not a date like 2026-11-20") from None


def page_link(request: Request) -> Callable[..., str]:
    """``link(page=3)``: this page's query string with some values changed."""

    def link(**changes: object) -> str:
        values = dict(request.query_params)
        values.update({k: str(v) for k, v in changes.items()})
        return "?" + urlencode(values)

    return link
