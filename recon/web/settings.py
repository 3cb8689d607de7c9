"""``[web]`` of recon.toml: the finance console (``recon serve``), its users and its session key.

Kept apart from recon.config like ``[schedule]``. Passwords are stored as argon2 hashes made by
``recon serve --hash-password``; a hash is not a secret in itself, but may be kept in env:/file:
like one. The session key signs the login cookie and must be a real secret (env: or file:).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from recon.errors import ConfigError
from recon.secrets import Secret

ARGON2_HASH = re.compile(r"^\$argon2(id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$")
MIN_SECRET_LENGTH = 32
Role = Literal["finance", "operator"]


def check_hash(value: str, key: str = "password_hash") -> str:
    if not ARGON2_HASH.match(value):
        raise ValueError(f"{key}: expected an argon2 hash such as `recon serve --hash-password` prints "
                         "($argon2id$v=19$m=…), or env:VAR / file:PATH holding one")
    return value


class WebUser(BaseModel):
    """One person who may log in: ``finance`` views, downloads and resolves; ``operator`` also redelivers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    role: Role
    password_hash: Secret | str

    @field_validator("password_hash")
    @classmethod
    def _hash(cls, value: Secret | str) -> Secret | str:
        return value if isinstance(value, Secret) else check_hash(value)

    def resolved_hash(self, index: int) -> str:
        """The hash itself, read from env:/file: when given so; ConfigError naming the key when wrong."""
        key = f"web.users[{index}].password_hash"
        if isinstance(self.password_hash, str):
            return self.password_hash
        value = self.password_hash.reveal(key)
        try:
            return check_hash(value)
        except ValueError:
            raise ConfigError(key, "the value it refers to is not an argon2 hash (make one with "
                                   "`recon serve --hash-password`)") from None


class WebConfig(BaseModel):
    """Where the console listens, who may use it, how long a login lasts, how hard guessing is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    users: list[WebUser] = []
    session_secret: Secret | None = None
    session_hours: int = Field(default=12, ge=1, le=720)
    # True when the console is reached over HTTPS (behind a TLS-terminating proxy): the cookie is then
    # sent over HTTPS only.
    secure_cookies: bool = False
    # Addresses of a reverse proxy whose X-Forwarded-For / X-Forwarded-Proto are believed; empty: none.
    forwarded_allow_ips: list[str] = []
    # Failed logins allowed per user name and per client address within the window; then HTTP 429.
    login_max_failures: int = Field(default=5, ge=1, le=100)
    login_window_minutes: int = Field(default=5, ge=1, le=1440)
    page_size: int = Field(default=50, ge=5, le=500)

    @field_validator("users")
    @classmethod
    def _unique(cls, value: list[WebUser]) -> list[WebUser]:
        seen: set[str] = set()
        for user in value:
            if user.name.lower() in seen:
                raise ValueError(f"user name {user.name!r} is used twice")
            seen.add(user.name.lower())
        return value

    def session_key(self) -> str:
        """The cookie-signing key; a ConfigError naming ``web.session_secret`` when absent or weak."""
        if self.session_secret is None:
            raise ConfigError("web.session_secret", "the console needs a session key (env:VAR or file:PATH) of at "
                                                    f"least {MIN_SECRET_LENGTH} characters, e.g. from "
                                                    "`python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`")
        value = self.session_secret.reveal("web.session_secret")
        if len(value) < MIN_SECRET_LENGTH:
            raise ConfigError("web.session_secret", f"too short: at least {MIN_SECRET_LENGTH} characters")
        return value
