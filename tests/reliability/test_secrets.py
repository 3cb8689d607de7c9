"""Secrets never leave recon: not in logs (DEBUG included), errors, output, reports, the store or quarantine,
even when the other side repeats them back.

One workday against careless servers: every channel API echoes the request (Authorization header, API-key
headers, query string, body) into 500 bodies and 4xx JSON errors, the chat robot into its error message,
the SMTP server into its 535 reply. The shop is a real MariaDB reached with a password. Then everything
recon printed, logged and wrote under its folder is searched for every secret, raw, URL-encoded,
base64 (HTTP Basic and SMTP AUTH carry credentials so) and JSON-escaped.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pymysql
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from typer.testing import Result

import recon_cli
from recon.logs import setup_logging
from tests.alert_servers import MailBox, free_port
from tests.reliability.hostile_world import (
    DAY_TEXT,
    EP_ORDER,
    Channels,
    Echo,
    channels,  # noqa: F401 (fixture)
    cli,
    fast_http,
    files_text,
    leaks,
    secret_forms,
)
from tests.shopdb import DUJIAOKA_DDL, MARIADB, insert_order, mariadb_db

# Each secret holds characters that change when URL-encoded, JSON-escaped or base64-encoded.
EPAY_KEY = "Ep+Key/7=q&Z9x"  # travels in the query string (Epay V1)
STRIPE_KEY = "sk_test_51Hx" + "Q" * 8 + "echoME"  # a Bearer token
PAYPAL_ID, PAYPAL_SECRET = "AcL13ntId", "EPp@yS3cr3t-9/x+"  # HTTP Basic: base64(id:secret)
TRON_KEY = "7c2e8a1f-4b3d-4e5f-9a6b-1c2d3e4f5a6b"  # an API-key header
APIV3_KEY = "W3ch4tAp1v3K3yW3ch4tAp1v3K3y0123"  # WeChat's APIv3 key (the server echoes it)
DSN_PASSWORD = "Sh0p:P@ss/w0rd%+"  # URL-quoted inside the DSN
SMTP_USER, SMTP_PASSWORD = "finance@example.com", "Sm+p/P4ss=w0rd"
HOOK_TOKEN = "9f2b7c1e4d3a6b5c8e7f0a1b2c3d4e5f"  # DingTalk's access_token, in the webhook URL's query
HOOK_SECRET = "SEC7f3a9b2c1d0e4f5a6b7c8d9e0f1a2b3c"  # DingTalk's signing secret


class EchoingAuth:
    """An SMTP server that refuses every login and repeats the credentials in its 535 reply."""

    def __call__(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                 auth_data: Any) -> AuthResult:
        login, password = ((auth_data.login.decode(), auth_data.password.decode())
                           if isinstance(auth_data, LoginPassword) else ("?", "?"))
        blob = base64.b64encode(f"\0{login}\0{password}".encode()).decode()
        return AuthResult(success=False, handled=False,
                          message=f"535 5.7.8 no such user {login} with password {password} ({blob})")


@contextmanager
def echoing_smtp() -> Iterator[int]:
    port = free_port()
    controller = Controller(MailBox(), hostname="127.0.0.1", port=port, authenticator=EchoingAuth(),
                            auth_require_tls=False)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@contextmanager
def shop_with_password() -> Iterator[str]:
    """A dujiaoka database on MariaDB and a user that needs DSN_PASSWORD; yields the DSN (password quoted)."""
    user = f"recon_{secrets.token_hex(4)}"
    with mariadb_db(DUJIAOKA_DDL) as db:
        admin = pymysql.connect(**MARIADB, autocommit=True)
        try:
            with admin.cursor() as cur:
                cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", [user, DSN_PASSWORD])
                cur.execute(f"GRANT ALL ON `{db.name}`.* TO %s@'%%'", [user])
            con = db.connect()
            try:
                insert_order(con, EP_ORDER.order_no, f"{EP_ORDER.amount:.2f}", status=1, pay_id=14,
                             created="2026-11-20 12:00:00")
                insert_order(con, "PAID-OK-1", "5.00", status=4, pay_id=14, trade_no="T-OK",
                             created="2026-11-20 09:00:00", email="buyer+1@example.com")
            finally:
                con.close()
            yield (f"mysql://{user}:{quote(DSN_PASSWORD, safe='')}@{MARIADB['host']}:{MARIADB['port']}/{db.name}")
        finally:
            with admin.cursor() as cur:
                cur.execute("DROP USER IF EXISTS %s@'%%'", [user])
            admin.close()


def debug_logging(json_lines: bool | None = None, verbose: bool = False) -> None:
    """The CLI's own logging set-up, then every recon logger at DEBUG (a command shows warnings only)."""
    setup_logging(json_lines, verbose)
    logging.getLogger("recon").setLevel(logging.DEBUG)


