"""Channels that fail, lie or echo secrets, a recon folder in front of them, and ways to read back all
that recon wrote; shared by the reliability tests of faults, signatures, secrets, injection and forgery.

The channels are the project's own sandbox (``fetchers.sandbox``: real WeChat Pay, Alipay and Epay
modules with real signatures and switchable faults) plus two hostile stand-ins written here: ``Echo``, a
careless API that repeats the request (Authorization header, query string, body) into its error bodies,
and ``Skewed``, WeChat Pay answers signed with a clock that is off by a set number of seconds.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import sqlite3
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, urlencode
from zoneinfo import ZoneInfo

import duckdb
import polars as pl
import pytest
from typer.testing import CliRunner, Result

import recon.fetching
from fetchers import wechatpay_sign as ws
from fetchers.http import ChannelSession
from fetchers.sandbox import Payment, Sandbox, SandboxRequest, SandboxResponse
from fetchers.sandbox import server as sandbox_server
from fetchers.sandbox.alipay import AlipaySandbox
from fetchers.sandbox.epay import EpaySandbox
from fetchers.sandbox.wechatpay import WechatPaySandbox
from recon_cli import app
from tests.scenario import DAY, Scenario

SH = ZoneInfo("Asia/Shanghai")
DAY_TEXT = DAY.isoformat()
runner = CliRunner()
# RECON_RELIABILITY_FULL=1 runs every combination of faults and forgeries; the default run takes a cross-section.
FULL = os.environ.get("RECON_RELIABILITY_FULL") == "1"

# Short network deadlines for the tests (the defaults are 30 s reads and 300 s per response).
READ_TIMEOUT = 0.3
RESPONSE_DEADLINE = 0.3
# How long the sandbox holds a "timeout" answer, and a quarter of it between the 64-byte pieces of a
# "slow_body": longer than READ_TIMEOUT, and a body of a few hundred bytes trickles past the deadline.
SANDBOX_STALL = 0.8

EPAY_PID = "1001"
ALIPAY_APP_ID = "2021000000000001"
ALIPAY_PID = "2088123456789012"  # the bill's 账号 is this PID followed by 0156 (the sandbox's default account)

# One lost payment per channel on DAY: paid at the channel, still pending (dujiaoka status 1) in the shop.
WX_ORDER = Payment("WX-LOST-1", Decimal("30.00"), "4200002026112000000000001", datetime(2026, 11, 20, 10, 0, 5,
                                                                                        tzinfo=SH))
ALI_ORDER = Payment("ALI-LOST-1", Decimal("20.00"), "2026112022001400001", datetime(2026, 11, 20, 11, 0, 5, tzinfo=SH))
EP_ORDER = Payment("EP-LOST-1", Decimal("12.00"), "2026112012000011111", datetime(2026, 11, 20, 12, 0, 5, tzinfo=SH))
# channel id → (dujiaoka pays.id, the channel's lost order)
SHOP_SIDE = {"wx": (8, WX_ORDER), "ali": (2, ALI_ORDER), "ep": (14, EP_ORDER)}
PREFIX = {"wx": "/wechatpay", "ali": "/alipay", "ep": "/epay"}


def cli(config: Path, *args: str) -> Result:
    """``recon --config CONFIG ARGS…`` in this process (stdout and stderr kept apart)."""
    return runner.invoke(app, ["--config", str(config), *args])


# ---------------------------------------------------------------------------------------------- channels


class Echo:
    """A careless channel API: every answer repeats the request, credentials included.

    ``status`` 500 answers a plain-text body (retried by the client until it gives up); any other
    status answers JSON ``{"code", "msg", "error": {"message"}}`` with the echo in every text field.
    """

    def __init__(self, prefix: str, status: int = 500) -> None:
        self.prefix = prefix
        self.status = status
        self.seen: list[SandboxRequest] = []

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        self.seen.append(request)
        echo = " ".join([f"Authorization: {request.headers.get('authorization', '-')}",
                         *(f"{k}: {v}" for k, v in request.headers.items() if "key" in k or "token" in k),
                         f"query: {urlencode(request.query)}", f"body: {request.body.decode('utf-8', 'replace')}"])
        if self.status >= 500:
            return SandboxResponse(self.status, f"upstream failed for {echo}".encode(), {"Content-Type": "text/plain"})
        return SandboxResponse.json({"code": -3, "errcode": 310000, "msg": echo, "errmsg": echo,
                                     "error": {"type": "invalid_request_error", "message": echo}}, self.status)


class Skewed:
    """WeChat Pay answers as the real sandbox makes them, re-signed as if WeChat's clock were ``shift`` s off."""

    prefix = "/wechatpay"

    def __init__(self, inner: WechatPaySandbox, shift: int) -> None:
        self.inner = inner
        self.shift = shift

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        answer = self.inner.handle(request)
        stamp = answer.headers.get(ws.HEADER_TIMESTAMP)
        if stamp is not None:
            moved = str(int(stamp) + self.shift)
            nonce = answer.headers[ws.HEADER_NONCE]
            answer.headers[ws.HEADER_TIMESTAMP] = moved
            answer.headers[ws.HEADER_SIGNATURE] = ws.sign(self.inner.platform_key,
                                                          ws.answer_message(moved, nonce, answer.body))
        return answer


