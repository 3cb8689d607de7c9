"""Secrets are references (``env:VAR`` or ``file:PATH``), resolved only when used and never printed."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

from recon.errors import ConfigError

_DSN_PASSWORD = re.compile(r"(?P<scheme>[a-z0-9+]+://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")


class Secret:
    """A reference to a secret. ``str()`` and ``repr()`` show the reference, never the value."""

    def __init__(self, ref: str) -> None:
        if not ref.startswith(("env:", "file:")):
            raise ValueError("secrets are written as env:VARIABLE or file:/path/to/file, never inline")
        self.ref = ref

    def reveal(self, key: str = "secret") -> str:
        """The secret's value; a missing variable or file is a ConfigError naming ``key``."""
        scheme, _, name = self.ref.partition(":")
        if scheme == "env":
            value = os.environ.get(name)
            if value is None:
                raise ConfigError(key, f"environment variable {name} is not set")
            return value
        path = Path(name).expanduser()
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(key, f"cannot read secret file {path}: {exc.strerror}") from None

    def __repr__(self) -> str:
        return f"Secret({self.ref!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.ref == self.ref

    def __hash__(self) -> int:
        return hash(self.ref)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        from_text = core_schema.no_info_after_validator_function(cls, core_schema.str_schema())
        return core_schema.union_schema(
            [core_schema.is_instance_schema(cls), from_text],
            serialization=core_schema.plain_serializer_function_ser_schema(lambda s: s.ref),
        )


def reject_inline_password(dsn: str) -> str:
    """A DSN given inline must not carry a password: that belongs in env:/file:."""
    if _DSN_PASSWORD.search(dsn):
        raise ValueError("this DSN holds a password; put the whole DSN in env:VAR or file:PATH")
    return dsn


def redact(text: str, secrets: list[str]) -> str:
    """Replace every occurrence of a known secret value and every DSN password in ``text``.

    A server that echoes a request repeats a secret the way it travelled: URL-encoded in a query string,
    base64 in an Authorization header, JSON-escaped in an error body. Those forms are replaced too.
    """
    forms = {form for value in secrets if value for form in secret_forms(value)}
    for form in sorted(forms, key=len, reverse=True):  # longest first: a form never hides inside another
        text = text.replace(form, "***")
    return _DSN_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


def secret_forms(value: str) -> set[str]:
    """``value`` and the encodings it is sent or echoed in (URL, base64, JSON string)."""
    raw = value.encode("utf-8")
    forms = {value, quote(value, safe=""), quote(value), quote_plus(value), json.dumps(value)[1:-1],
             json.dumps(value, ensure_ascii=False)[1:-1], base64.b64encode(raw).decode("ascii"),
             base64.urlsafe_b64encode(raw).decode("ascii")}
    return {form for form in forms if form}


def basic_credential(user: str, password: str) -> str:
    """The base64 token of an HTTP Basic ``Authorization`` header: a secret as much as the password."""
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
