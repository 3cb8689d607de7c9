"""Real local servers for the alert tests: an HTTP server that records every request and answers from
a script, and an SMTP server (aiosmtpd) that keeps every message it receives."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    body: Any = field(default_factory=lambda: {"errcode": 0, "errmsg": "ok"})
    headers: dict[str, str] = field(default_factory=dict)


class RecordingServer:
    """``script[path]`` is the list of answers for that path, in order; the last one repeats."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.script: dict[str, list[Answer]] = {}
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with owner._lock:
                    owner.requests.append(Recorded("POST", parts.path, dict(parse_qsl(parts.query)),
                                                   dict(self.headers.items()), body))
                    answers = owner.script.get(parts.path, [Answer(404, {"error": "no route"})])
                    answer = answers.pop(0) if len(answers) > 1 else answers[0]
                raw = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
                self.send_response(answer.status)
                for name, value in {"Content-Type": "application/json", **answer.headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def on(self, path: str, *answers: Answer) -> None:
        self.script[path] = list(answers)

    def to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)


def answer_json(handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
    """Write ``body`` as a JSON answer; a client that stopped waiting (a timeout test) is not an error."""
    data = json.dumps(body).encode()
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


class MailBox:
    """An aiosmtpd handler keeping every message (``envelope.content`` is the raw message)."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted"


class Authenticator:
    def __init__(self, box: MailBox, user: str, password: str) -> None:
        self.box, self.user, self.password = box, user, password

    def __call__(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                 auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            ok = auth_data.login.decode() == self.user and auth_data.password.decode() == self.password
            if ok:
                self.box.logins.append(self.user)
            return AuthResult(success=ok, handled=False)
        return AuthResult(success=False, handled=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def smtp_server(user: str | None = None, password: str | None = None) -> Iterator[tuple[MailBox, int]]:
    """A plain SMTP server on 127.0.0.1 (with AUTH when ``user`` is given; TLS not required)."""
    box = MailBox()
    port = free_port()
    extra: dict[str, Any] = {}
    if user is not None and password is not None:
        extra = {"authenticator": Authenticator(box, user, password), "auth_require_tls": False}
    controller = Controller(box, hostname="127.0.0.1", port=port, **extra)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()