@dataclass
class Channels:
    """The sandbox server with one WeChat Pay merchant, one Alipay app and one Epay panel."""

    server: Sandbox
    wx: WechatPaySandbox
    ali: AlipaySandbox
    ep: EpaySandbox
    epay_key: str

    def reset(self) -> None:
        """Every channel back to its one lost payment of DAY, no faults, nothing recorded."""
        self.wx.payments = [WX_ORDER]
        self.wx.echo, self.wx.reject_with = None, None
        self.ali.payments = [ALI_ORDER]
        self.ep.reset([EP_ORDER])
        self.server.channels = {m.prefix: m for m in (self.wx, self.ali, self.ep)}
        self.server.faults.clear()
        self.server.requests.clear()

    def requests_to(self, path: str) -> int:
        """How many requests the server received whose path starts with ``path``."""
        return sum(1 for _, full in self.server.requests if full.startswith(path))

    def write_keys(self, folder: Path) -> None:
        keys = {"wx_key.pem": self.wx.merchant_private_pem, "wx_platform.pem": self.wx.platform_public_pem,
                "ali_key.pem": self.ali.app_private_key_pem, "ali_public.pem": self.ali.alipay_public_key_pem}
        for name, pem in keys.items():
            (folder / name).write_text(pem, encoding="utf-8")

    def toml(self, folder: Path, wx_extra: str = "") -> str:
        """``[[channels]]`` tables for wx, ali and ep; keys in files under ``folder``, the Epay key in env.

        ``wx_extra`` adds lines to the wx table (e.g. ``tolerance = 0.05``).
        """
        self.write_keys(folder)
        base = self.server.base_url
        return f"""
[[channels]]
id = "wx"
kind = "wechatpay"
shop_pay_ids = [8]
auto_repair_max = 500
api_base = "{base}/wechatpay"
api = {{ mchid = "{self.wx.mchid}", serial_no = "{self.wx.merchant_serial}", platform_serial = "{self.wx.platform_serial}" }}
credentials = {{ private_key = "file:{folder / 'wx_key.pem'}", platform_public_key = "file:{folder / 'wx_platform.pem'}" }}
{wx_extra}
[[channels]]
id = "ali"
kind = "alipay"
shop_pay_ids = [2]
auto_repair_max = 500
merchant_id = "{ALIPAY_PID}"
api_base = "{base}/alipay/gateway.do"
api = {{ app_id = "{ALIPAY_APP_ID}" }}
credentials = {{ private_key = "file:{folder / 'ali_key.pem'}", alipay_public_key = "file:{folder / 'ali_public.pem'}" }}

[[channels]]
id = "ep"
kind = "epay"
shop_pay_ids = [14]
auto_repair_max = 500
api_base = "{base}/epay"
api = {{ pid = "{EPAY_PID}" }}
credentials = {{ key = "env:HOSTILE_EPAY_KEY" }}
"""


EPAY_KEY = "ep-key-9f3c2a71d0"


@functools.cache
def _world() -> Channels:
    """One running sandbox for the session: key pairs take a while to generate and a server half a second
    to stop; each test gets the channels reset (and may swap modules in and out)."""
    wx, ali = WechatPaySandbox([WX_ORDER]), AlipaySandbox([ALI_ORDER], app_id=ALIPAY_APP_ID)
    ep = EpaySandbox(EPAY_PID, EPAY_KEY, [EP_ORDER])
    return Channels(Sandbox(wx, ali, ep).start(), wx, ali, ep, EPAY_KEY)


