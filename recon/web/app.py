"""The console's app factory: routes of every page, the session, security headers, error pages."""

from __future__ import annotations

import logging
from importlib.resources import files
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recon.config import Config
from recon.errors import ConfigError, LockBusy, NotFound, StoreError, UsageError
from recon.web.auth import LoginLimiter, Users
from recon.web.csrf import CsrfRefused
from recon.web.pages import downloads, exception, exceptions, jobs, login, repairs, runs
from recon.web.render import Formats, page
from recon.web.store_access import StoreAccess
from recon.web.text import texts

log = logging.getLogger("recon.web")

SESSION_COOKIE = "recon_session"
# No script at all, styles from this site only, nothing framed, forms post only here.
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "cache-control": "no-store",
}
BUSY_RETRY_SECONDS = 60


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response that does not set its own (downloads set theirs)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items() if k.encode() not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


def _css(_request: Request) -> Response:
    css = files("recon.web").joinpath("static/console.css").read_text(encoding="utf-8")
    return Response(css, media_type="text/css", headers={"cache-control": "max-age=3600"})


def _health(_request: Request) -> Response:
    return PlainTextResponse("ok")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    keys = {400: "bad_request", 403: "forbidden", 404: "not_found", 503: "busy"}
    t = request.app.state.text
    # A 400 says which value was wrong; other statuses speak for themselves.
    return page(request, "error.html.j2", status=exc.status_code, headers=exc.headers,
                title=t.get(keys.get(exc.status_code, ""), t["error_title"]),
                message=exc.detail if exc.status_code == 400 else "")


async def _csrf_refused(request: Request, exc: Exception) -> Response:
    log.warning("POST %s refused: missing or wrong CSRF token", request.url.path)
    t = request.app.state.text
    return page(request, "error.html.j2", status=403, title=t["csrf_failed"], message="")


async def _busy(request: Request, exc: Exception) -> Response:
    log.info("store busy: %s", exc)
    t = request.app.state.text
    return page(request, "error.html.j2", status=503, headers={"retry-after": str(BUSY_RETRY_SECONDS)},
                title=t["busy"], message="")


async def _not_found(request: Request, exc: Exception) -> Response:
    return page(request, "error.html.j2", status=404, title=request.app.state.text["not_found"], message=str(exc))


async def _bad_request(request: Request, exc: Exception) -> Response:
    return page(request, "error.html.j2", status=400, title=request.app.state.text["bad_request"], message=str(exc))


async def _store_error(request: Request, exc: Exception) -> Response:
    log.warning("store unavailable: %s", exc)
    return page(request, "error.html.j2", status=503, headers={"retry-after": str(BUSY_RETRY_SECONDS)},
                title=request.app.state.text["error_title"], message=str(exc))


async def _server_error(request: Request, exc: Exception) -> Response:
    """Outside the session middleware: a plain page, and the trace only in the log."""
    return PlainTextResponse(request.app.state.text["server_error"], status_code=500)


def create_app(config: Config) -> Starlette:
    """The console for ``config``; a ConfigError when no user could log in or the session key is missing."""
    web = config.web
    if not web.users:
        raise ConfigError("web.users", "nobody may log in yet: add [[web.users]] with name, role (finance or "
                                       "operator) and password_hash (from `recon serve --hash-password`)")
    secret = web.session_key()
    routes = [
        Route("/", runs.home),
        Route("/healthz", _health),
        Route("/static/console.css", _css),
        *login.routes, *runs.routes, *exceptions.routes, *exception.routes, *repairs.routes, *jobs.routes,
        *downloads.routes,
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(SessionMiddleware, secret_key=secret, session_cookie=SESSION_COOKIE,
                   max_age=web.session_hours * 3600, same_site="lax", https_only=web.secure_cookies),
    ]
    handlers: dict[Any, Any] = {
        CsrfRefused: _csrf_refused, HTTPException: _http_error, LockBusy: _busy, NotFound: _not_found,
        UsageError: _bad_request, StoreError: _store_error, Exception: _server_error,
    }
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)
    state = app.state
    state.config = config
    state.users = Users(web)
    state.limiter = LoginLimiter(web.login_max_failures, web.login_window_minutes * 60)
    state.store = StoreAccess(config)
    state.lang = "en" if config.reports.language == "en" else "zh-CN"
    state.text = texts(state.lang)
    state.zone = config.shop.zone
    state.formats = Formats(config.shop.zone, state.lang)
    state.reports_dir = config.resolve(config.reports.out_dir)
    return app
