"""Alerts against real local servers: each webhook's payload and signature, thresholds, retries, mail."""

from __future__ import annotations

import base64
import email
import hashlib
import hmac
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from decimal import Decimal
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import polars as pl
import pytest

from fetchers.http import ChannelSession
from recon.config import AlertsConfig, Config, MailConfig, WebhookConfig, load_config
from recon.demo import run_demo
from recon.secrets import Secret
from reports import ReportData
from reports.alerts import AlertOutcome, build_digest, send_alerts
from reports.exports import render_csv
from reports.mail import send_mail
from tests.alert_servers import Answer, RecordingServer, free_port, smtp_server
from tests.scenario import full_report

DING_TOKEN = "dingaccesstoken0123456789abcdef"
DING_SECRET = "SECdingsigningsecret0123456789"
WECOM_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
FEISHU_HOOK = "2b0c6f1e-aaaa-bbbb-cccc-feishuhooktoken"
FEISHU_SECRET = "feishusigningsecret42"
SLACK_TOKEN = "XXXXslacktokenXXXXXXXXXX"
JSON_TOKEN = "jsontoken-5f2a9c"
JSON_SECRET = "jsonhmacsecret"
SMTP_PASSWORD = "smtp-p@ssw0rd-very-secret"
SECRETS = (DING_TOKEN, DING_SECRET, WECOM_KEY, FEISHU_HOOK, FEISHU_SECRET, SLACK_TOKEN, JSON_TOKEN, JSON_SECRET,
           SMTP_PASSWORD)
PATHS = {"dingtalk": "/robot/send", "wecom": "/cgi-bin/webhook/send", "feishu": f"/open-apis/bot/v2/hook/{FEISHU_HOOK}",
         "slack": f"/services/T0000/B0000/{SLACK_TOKEN}", "json": "/hooks/recon"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, ReportData, list[Path]]:
    folder = tmp_path_factory.mktemp("demo")
    _, summary, data = run_demo(folder)
    reports = [Path(p) for p in summary.reports] + render_csv(full_report(folder, summary.run_id), folder / "reports",
                                                              "zh-CN")
    return load_config(folder / "recon.toml"), data, reports


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    with RecordingServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"DING_SECRET": DING_SECRET, "FEISHU_SECRET": FEISHU_SECRET, "JSON_SECRET": JSON_SECRET,
                        "SMTP_PASSWORD": SMTP_PASSWORD}.items():
        monkeypatch.setenv(name, value)


def fast_session(name: str, secrets: Sequence[str]) -> ChannelSession:
    return ChannelSession(name, list(secrets), connect_timeout=2, read_timeout=2, max_attempts=3,
                          sleep=lambda _: None)


def hook(monkeypatch: pytest.MonkeyPatch, server: RecordingServer, kind: str, signed: bool = False,
         path: str | None = None) -> WebhookConfig:
    query = {"dingtalk": f"?access_token={DING_TOKEN}", "wecom": f"?key={WECOM_KEY}",
             "json": f"?token={JSON_TOKEN}"}.get(kind, "")
    var = f"HOOK_{kind.upper()}_{len(server.script)}"
    monkeypatch.setenv(var, f"{server.base}{path or PATHS[kind]}{query}")
    secret = Secret(f"env:{ {'dingtalk': 'DING'}.get(kind, kind.upper())}_SECRET") if signed else None
    return WebhookConfig(kind=kind, url=Secret(f"env:{var}"), secret=secret)  # type: ignore[arg-type]


def with_alerts(config: Config, **alerts: object) -> Config:
    return config.model_copy(update={"alerts": AlertsConfig(**alerts)})  # type: ignore[arg-type]


def assert_no_secrets(outcomes: list[AlertOutcome], caplog: pytest.LogCaptureFixture) -> None:
    shown = repr(outcomes) + caplog.text
    for secret in SECRETS:
        assert secret not in shown


def sign(key: bytes, msg: bytes) -> str:
    return base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()