def config_text(world: Channels, keys: Path, smtp_port: int) -> str:
    base = world.server.base_url
    (keys / "wx_key.pem").write_text(world.wx.merchant_private_pem, encoding="utf-8")
    (keys / "wx_platform.pem").write_text(world.wx.platform_public_pem, encoding="utf-8")
    return f"""
[store]
path = "recon.duckdb"

[shop]
kind = "dujiaoka"
dsn = "env:SHOP_DSN"

[[channels]]
id = "ep"
kind = "epay"
shop_pay_ids = [14]
auto_repair_max = 500
api_base = "{base}/epay"
api = {{ pid = "{world.ep.pid}" }}
credentials = {{ key = "env:EPAY_KEY" }}

[[channels]]
id = "st"
kind = "stripe"
currency = "USD"
shop_pay_ids = [20]
api_base = "{base}/stripe"
credentials = {{ secret_key = "env:STRIPE_KEY" }}

[[channels]]
id = "pp"
kind = "paypal"
currency = "USD"
shop_pay_ids = [21]
api_base = "{base}/paypal"
api = {{ client_id = "{PAYPAL_ID}" }}
credentials = {{ client_secret = "env:PAYPAL_SECRET" }}

[[channels]]
id = "tr"
kind = "usdt_trc20"
shop_pay_ids = [22]
api_base = "{base}/trongrid"
api = {{ wallet = "TJRabPrwbZy45sbavfcjinPJC18kjpRTv8" }}
credentials = {{ api_key = "env:TRON_KEY" }}

[[channels]]
id = "wx"
kind = "wechatpay"
shop_pay_ids = [8]
api_base = "{base}/wechatpay"
api = {{ mchid = "{world.wx.mchid}", serial_no = "{world.wx.merchant_serial}", platform_serial = "{world.wx.platform_serial}" }}
credentials = {{ private_key = "file:{keys / 'wx_key.pem'}", platform_public_key = "file:{keys / 'wx_platform.pem'}", apiv3_key = "env:APIV3_KEY" }}

[reports]
out_dir = "reports"
formats = ["xlsx", "html", "csv", "parquet"]
language = "en"

[alerts]
min_priority = 4

[[alerts.webhooks]]
kind = "dingtalk"
url = "env:HOOK_URL"
secret = "env:HOOK_SECRET"

[[alerts.webhooks]]
kind = "json"
url = "env:JSON_HOOK_URL"
secret = "env:HOOK_SECRET"

[alerts.mail]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
username = "{SMTP_USER}"
password = "env:SMTP_PASSWORD"
sender = "recon@example.com"
to = ["finance@example.com"]
"""


