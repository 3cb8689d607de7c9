"""The sandbox HTTP server: routes by path prefix to channel modules, injects faults on request."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

# Generic faults the server applies itself; channel modules read the others from ``request.fault``.
SERVER_FAULTS = ("500", "429", "timeout", "reset", "slow_body", "html")
CHANNEL_FAULTS = ("bad_signature", "no_signature", "stale_timestamp", "wrong_merchant", "bad_hash", "not_ready",
                  "foreign_host")
# How long a "timeout" fault holds the response (longer than any test client's read timeout).
TIMEOUT_SECONDS = 3.0


@dataclass
class Refund:
    refund_id: str
    amount: Decimal  # positive
    at: datetime


@dataclass
class Payment:
    """One order as the channel knows it. ``paid_at`` is aware; amounts in major units."""

    order_no: str
    amount: Decimal
    txn_id: str
    paid_at: datetime
    status: str = "paid"  # paid | unpaid | closed
    currency: str = "CNY"
    fee: Decimal | None = None
    refunds: list[Refund] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)  # channel-specific: wallet, api_trade_no, confirmations …


@dataclass(frozen=True)
class SandboxRequest:
    method: str
    path: str  # without the channel prefix
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    fault: str | None  # a CHANNEL_FAULTS entry to apply to this answer, or None

    def json(self) -> Any:
        return json.loads(self.body or b"{}")

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))


@dataclass
class SandboxResponse:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, value: Any, status: int = 200, headers: dict[str, str] | None = None) -> SandboxResponse:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return cls(status, text.encode("utf-8"), {"Content-Type": "application/json; charset=utf-8", **(headers or {})})


class SandboxChannel(Protocol):
    prefix: str  # e.g. "/alipay"

    def handle(self, request: SandboxRequest) -> SandboxResponse: ...


@dataclass
class Fault:
    kind: str
    remaining: int
    path: str  # applies to requests whose path starts with this


class Sandbox:
    """Serve the given channel modules until ``stop``; use as a context manager."""

    def __init__(self, *channels: SandboxChannel) -> None:
        self.channels = {c.prefix: c for c in channels}
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []  # (method, full path) of every request, for assertions
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def add_fault(self, kind: str, times: int = 1, path: str = "") -> None:
        if kind not in SERVER_FAULTS + CHANNEL_FAULTS:
            raise ValueError(f"unknown fault {kind!r}")
        with self._lock:
            self.faults.append(Fault(kind, times, path))

    def _take_fault(self, path: str) -> str | None:
        with self._lock:
            for fault in self.faults:
                if fault.remaining > 0 and path.startswith(fault.path):
                    fault.remaining -= 1
                    return fault.kind
        return None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "sandbox not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, prefix: str) -> str:
        return self.base_url + prefix

    def start(self) -> Sandbox:
        sandbox = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                return

            def _serve(self) -> None:
                sandbox._dispatch(self)

            do_GET = do_POST = do_PUT = _serve

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._lock:
            self.requests.append((handler.command, handler.path))
        prefix = next((p for p in self.channels if parts.path.startswith(p + "/") or parts.path == p), None)
        fault = self._take_fault(parts.path)
        if fault == "reset":
            handler.connection.shutdown(socket.SHUT_RDWR)
            handler.close_connection = True
            return
        if fault == "timeout":
            time.sleep(TIMEOUT_SECONDS)
        if prefix is None:
            response = SandboxResponse(404, b"no such sandbox channel")
        elif fault == "500":
            response = SandboxResponse(500, b"internal error")
        elif fault == "429":
            response = SandboxResponse(429, b"slow down", {"Retry-After": "1"})
        elif fault == "html":
            response = SandboxResponse(200, b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                                       {"Content-Type": "text/html"})
        else:
            request = SandboxRequest(handler.command, parts.path[len(prefix):], dict(parse_qsl(parts.query,
                                     keep_blank_values=True)), {k.lower(): v for k, v in handler.headers.items()},
                                     body, fault if fault in CHANNEL_FAULTS else None)
            response = self.channels[prefix].handle(request)
        self._write(handler, response, slow=fault == "slow_body")

    @staticmethod
    def _write(handler: BaseHTTPRequestHandler, response: SandboxResponse, slow: bool) -> None:
        try:
            handler.send_response(response.status)
            for key, value in response.headers.items():
                handler.send_header(key, value)
            handler.send_header("Content-Length", str(len(response.body)))
            handler.end_headers()
            if slow:
                for i in range(0, len(response.body), 64):
                    handler.wfile.write(response.body[i:i + 64])
                    handler.wfile.flush()
                    time.sleep(TIMEOUT_SECONDS / 4)
            else:
                handler.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            return


class _QuietServer(ThreadingHTTPServer):
    """Connections the faults cut on purpose are not errors worth a traceback."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        return
