"""Server-rendered pages: one jinja2 environment, autoescaped always, and the shared page context."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse

from recon.money import money_str
from recon.web.auth import current_user
from recon.web.csrf import FIELD, session_token
from reports.xlsx_sheets import code_label

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

# autoescape=True for every template whatever its name: data (order numbers, product names, notes)
# is shown as text, never as markup.
ENV = Environment(loader=PackageLoader("recon.web", "templates"), autoescape=True, trim_blocks=True,
                  lstrip_blocks=True, undefined=StrictUndefined)


def money(value: Decimal | None) -> str:
    return "" if value is None else money_str(value)


def percent(rate: Decimal | None) -> str:
    """A match rate as the reports show it: 0.2609 → 26.09%."""
    return "–" if rate is None else f"{(rate * 100).quantize(Decimal('0.01'))}%"


class Formats:
    """Times in the shop's zone, codes in the page's language."""

    def __init__(self, zone: str, lang: str) -> None:
        self.zone = ZoneInfo(zone)
        self.lang = lang

    def when(self, value: datetime | str | None) -> str:
        if value is None or value == "":
            return ""
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is not None:
            value = value.astimezone(self.zone)
        return value.strftime(TIME_FORMAT)

    def code(self, code: str) -> str:
        return code_label(code, self.lang)


def flash(request: Request, kind: str, text: str) -> None:
    """A message for the next page this browser sees (kept in the signed session)."""
    request.session["flash"] = {"kind": kind, "text": text}


def page(request: Request, template: str, status: int = 200, headers: Mapping[str, str] | None = None,
         **context: Any) -> HTMLResponse:
    """Render ``template`` with what every page needs: words, user, CSRF token, flash, snapshot banner."""
    state = request.app.state
    body = ENV.get_template(template).render(
        t=state.text, lang=state.lang, fmt=state.formats, zone=state.zone, money=money, percent=percent,
        user=current_user(request), csrf_field=FIELD, csrf=session_token(request),
        flash=request.session.pop("flash", None), source=getattr(request.state, "source", None),
        path=request.url.path, **context,
    )
    return HTMLResponse(body, status_code=status, headers=headers)
