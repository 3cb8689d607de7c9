"""Logging in and out. Failed attempts are counted per user name and per client address."""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from recon.web.auth import LoginLimiter, User, Users, current_user, log_in, safe_next
from recon.web.csrf import check_form, new_token
from recon.web.render import page

log = logging.getLogger("recon.web")
MAX_NAME = 64
MAX_PASSWORD = 1024


def client_address(request: Request) -> str:
    """The peer's address (the proxy's X-Forwarded-For only when [web] forwarded_allow_ips trusts it)."""
    return request.client.host if request.client else "unknown"


async def login_form(request: Request) -> Response:
    if current_user(request) is not None:
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    return page(request, "login.html.j2", title=request.app.state.text["login_title"],
                next=safe_next(request.query_params.get("next")), error=None, name="")


async def login_submit(request: Request) -> Response:
    form = await check_form(request)
    name = str(form.get("username", "")).strip()[:MAX_NAME]
    password = str(form.get("password", ""))[:MAX_PASSWORD]
    target = safe_next(str(form.get("next", "")))
    limiter: LoginLimiter = request.app.state.limiter
    address = client_address(request)
    t = request.app.state.text
    wait = limiter.retry_after(name, address)
    if wait:
        log.warning("web login refused from %s: too many failures for this name or address", address,
                    extra={"client": address})
        return page(request, "login.html.j2", status=429, headers={"retry-after": str(wait)}, title=t["login_title"],
                    next=target,
                    error=t["login_limited"].format(seconds=wait), name=name)
    users: Users = request.app.state.users
    user: User | None = await run_in_threadpool(users.check, name, password)
    if user is None:
        limiter.failed(name, address)
        # an unknown name is not logged: people type their password into the name field
        known = name if users.get(name) is not None else "(unknown name)"
        log.warning("web login failed for %s from %s", known, address, extra={"web_user": known, "client": address})
        return page(request, "login.html.j2", status=401, title=t["login_title"], next=target,
                    error=t["login_failed"], name=name)
    limiter.succeeded(name)
    log_in(request, user, new_token())
    log.info("web login: %s (%s)", user.name, user.role, extra={"web_user": user.name, "client": address})
    return RedirectResponse(target, status_code=303)


async def logout(request: Request) -> Response:
    await check_form(request)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


routes = [
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login_submit, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