def test_every_kind_gets_its_payload_and_signature(demo: tuple[Config, ReportData, list[Path]],
                                                   server: RecordingServer, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    config, data, reports = demo
    server.on(PATHS["dingtalk"], Answer(200, {"errcode": 0, "errmsg": "ok"}))
    server.on(PATHS["wecom"], Answer(200, {"errcode": 0, "errmsg": "ok"}))
    server.on(PATHS["feishu"], Answer(200, {"code": 0, "msg": "success", "data": {}}))
    server.on(PATHS["slack"], Answer(200, b"ok", {"Content-Type": "text/plain"}))
    server.on(PATHS["json"], Answer(200, {"received": True}))
    hooks = [hook(monkeypatch, server, "dingtalk", signed=True), hook(monkeypatch, server, "wecom"),
             hook(monkeypatch, server, "feishu", signed=True), hook(monkeypatch, server, "slack"),
             hook(monkeypatch, server, "json", signed=True)]
    caplog.set_level(logging.DEBUG)
    before = time.time()
    outcomes = send_alerts(with_alerts(config, webhooks=hooks, top=3), data, reports, session_factory=fast_session)
    assert [(o.status, o.attempts) for o in outcomes] == [("sent", 1)] * 5
    assert [o.target.split()[0] for o in outcomes] == ["dingtalk#0", "wecom#1", "feishu#2", "slack#3", "json#4"]

    (ding,) = server.to(PATHS["dingtalk"])
    assert ding.query["access_token"] == DING_TOKEN
    stamp = int(ding.query["timestamp"])
    assert before * 1000 - 1000 <= stamp <= time.time() * 1000 + 1000
    assert ding.query["sign"] == sign(DING_SECRET.encode(), f"{stamp}\n{DING_SECRET}".encode())
    body = ding.json()
    assert body["msgtype"] == "markdown" and set(body["markdown"]) == {"title", "text"}
    assert "2026-11-20" in body["markdown"]["title"] and "A8SHOPONLY000008" in body["markdown"]["text"]
    assert ding.headers["Content-Type"].startswith("application/json")

    (wecom,) = server.to(PATHS["wecom"])
    assert wecom.query == {"key": WECOM_KEY}
    assert wecom.json()["msgtype"] == "markdown" and "A8SHOPONLY000008" in wecom.json()["markdown"]["content"]

    (feishu,) = server.to(PATHS["feishu"])
    body = feishu.json()
    assert body["msg_type"] == "text" and "A8SHOPONLY000008" in body["content"]["text"]
    assert body["sign"] == sign(f"{body['timestamp']}\n{FEISHU_SECRET}".encode(), b"")
    assert before - 1 <= int(body["timestamp"]) <= time.time() + 1

    (slack,) = server.to(PATHS["slack"])
    assert list(slack.json()) == ["text"] and "A8SHOPONLY000008" in slack.json()["text"]

    (generic,) = server.to(PATHS["json"])
    body = generic.json()
    assert body["run_id"] == data.run_id and body["business_date"] == "2026-11-20"
    assert body["needing_person"] == 13 and body["counts"]["shop_only"] == 1
    assert body["top"][0] == {"order_no": "A8SHOPONLY000008", "code": "shop_only", "label": body["top"][0]["label"],
                              "channel": "ali", "priority": 1, "amount": "88.00", "difference": "-88.00",
                              "currency": "CNY"}
    assert all(isinstance(t["amount"], str) for t in body["top"])
    expected = "sha256=" + hmac.new(JSON_SECRET.encode(), f"{generic.headers['X-Recon-Timestamp']}.".encode()
                                    + generic.body, hashlib.sha256).hexdigest()
    assert generic.headers["X-Recon-Signature"] == expected
    assert_no_secrets(outcomes, caplog)


def test_below_threshold_nothing_is_sent(demo: tuple[Config, ReportData, list[Path]], server: RecordingServer,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    config, data, reports = demo
    server.on(PATHS["slack"], Answer(200, b"ok"))
    hooks = [hook(monkeypatch, server, "slack")]
    assert send_alerts(with_alerts(config, webhooks=hooks, min_count=14), data, reports, fast_session) == []
    # only lower priorities among the chosen codes: fee_mismatch is priority 3
    assert send_alerts(with_alerts(config, webhooks=hooks, codes=["fee_mismatch", "channel_only"]),
                       data, reports, fast_session) == []
    assert send_alerts(with_alerts(config, webhooks=hooks, min_priority=4, codes=["pending"], min_count=2),
                       data, reports, fast_session) == []
    assert server.requests == []
    urgent = build_digest(with_alerts(config, min_priority=1), data)
    assert urgent is not None and urgent.by_code == {"shop_only": 1, "trade_no_mismatch": 1}
    waiting = build_digest(with_alerts(config, min_priority=4), data)
    assert waiting is not None and "pending" not in waiting.by_code and "fee_mismatch" in waiting.by_code
    assert send_alerts(with_alerts(config, webhooks=hooks, min_count=13), data, reports, fast_session)[0].ok


def test_top_exceptions_by_priority_then_amount(demo: tuple[Config, ReportData, list[Path]]) -> None:
    config, data, _ = demo
    digest = build_digest(with_alerts(config, top=6, min_priority=3), data)
    assert digest is not None
    rows = [r for r in data.exceptions.iter_rows(named=True) if r["priority"] <= 3]
    amount = {r["order_no"]: (r["channel_amount"] or r["shop_amount"]) for r in rows}
    expected = sorted(rows, key=lambda r: (r["priority"], -abs(amount[r["order_no"]]), r["order_no"]))[:6]
    assert [t.order_no for t in digest.top] == [r["order_no"] for r in expected]
    assert [t.priority for t in digest.top] == sorted(t.priority for t in digest.top)
    assert digest.top[0].order_no == "A8SHOPONLY000008" and digest.top[0].amount == Decimal(88)
    assert sum(digest.by_code.values()) == digest.needing == len(rows)
    assert build_digest(with_alerts(config, top=0), data).top == []  # type: ignore[union-attr]


def test_retry_then_delivered_and_failures_recorded(demo: tuple[Config, ReportData, list[Path]],
                                                    server: RecordingServer, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    config, data, reports = demo
    server.on(PATHS["wecom"], Answer(500, {"error": "busy"}), Answer(200, {"errcode": 0, "errmsg": "ok"}))
    server.on(PATHS["slack"], Answer(500, b"boom"))
    server.on(PATHS["dingtalk"], Answer(200, {"errcode": 310000, "errmsg": "sign not match"}))
    closed = f"http://127.0.0.1:{free_port()}/services/T0/B0/{SLACK_TOKEN}"
    monkeypatch.setenv("HOOK_CLOSED", closed)
    hooks = [hook(monkeypatch, server, "wecom"), hook(monkeypatch, server, "slack"),
             hook(monkeypatch, server, "dingtalk", signed=True),
             WebhookConfig(kind="slack", url=Secret("env:HOOK_CLOSED")),
             WebhookConfig(kind="json", url=Secret("env:HOOK_UNSET"))]
    caplog.set_level(logging.DEBUG)
    outcomes = send_alerts(with_alerts(config, webhooks=hooks), data, reports, session_factory=fast_session)
    assert [(o.status, o.attempts) for o in outcomes] == [
        ("sent", 2), ("failed", 3), ("failed", 1), ("failed", 3), ("failed", 0)]
    assert len(server.to(PATHS["wecom"])) == 2 and len(server.to(PATHS["slack"])) == 3
    assert "HTTP 500" in outcomes[1].detail
    assert "310000" in outcomes[2].detail
    assert "ConnectionError" in outcomes[3].detail or "failed after" in outcomes[3].detail
    assert "HOOK_UNSET" in outcomes[4].detail  # names the variable, never a value
    assert "failed" in caplog.text
    assert_no_secrets(outcomes, caplog)


def mail_config(config: Config, port: int, **mail: object) -> Config:
    settings: dict[str, object] = {"host": "127.0.0.1", "port": port, "security": "none",
                                   "sender": "recon@shop.example", "to": ["finance@shop.example", "boss@shop.example"],
                                   "attach": ["xlsx", "csv"], "timeout_seconds": 5, **mail}
    return with_alerts(config, mail=MailConfig(**settings))  # type: ignore[arg-type]


def attachments(message: EmailMessage) -> dict[str, tuple[str, bytes]]:
    out = {}
    for part in message.iter_attachments():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        out[part.get_filename() or ""] = (part.get_content_type(), payload)
    return out


def test_mail_delivers_the_workbook(demo: tuple[Config, ReportData, list[Path]], tmp_path: Path,
                                    caplog: pytest.LogCaptureFixture) -> None:
    config, data, reports = demo
    workbook = next(p for p in reports if p.suffix == ".xlsx")
    chinese = shutil.copyfile(workbook, tmp_path / "对账报告_2026-11-20.xlsx")
    caplog.set_level(logging.DEBUG)
    with smtp_server() as (box, port):
        outcomes = send_alerts(mail_config(config, port), data, [*reports, chinese], fast_session)
    assert [(o.target, o.status, o.attempts) for o in outcomes] == [(f"mail 127.0.0.1:{port}", "sent", 1)]
    (envelope,) = box.envelopes
    assert sorted(envelope.rcpt_tos) == ["boss@shop.example", "finance@shop.example"]
    raw = envelope.original_content or b""
    message = email.message_from_bytes(raw, policy=default_policy)
    assert isinstance(message, EmailMessage)
    assert "2026-11-20" in message["Subject"] and "13" in message["Subject"]
    body = message.get_body(("plain",))
    assert body is not None and "A8SHOPONLY000008" in body.get_content()
    assert message.get_body(("html",)) is not None
    files = attachments(message)
    xlsx_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert files[workbook.name] == (xlsx_type, workbook.read_bytes())
    assert files[chinese.name] == (xlsx_type, workbook.read_bytes())
    assert b"filename*=utf-8''" in raw  # RFC 2231
    csvs = [p for p in reports if p.suffix == ".csv"]
    assert len(csvs) == 2 and all(files[p.name] == ("text/csv", p.read_bytes()) for p in csvs)
    assert not any(name.endswith(".html") for name in files)  # not in attach
    assert_no_secrets(outcomes, caplog)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_mail_login_and_refused_password(demo: tuple[Config, ReportData, list[Path]],
                                         caplog: pytest.LogCaptureFixture) -> None:
    config, data, reports = demo
    caplog.set_level(logging.DEBUG)
    with smtp_server("recon", SMTP_PASSWORD) as (box, port):
        good = send_mail(mail_config(config, port, username="recon", password="env:SMTP_PASSWORD"), data, reports)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SMTP_PASSWORD", SMTP_PASSWORD + "-wrong")
            sleeps: list[float] = []
            bad = send_mail(mail_config(config, port, username="recon", password="env:SMTP_PASSWORD"), data,
                            reports, sleep=sleeps.append)
    assert good.status == "sent" and box.logins == ["recon"] and len(box.envelopes) == 1
    assert bad.status == "failed" and bad.attempts == 1 and sleeps == []  # a refused login is not retried
    assert "SMTPAuthenticationError" in bad.detail
    assert_no_secrets([good, bad], caplog)
    assert SMTP_PASSWORD + "-wrong" not in repr(bad) + caplog.text


def test_mail_connection_errors_retried_then_failed(demo: tuple[Config, ReportData, list[Path]]) -> None:
    config, data, reports = demo
    sleeps: list[float] = []
    outcome = send_mail(mail_config(config, free_port()), data, reports, sleep=sleeps.append)
    assert (outcome.status, outcome.attempts, len(sleeps)) == ("failed", 3, 2)
    assert "ConnectionRefusedError" in outcome.detail
    no_mail = send_mail(config.model_copy(update={"alerts": AlertsConfig()}), data, reports)
    assert no_mail.status == "skipped"


def test_markup_in_untrusted_text_is_inert(demo: tuple[Config, ReportData, list[Path]], server: RecordingServer,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    config, data, reports = demo
    evil = "[click](http://evil.example) <at user_id=\"all\"></at> <!channel>"
    exceptions = data.exceptions.with_columns(order_no=pl.lit(evil))
    for kind in ("dingtalk", "wecom", "feishu", "slack"):
        server.on(PATHS[kind], Answer(200, b"ok" if kind == "slack" else {"errcode": 0, "code": 0}))
    hooks = [hook(monkeypatch, server, k) for k in ("dingtalk", "wecom", "feishu", "slack")]
    outcomes = send_alerts(with_alerts(config, webhooks=hooks, top=1), replace(data, exceptions=exceptions),
                           reports, fast_session)
    assert all(o.ok for o in outcomes)
    texts = {r.path: r.body.decode() for r in server.requests}
    assert len(texts) == 4 and not any("<at" in t or "<!channel>" in t for t in texts.values())
    assert not any("](http" in texts[PATHS[k]] for k in ("dingtalk", "wecom"))  # no markdown link


def test_no_open_exceptions(demo: tuple[Config, ReportData, list[Path]]) -> None:
    config, data, reports = demo
    calm = replace(data, exceptions=data.exceptions.clear())
    assert send_alerts(with_alerts(config, webhooks=[]), calm, reports) == []
    with smtp_server() as (box, port):
        outcome = send_mail(mail_config(config, port), calm, reports)
    assert outcome.ok and len(box.envelopes) == 1


def test_send_alerts_never_raises(demo: tuple[Config, ReportData, list[Path]], monkeypatch: pytest.MonkeyPatch) -> None:
    config, data, reports = demo

    def broken(name: str, secrets: Sequence[str]) -> ChannelSession:
        raise RuntimeError("factory exploded")

    factory: Callable[[str, Sequence[str]], ChannelSession] = broken
    monkeypatch.setenv("HOOK_X", f"http://127.0.0.1:1/x?token={JSON_TOKEN}")
    outcomes = send_alerts(with_alerts(config, webhooks=[WebhookConfig(kind="json", url=Secret("env:HOOK_X"))]),
                           data, reports, factory)
    assert [(o.status, o.detail) for o in outcomes] == [("failed", "RuntimeError: factory exploded")]
    payload = json.dumps([o.detail for o in outcomes])
    assert JSON_TOKEN not in payload


def test_recon_run_alerts_a_chat_and_mails_the_workbook_when_a_person_is_needed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from recon_cli import app
    from tests.scenario import Scenario

    with RecordingServer() as hook, smtp_server() as (box, port):
        hook.on("/hook", Answer(200, {"ok": True}))
        monkeypatch.setenv("TEST_HOOK_URL", f"{hook.base}/hook?access_token=tok-123")
        alerts = ('\n[alerts]\nmin_priority = 2\n[[alerts.webhooks]]\nkind = "json"\nurl = "env:TEST_HOOK_URL"\n'
                  f'[alerts.mail]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
                  'sender = "recon@example.com"\nto = ["finance@example.com"]\n')
        s = Scenario(tmp_path, more_channels=alerts)
        text = (tmp_path / "recon.toml").read_text(encoding="utf-8").replace("formats = []", 'formats = ["xlsx"]')
        (tmp_path / "recon.toml").write_text(text, encoding="utf-8")
        s.order("O1", "10.00", trade_no="T-OTHER")
        s.import_(s.statement([{"txn": "T1", "order": "O1", "amount": "10.00"}]))
        result = CliRunner().invoke(app, ["--config", str(tmp_path / "recon.toml"), "run", "--date", "2026-11-20",
                                          "--json"])
        posts = hook.to("/hook")
        envelopes = list(box.envelopes)
    assert result.exit_code == 3, result.output
    body = json.loads(result.stdout)
    assert [a["status"] for a in body["alerts"]] == ["sent", "sent"]
    assert "tok-123" not in result.output
    assert len(posts) == 1 and posts[0].json()["run_id"] == body["run_id"]
    assert len(envelopes) == 1 and envelopes[0].rcpt_tos == ["finance@example.com"]
    assert b".xlsx" in envelopes[0].content
