"""The scheduler's jobs: trigger, next fire time, last outcome; owed dates; whether the daemon runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobs.status import jobs_status
from recon.config import Config
from recon.web.auth import requires
from recon.web.render import page
from recon.web.store_access import Source, StoreAccess


@dataclass(frozen=True)
class JobsView:
    status: dict[str, Any]
    source: Source


def _load(store: StoreAccess, config: Config) -> JobsView:
    with store.reading() as (con, source):
        return JobsView(jobs_status(con, config, datetime.now(UTC)), source)


@requires("view")
async def jobs_page(request: Request) -> Response:
    state = request.app.state
    view = await run_in_threadpool(_load, state.store, state.config)
    request.state.source = view.source
    return page(request, "jobs.html.j2", title=state.text["jobs_title"], jobs=view.status)


routes = [Route("/jobs", jobs_page)]
