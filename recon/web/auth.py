"""Who is logged in, what each role may do, password checks and the login rate limit.

The session cookie (signed by Starlette's SessionMiddleware) holds the user's name and a fingerprint
of their password hash: a user removed from the config, or given a new password, is logged out on
their next request. Roles are read from the config on every request, never from the cookie.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any
from urllib.parse import quote

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from recon.web.csrf import check_form
from recon.web.settings import WebConfig

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "finance": frozenset({"view", "download", "resolve"}),
    "operator": frozenset({"view", "download", "resolve", "redeliver"}),
}
MIN_PASSWORD_LENGTH = 8
_HASHER = PasswordHasher()

Endpoint = Callable[[Request], Awaitable[Response]]


def hash_password(password: str) -> str:
    """An argon2id hash (random salt, the library's recommended cost) for ``[web] users``."""
    return _HASHER.hash(password)


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str

    @property
    def fingerprint(self) -> str:
        """Changes when the password does; kept in the session instead of anything secret."""
        return hashlib.sha256(self.password_hash.encode()).hexdigest()[:16]

    def may(self, permission: str) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]


class Users:
    """The configured users, their hashes read once when the console starts."""

    def __init__(self, web: WebConfig) -> None:
        self._by_name = {u.name.lower(): User(u.name, u.role, u.resolved_hash(i)) for i, u in enumerate(web.users)}
        # Unknown names are checked against this, so they take as long as a wrong password.
        self._decoy = _HASHER.hash("decoy password, matches nothing a person types")

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> User | None:
        return self._by_name.get(name.lower())

    def check(self, name: str, password: str) -> User | None:
        """The user when the password is theirs; argon2 compares in constant time."""
        user = self._by_name.get(name.lower())
        try:
            _HASHER.verify(user.password_hash if user else self._decoy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return user


class LoginLimiter:
    """Failed logins per user name and per client address in a sliding window (in memory)."""

    MAX_KEYS = 10_000

    def __init__(self, max_failures: int, window_seconds: float) -> None:
        self.max_failures = max_failures
        self.window = window_seconds
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def keys(name: str, address: str) -> tuple[str, str]:
        return f"user:{name.strip().lower()}", f"addr:{address}"

    def retry_after(self, name: str, address: str) -> int:
        """Seconds until another attempt is allowed; 0 when it is allowed now."""
        now = time.monotonic()
        with self._lock:
            waits = [self._wait(key, now) for key in self.keys(name, address)]
        return max(waits)

    def failed(self, name: str, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._failures) >= self.MAX_KEYS:
                self._forget_expired(now)
            for key in self.keys(name, address):
                self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, name: str) -> None:
        """The user's own count starts again; the address keeps its record."""
        with self._lock:
            self._failures.pop(self.keys(name, "")[0], None)

    def _wait(self, key: str, now: float) -> int:
        times = self._failures.get(key)
        if not times:
            return 0
        while times and now - times[0] >= self.window:
            times.popleft()
        if len(times) < self.max_failures:
            return 0
        return max(1, int(self.window - (now - times[0])) + 1)

    def _forget_expired(self, now: float) -> None:
        for key in [k for k, v in self._failures.items() if not v or now - v[-1] >= self.window]:
            del self._failures[key]


def current_user(request: Request) -> User | None:
    """The logged-in user, or None; a stale session (user gone, password changed) is cleared."""
    name = request.session.get("user")
    if not isinstance(name, str):
        return None
    users: Users = request.app.state.users
    user = users.get(name)
    if user is None or request.session.get("pw") != user.fingerprint:
        request.session.clear()
        return None
    return user


def log_in(request: Request, user: User, csrf_token: str) -> None:
    """A fresh session for ``user`` (nothing of the anonymous one carries over but a new CSRF token)."""
    request.session.clear()
    request.session.update({"user": user.name, "pw": user.fingerprint, "csrf": csrf_token, "at": int(time.time())})


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this site only (never //host or a full URL)."""
    if (not target or not target.startswith("/") or target.startswith("//") or "\\" in target
            or any(ord(c) < 0x20 or c == "\x7f" for c in target)):
        return "/runs"
    return target


def requires(permission: str) -> Callable[[Endpoint], Endpoint]:
    """Guard an endpoint: anonymous GETs go to the login page, other anonymous requests get 403, a
    role without ``permission`` gets 403, and every POST must carry the session's CSRF token."""

    def wrap(endpoint: Endpoint) -> Endpoint:
        @wraps(endpoint)
        async def guarded(request: Request) -> Response:
            user = current_user(request)
            if user is None:
                if request.method in ("GET", "HEAD"):
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)
                raise HTTPException(403, "log in first")
            if request.method == "POST":
                request.state.form = await check_form(request)
            if not user.may(permission):
                raise HTTPException(403, f"the role {user.role} may not do this")
            request.state.user = user
            return await endpoint(request)

        return guarded

    return wrap


def form_value(request: Request, name: str) -> str:
    """A text field of the checked form ('' when absent)."""
    value: Any = request.state.form.get(name, "")
    return value if isinstance(value, str) else ""
