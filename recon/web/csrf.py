"""CSRF protection: a random token per session, sent in every form and compared on every POST.

The token lives in the signed session cookie; a form from another site cannot know it, and the
SameSite=Lax cookie is not even sent with a cross-site POST. Both are checked, neither is trusted alone.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request

FIELD = "csrf_token"
# A form of the console has a handful of short fields; anything bigger is refused before parsing.
MAX_FIELDS = 20
MAX_PART_SIZE = 64 * 1024


class CsrfRefused(HTTPException):
    """A POST whose token is missing or not this session's (HTTP 403)."""

    def __init__(self) -> None:
        super().__init__(403, "missing or wrong CSRF token")


def new_token() -> str:
    return secrets.token_urlsafe(32)


def session_token(request: Request) -> str:
    """The session's token, made on first use (the login page makes one for an anonymous visitor)."""
    token = request.session.get("csrf")
    if not isinstance(token, str) or not token:
        token = new_token()
        request.session["csrf"] = token
    return token


async def check_form(request: Request) -> FormData:
    """The POSTed form when its token matches the session's; HTTP 403 otherwise."""
    form = await request.form(max_files=0, max_fields=MAX_FIELDS, max_part_size=MAX_PART_SIZE)
    sent = form.get(FIELD)
    expected = request.session.get("csrf")
    if not isinstance(sent, str) or not isinstance(expected, str) or not expected \
            or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused()
    return form
