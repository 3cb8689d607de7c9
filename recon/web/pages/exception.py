"""One exception: both sides, where each channel row came from, its history and repairs; resolve or
ignore it with a note; an operator may redeliver its order with a reason.

Writes hold the store lock for the moment they take and go through the same functions as the CLI
(recon.ledger.close_by_person, recon.repair.redeliver.redeliver); every write leaves an
``exception_events`` row naming the logged-in user.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import duckdb

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from recon.config import Config
from recon.errors import LockBusy, NotFound, ReconError
from recon.ledger import add_event, close_by_person
from recon.ledger_views import ExceptionDetail, exception_detail
from recon.repair.apply import RepairOutcome
from recon.repair.redeliver import redeliver
from recon.repair.run import channel_query
from recon.repair.shop import open_repairer
from recon.secrets import redact
from recon.taxonomy import AUTO_REPAIR_CODES, action
from recon.web.auth import form_value, requires
from recon.web.render import flash, page
from recon.web.store_access import Source, StoreAccess

log = logging.getLogger("recon.web")
MAX_NOTE = 2000
REDELIVERY_EVENT = "redelivery"


@dataclass(frozen=True)
class DetailView:
    detail: ExceptionDetail
    source: Source


def _load(store: StoreAccess, exception_id: int) -> DetailView:
    with store.reading() as (con, source):
        return DetailView(exception_detail(con, exception_id), source)


@requires("view")
async def detail_page(request: Request) -> Response:
    state = request.app.state
    exception_id: int = request.path_params["id"]
    view = await run_in_threadpool(_load, state.store, exception_id)
    request.state.source = view.source
    exc = view.detail.exception
    user = request.state.user
    return page(request, "exception.html.j2", title=state.text["exception_title"].format(id=exception_id),
                d=view.detail, exc=exc, suggested=action(exc["code"], state.lang) or exc["suggested_action"],
                can_resolve=exc["status"] == "open" and user.may("resolve"),
                can_redeliver=bool(exc["order_no"]) and user.may("redeliver"),
                repairable=exc["code"] in AUTO_REPAIR_CODES)


def _close(store: StoreAccess, exception_id: int, status: str, actor: str, note: str) -> str | None:
    """Close one open exception; its current status when it is no longer open (nothing changed)."""
    with store.writing(f"recon serve: {actor} {status} #{exception_id}") as con:
        row = con.execute("SELECT status FROM exceptions WHERE id = ?", [exception_id]).fetchone()
        if row is None:
            raise NotFound(f"no exception with id {exception_id}")
        if row[0] != "open":
            return str(row[0])
        close_by_person(con, exception_id, status, actor, note)
    return None


async def _close_page(request: Request, status: str) -> Response:
    state = request.app.state
    t = state.text
    exception_id: int = request.path_params["id"]
    here = f"/exceptions/{exception_id}"
    note = form_value(request, "note").strip()
    if not note:
        flash(request, "error", t["note_required"])
        return RedirectResponse(here, status_code=303)
    if len(note) > MAX_NOTE:
        flash(request, "error", t["too_long"].format(n=MAX_NOTE))
        return RedirectResponse(here, status_code=303)
    user = request.state.user
    current = await run_in_threadpool(_close, state.store, exception_id, status, user.name, note)
    if current is not None:
        flash(request, "error", t["not_open"].format(id=exception_id, status=t.get(f"st_{current}", current)))
    else:
        log.info("web: %s %s exception #%s", user.name, status, exception_id,
                 extra={"web_user": user.name, "exception_id": exception_id, "status": status})
        flash(request, "ok", t["resolved_ok" if status == "resolved" else "ignored_ok"].format(id=exception_id))
    return RedirectResponse(here, status_code=303)


@requires("resolve")
async def resolve(request: Request) -> Response:
    return await _close_page(request, "resolved")


@requires("resolve")
async def ignore(request: Request) -> Response:
    return await _close_page(request, "ignored")


def _audit_refusal(con: duckdb.DuckDBPyConnection, exception_id: int, actor: str, note: str) -> None:
    """An operator's refused attempt is kept too; failing to record it must not hide why it was refused."""
    try:
        add_event(con, exception_id, actor, REDELIVERY_EVENT, None, note)
    except duckdb.Error:
        log.exception("could not record the refused redelivery of exception #%s", exception_id)


def _redeliver(config: Config, store: StoreAccess, exception_id: int, actor: str, reason: str,
               force: bool) -> RepairOutcome:
    """`recon redeliver ORDER_NO [--force] --reason …` for the exception's order, audited on the exception."""
    repairer = open_repairer(config)
    with store.writing(f"recon serve: {actor} redeliver #{exception_id}") as con:
        row = con.execute("SELECT order_no FROM exceptions WHERE id = ?", [exception_id]).fetchone()
        if row is None or not row[0]:
            raise NotFound(f"exception {exception_id} has no order to redeliver")
        try:
            outcome = redeliver(con, repairer, str(row[0]), channel_query(config), actor, force, reason)
        except ReconError as exc:
            if not isinstance(exc, LockBusy):
                _audit_refusal(con, exception_id, actor, f"{reason} → refused: {redact(str(exc), [])}")
            raise
        forced = " (force)" if force else ""
        add_event(con, exception_id, actor, REDELIVERY_EVENT, None,
                  f"{reason}{forced} → {outcome.state}: {outcome.detail}")
    return outcome


@requires("redeliver")
async def redeliver_page(request: Request) -> Response:
    state = request.app.state
    t = state.text
    exception_id: int = request.path_params["id"]
    here = f"/exceptions/{exception_id}"
    reason = form_value(request, "reason").strip()
    if not reason:
        flash(request, "error", t["reason_required"])
        return RedirectResponse(here, status_code=303)
    if len(reason) > MAX_NOTE:
        flash(request, "error", t["too_long"].format(n=MAX_NOTE))
        return RedirectResponse(here, status_code=303)
    if form_value(request, "confirm") != "yes":
        flash(request, "error", t["confirm_required"])
        return RedirectResponse(here, status_code=303)
    user = request.state.user
    force = form_value(request, "force") == "yes"
    try:
        outcome = await run_in_threadpool(_redeliver, state.config, state.store, exception_id, user.name, reason,
                                          force)
    except (LockBusy, NotFound):
        raise
    except ReconError as exc:
        flash(request, "error", t["redeliver_refused"].format(reason=redact(str(exc), [])))
        return RedirectResponse(here, status_code=303)
    log.info("web: %s redelivered %s: %s", user.name, outcome.order_no, outcome.state,
             extra={"web_user": user.name, "exception_id": exception_id, "state": outcome.state})
    kind = "ok" if outcome.state == "applied" else "error"
    flash(request, kind, t["redeliver_done"].format(order=outcome.order_no, state=outcome.state,
                                                    detail=outcome.detail))
    return RedirectResponse(here, status_code=303)


routes = [
    Route("/exceptions/{id:int}", detail_page),
    Route("/exceptions/{id:int}/resolve", resolve, methods=["POST"]),
    Route("/exceptions/{id:int}/ignore", ignore, methods=["POST"]),
    Route("/exceptions/{id:int}/redeliver", redeliver_page, methods=["POST"]),
]