def test_no_secret_is_logged_printed_or_written_even_when_servers_echo_it(
        channels: Channels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    fast_http(monkeypatch, read=10.0, deadline=30.0)
    folder, keys = tmp_path / "recon", tmp_path / "keys"
    folder.mkdir()
    keys.mkdir()
    monkeypatch.setattr(channels.ep, "key", EPAY_KEY)
    channels.wx.echo = f"{APIV3_KEY} {channels.wx.merchant_private_pem}"
    results: list[tuple[str, Result]] = []
    with shop_with_password() as dsn, echoing_smtp() as smtp_port:
        for name, value in {"SHOP_DSN": dsn, "EPAY_KEY": EPAY_KEY, "STRIPE_KEY": STRIPE_KEY,
                            "PAYPAL_SECRET": PAYPAL_SECRET, "TRON_KEY": TRON_KEY, "APIV3_KEY": APIV3_KEY,
                            "SMTP_PASSWORD": SMTP_PASSWORD, "HOOK_SECRET": HOOK_SECRET,
                            "HOOK_URL": f"{channels.server.base_url}/hook/robot/send?access_token={HOOK_TOKEN}",
                            "JSON_HOOK_URL": f"{channels.server.base_url}/jsonhook/{HOOK_TOKEN}"}.items():
            monkeypatch.setenv(name, value)
        config = folder / "recon.toml"
        config.write_text(config_text(channels, keys, smtp_port), encoding="utf-8")
        caplog.set_level(logging.DEBUG)
        monkeypatch.setattr(recon_cli, "setup_logging", debug_logging)

        def run(*args: str, expect: int) -> Result:
            result = cli(config, *args)
            results.append((" ".join(args), result))
            assert result.exit_code == expect, (args, result.output)
            return result

        # The Epay panel answers honestly first: EP-LOST-1 is paid there and lost in the shop.
        run("run", "--date", DAY_TEXT, "--channel", "ep", expect=3)
        # From now on every API echoes what it is sent: JSON errors (Epay and the chat robot answer them with
        # HTTP 200, as they do), and 500s that are retried.
        for prefix, status in (("/epay", 200), ("/stripe", 401), ("/paypal", 401), ("/trongrid", 500),
                               ("/hook", 200), ("/jsonhook", 403)):
            channels.server.channels[prefix] = Echo(prefix, status)
        channels.wx.reject_with = (400, "PARAM_ERROR")
        fetched = run("fetch", "--date", DAY_TEXT, expect=1)
        repaired = run("repair", "--apply", "--json", expect=3)
        run("redeliver", EP_ORDER.order_no, "--yes", expect=3)
        for channel in ("ep", "st", "wx"):
            run("query", EP_ORDER.order_no, "--channel", channel, expect=1)
        nightly = run("--log-json", "run", "--date", DAY_TEXT, "--apply", expect=1)
        run("report", "--date", DAY_TEXT, "--format", "xlsx,html,csv,parquet", "--out", str(folder / "again"), expect=0)
        run("exceptions", "list", "--json", expect=0)
        run("exceptions", "show", "1", "--json", expect=0)
        monkeypatch.setenv("SHOP_DSN", dsn.replace(quote(DSN_PASSWORD, safe=""), quote(DSN_PASSWORD[::-1], safe="")))
        refused = run("run", "--date", DAY_TEXT, "--no-fetch", expect=1)

    # the echoes really came back, and recon told what failed
    echoes: list[Echo] = [channels.server.channels[p] for p in ("/epay", "/stripe", "/paypal")]  # type: ignore[misc]
    seen = [(str(r.query), str(r.headers)) for echo in echoes for r in echo.seen]
    basic = "Basic " + base64.b64encode(f"{PAYPAL_ID}:{PAYPAL_SECRET}".encode()).decode()
    assert any(EPAY_KEY in query for query, _ in seen)
    assert any("Bearer " + STRIPE_KEY in headers for _, headers in seen)
    assert any(basic in headers for _, headers in seen)
    assert "failed" in fetched.stdout and "re-query failed" in repaired.stdout
    recon_records = {r.name for r in caplog.records if r.name.startswith("recon") and r.levelno < logging.WARNING}
    assert "recon.alerts" in {r.name for r in caplog.records} and "recon.jobs" in recon_records
    assert any(r.name.startswith("urllib3") for r in caplog.records) and '"run_id"' in nightly.stderr
    assert "cannot connect to the shop database" in refused.stderr
    assert (folder / "reports").is_dir() and any((folder / "reports").iterdir())
    assert nightly.exit_code == 1

    wanted = {
        "epay key": secret_forms(EPAY_KEY), "stripe key": secret_forms(STRIPE_KEY),
        "paypal secret": secret_forms(PAYPAL_SECRET, f"{PAYPAL_ID}:{PAYPAL_SECRET}"),
        "tron key": secret_forms(TRON_KEY), "apiv3 key": secret_forms(APIV3_KEY),
        "wechat private key": {line for line in channels.wx.merchant_private_pem.splitlines()[1:-1] if len(line) > 16},
        "dsn password": secret_forms(DSN_PASSWORD) | secret_forms(DSN_PASSWORD[::-1]),
        "smtp password": secret_forms(SMTP_PASSWORD, f"\0{SMTP_USER}\0{SMTP_PASSWORD}"),
        "hook token": secret_forms(HOOK_TOKEN), "hook secret": secret_forms(HOOK_SECRET),
    }
    # aiosmtpd logs the hostile server's own side of the dialogue ("mail.log"): not recon's logging
    logged = "\n".join(logging.Formatter().format(r) for r in caplog.records if not r.name.startswith("mail.log"))
    texts = {"log": logged, **{f"recon {args} (#{i})": r.stdout + r.stderr for i, (args, r) in enumerate(results)},
             **files_text(folder)}
    assert leaks(texts, wanted) == []