@pytest.fixture
def channels(monkeypatch: pytest.MonkeyPatch) -> Iterator[Channels]:
    """The sandbox channels, reset; the Epay key is in the environment as the config expects."""
    world = _world()
    monkeypatch.setenv("HOSTILE_EPAY_KEY", world.epay_key)
    world.reset()
    yield world
    world.reset()


def shop_with_lost_orders(folder: Path, channels: Channels, extra_toml: str = "", wx_extra: str = "") -> Scenario:
    """A SQLite dujiaoka shop whose three orders were paid at wx, ali and ep but are still status 1."""
    scenario = Scenario(folder, more_channels=channels.toml(folder, wx_extra) + extra_toml)
    for pay_id, payment in SHOP_SIDE.values():
        scenario.order(payment.order_no, f"{payment.amount:.2f}", status=1, pay_id=pay_id)
    return scenario


def fast_http(monkeypatch: pytest.MonkeyPatch, read: float = READ_TIMEOUT,
              deadline: float = RESPONSE_DEADLINE) -> list[float]:
    """Every channel session recon makes gets these deadlines and records its backoff waits instead of
    sleeping them; returns the waits. The sandbox's stalls are shortened to SANDBOX_STALL.

    The tests check the waits (Retry-After honoured, backoff capped) and stay fast. Tests that expect an
    answer to arrive pass generous deadlines: a loaded machine must not turn into a false failure.
    """
    waits: list[float] = []
    monkeypatch.setattr(recon.fetching, "ChannelSession",
                        functools.partial(ChannelSession, read_timeout=read, response_deadline=deadline,
                                          sleep=waits.append))
    monkeypatch.setattr(sandbox_server, "TIMEOUT_SECONDS", SANDBOX_STALL)
    return waits


# ---------------------------------------------------------------------------------------------- reading back


def store_text(path: Path) -> str:
    """Every row of every table of the DuckDB store at ``path``, as text (tables and rows sorted)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables "
                                            "WHERE table_schema = 'main' ORDER BY table_name").fetchall()]
        lines = []
        for table in tables:
            lines.append(f"## {table}")
            lines += [repr(row) for row in con.execute(f'SELECT * FROM "{table}" ORDER BY ALL').fetchall()]
        return "\n".join(lines)
    finally:
        con.close()


def shop_rows(scenario: Scenario) -> list[tuple[Any, ...]]:
    """Every orders and carmis row of the SQLite shop, for before/after comparisons."""
    con = sqlite3.connect(scenario.shop_path)
    try:
        return [*con.execute("SELECT * FROM orders ORDER BY id"), *con.execute("SELECT * FROM carmis ORDER BY id")]
    finally:
        con.close()


def files_text(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` as text: zip members (xlsx) unpacked, Parquet and DuckDB read as tables."""
    found: dict[str, str] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        name = str(path.relative_to(folder))
        if raw[:2] == b"PK":
            with zipfile.ZipFile(io.BytesIO(raw)) as archive:
                for member in archive.namelist():
                    found[f"{name}!{member}"] = archive.read(member).decode("utf-8", "replace")
        elif raw[:4] == b"PAR1":
            found[name] = pl.read_parquet(path).write_csv()
        elif raw[8:12] == b"DUCK":  # the store, and the snapshot of it published for readers
            found[name] = store_text(path)
        else:
            found[name] = raw.decode("utf-8", "replace")
    return found


def secret_forms(secret: str, *also: str) -> set[str]:
    """The secret and the forms a request or a body may carry it in: URL-encoded, base64, JSON-escaped.

    ``also`` are whole credentials built from it (e.g. ``client_id:secret`` of HTTP Basic auth).
    """
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret),
             json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    for value in (secret, *also):
        forms.add(base64.b64encode(value.encode()).decode())
        forms.add(base64.urlsafe_b64encode(value.encode()).decode())
    return {f for f in forms if f}


def leaks(texts: dict[str, str], secrets: dict[str, set[str]]) -> list[str]:
    """Where any form of any secret appears: ``"<where>: <secret name> as <form>"`` lines."""
    return [f"{where}: {name} as {form!r}" for where, text in texts.items() for name, forms in secrets.items()
            for form in sorted(forms) if form in text]
