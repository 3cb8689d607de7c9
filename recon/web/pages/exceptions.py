"""The exceptions page: filter by date range, channel, code, status and priority; sort; page; export
exactly the filtered view as a workbook."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from recon.errors import UsageError
from recon.ledger_views import (PRIORITIES, SORTS, STATUSES, ExceptionFilter, count_exceptions, ledger_channels,
                                 list_exceptions)
from recon.taxonomy import EXCEPTION_CODES
from recon.web.auth import requires
from recon.web.export import XLSX_TYPE, ExportRequest, discard, export_exceptions
from recon.web.pages.downloads import attachment
from recon.web.pages.params import date_param, int_param, optional_int, text_param
from recon.web.render import page
from recon.web.store_access import Source, StoreAccess

# The query-string keys of a view, in the order links are written.
VIEW_KEYS = ("from", "to", "channel", "code", "status", "priority", "sort", "dir")


@dataclass(frozen=True)
class View:
    """What the page shows: the filter, the sort and the page, as read from the query string."""

    flt: ExceptionFilter
    sort: str | None
    descending: bool
    page_no: int
    params: dict[str, str]   # the view's own query values, for links that keep it

    def link(self, **changes: str | int | None) -> str:
        """A query string for this view with ``changes`` (None drops a key; the page is kept only if given)."""
        values: dict[str, Any] = {**self.params}
        for key, value in changes.items():
            if value is None:
                values.pop(key, None)
            else:
                values[key] = str(value)
        return "?" + urlencode([(k, values[k]) for k in (*VIEW_KEYS, "page") if k in values])

    def sort_link(self, key: str) -> str:
        descending = not self.descending if self.sort == key else False
        return self.link(sort=key, dir="desc" if descending else None, page=None)


def read_view(request: Request) -> View:
    status = request.query_params.get("status", "open").strip() or None  # open unless asked otherwise
    sort = text_param(request, "sort", 40)
    if sort is not None and sort not in SORTS:
        raise HTTPException(400, f"sort: cannot sort by {sort!r}")
    direction = text_param(request, "dir", 4)
    if direction not in (None, "asc", "desc"):
        raise HTTPException(400, "dir: asc or desc")
    flt = ExceptionFilter(
        date_from=date_param(request, "from"), date_to=date_param(request, "to"), status=status,
        code=text_param(request, "code", 40), channel=text_param(request, "channel", 64),
        priority=optional_int(request, "priority"),
    )
    try:
        flt.check()
    except UsageError as exc:
        raise HTTPException(400, str(exc)) from None
    params = {k: v for k in VIEW_KEYS if (v := request.query_params.get(k, "").strip())}
    if "status" in request.query_params:
        params["status"] = request.query_params["status"].strip()
    return View(flt, sort, direction == "desc", int_param(request, "page", 1), params)


@dataclass(frozen=True)
class ListView:
    rows: list[dict[str, Any]]
    total: int
    channels: list[str]
    source: Source


def _load(store: StoreAccess, view: View, page_size: int, configured: list[str]) -> ListView:
    with store.reading() as (con, source):
        total = count_exceptions(con, view.flt)
        rows = list_exceptions(con, view.flt, view.sort, view.descending, page_size, (view.page_no - 1) * page_size)
        channels = sorted(set(configured) | set(ledger_channels(con)))
    return ListView(rows, total, channels, source)


@requires("view")
async def exceptions_page(request: Request) -> Response:
    state = request.app.state
    view = read_view(request)
    size = state.config.web.page_size
    listed = await run_in_threadpool(_load, state.store, view, size, [c.id for c in state.config.channels])
    request.state.source = listed.source
    return page(request, "exceptions.html.j2", title=state.text["exceptions_title"], view=view, listed=listed,
                pages=max(1, -(-listed.total // size)), codes=EXCEPTION_CODES, statuses=STATUSES,
                priorities=PRIORITIES, export_href="/exceptions/export.xlsx" + view.link(page=None))


@requires("download")
async def export_page(request: Request) -> Response:
    state = request.app.state
    view = read_view(request)
    user = request.state.user
    job = ExportRequest(view.flt, view.sort, view.descending, state.lang, state.zone, user.name,
                        datetime.now(UTC))
    path = await run_in_threadpool(export_exceptions, state.store, job)
    return FileResponse(path, media_type=XLSX_TYPE, headers=attachment(job.file_name(), job.file_name("en")),
                        background=BackgroundTask(discard, path))


routes = [
    Route("/exceptions", exceptions_page),
    Route("/exceptions/export.xlsx", export_page),
]
