"""Repair methods (a) and (c) of DESIGN §6.4 end to end: `recon repair --apply` replays a correctly signed
payment notify to the shop's own notify URL (Epay: GET, epusdt: JSON POST), or calls the configured hook.

A real HTTP server on 127.0.0.1 stands in for dujiaoka's handlers (reference/shop-platforms.md §5): it
verifies the signature with its own port of the PHP rule (not recon's signing code), loads the order's
``pays`` row as ``PayService::detail`` does (open, not deleted), then completes the order in the SQLite
shop with ``complete_order``, as ``completedOrder`` would, and answers ``success`` / ``ok``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from typer.testing import CliRunner, Result

from recon.config import load_config
from recon.repair.notify import NotifyTarget, PayRow, epay_params
from recon.shops.dujiaoka_repair import complete_order
from recon_cli import app
from tests.scenario import Scenario

runner = CliRunner()
EPAY_KEY = "Qm7-epay-md5-key-x31"        # pays.merchant_pem of the Epay gateway
EPUSDT_TOKEN = "epusdt-api-token-Zr58"   # pays.merchant_id of the epusdt gateway
HOOK_TOKEN = "hook-bearer-token-9Lw"
TITLE = "Steam 充值卡 ¥12 x 1"
ZONE = "Asia/Shanghai"


class FakeDujiaoka:
    """dujiaoka's Yipay / Epusdt notify handlers and a repair hook, over the test's SQLite shop."""

    def __init__(self, shop: Path, shop_key: str | None = None, delay: float = 0.0) -> None:
        self.shop = shop
        self.shop_key = shop_key  # a key the shop verifies with instead of its pays row's (a wrong key)
        self.delay = delay  # seconds to sleep after completing, before answering
        self.seen: list[dict[str, Any]] = []
        self.answered = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                fake.handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                fake.handle(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[FakeDujiaoka]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join(5)

    # --- the handlers ----------------------------------------------------------------------------
    def handle(self, req: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(req.path)
        body = req.rfile.read(int(req.headers.get("Content-Length") or 0)) if method == "POST" else b""
        seen: dict[str, Any] = {"method": method, "path": parts.path, "headers": dict(req.headers)}
        self.seen.append(seen)
        if method == "GET" and parts.path == "/pay/yipay/notify_url":
            status, text = self.yipay(dict(parse_qsl(parts.query, keep_blank_values=True)), seen)
        elif method == "POST" and parts.path == "/pay/epusdt/notify_url":
            status, text = self.epusdt(body, seen)
        elif method == "POST" and parts.path == "/hook":
            status, text = self.hook(req.headers.get("Authorization"), body, seen)
        else:
            status, text = 405, "Method Not Allowed"
        try:
            req.send_response(status)
            req.send_header("Content-Type", "text/html; charset=UTF-8")
            req.send_header("Content-Length", str(len(text.encode())))
            req.end_headers()
            req.wfile.write(text.encode())
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped waiting (the timeout test)
        finally:
            self.answered.set()

    def yipay(self, data: dict[str, str], seen: dict[str, Any]) -> tuple[int, str]:
        """YipayController::notifyUrl: ksort, skip sign / sign_type / "", md5(str . merchant_pem)."""
        seen["params"] = data
        pay = self.pays_of(data.get("out_trade_no", ""))
        if pay is None:
            return 200, "fail"
        key = self.shop_key if self.shop_key is not None else pay["merchant_pem"]
        signed = "&".join(f"{k}={v}" for k, v in sorted(data.items()) if k not in ("sign", "sign_type") and v != "")
        seen["signature_ok"] = hashlib.md5((signed + key).encode()).hexdigest() == data.get("sign")
        if not data.get("trade_no") or not seen["signature_ok"]:
            return 200, "fail"
        return self.completed(data["out_trade_no"], data["money"], data["trade_no"], "success")

    def epusdt(self, body: bytes, seen: dict[str, Any]) -> tuple[int, str]:
        """EpusdtController::notifyUrl: handleroute 'pay/epusdt'; ksort, skip '' and signature, md5(str . merchant_id).

        PHP's json_decode gives ints and floats; "$key=$val" renders 12 as "12" and 12.5 as "12.5"
        (precision 14, %.14G)."""
        data = json.loads(body, parse_int=str, parse_float=lambda s: format(float(s), ".14G"))
        seen["json"] = json.loads(body)
        pay = self.pays_of(str(data.get("order_id", "")))
        if pay is None or pay["pay_handleroute"] != "pay/epusdt":
            return 200, "fail"
        key = self.shop_key if self.shop_key is not None else pay["merchant_id"]
        signed = "&".join(f"{k}={v}" for k, v in sorted(data.items()) if k != "signature" and v != "")
        seen["signature_ok"] = hashlib.md5((signed + key).encode()).hexdigest() == data.get("signature")
        if not seen["signature_ok"]:
            return 200, "fail"
        return self.completed(data["order_id"], data["amount"], data["trade_id"], "ok")

    def hook(self, auth: str | None, body: bytes, seen: dict[str, Any]) -> tuple[int, str]:
        seen["json"] = data = json.loads(body)
        if auth != f"Bearer {HOOK_TOKEN}":
            return 401, "unauthorized"
        return self.completed(data["order_no"], data["amount"], data["channel_txn_id"], '{"done": true}')

    def completed(self, order_sn: str, amount: str, trade_no: str, answer: str) -> tuple[int, str]:
        """completedOrder; its exceptions ('订单已经处理', '订单金额不一致') end as an HTTP 500 page."""
        done = complete_order(self.connect, "sqlite", order_sn, Decimal(amount), trade_no, ZONE)
        if done.outcome not in ("completed", "abnormal", "manual"):
            return 500, f"<html>{done.reason}</html>"
        time.sleep(self.delay)
        return 200, answer

    def connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.shop, timeout=30)

    def pays_of(self, order_sn: str) -> dict[str, Any] | None:
        """PayService::detail($order->pay_id): open and not soft-deleted, else the handler answers fail."""
        con = self.connect()
        con.row_factory = sqlite3.Row
        try:
            row = con.execute("SELECT p.* FROM orders o JOIN pays p ON p.id = o.pay_id WHERE o.order_sn = ? "
                              "AND o.deleted_at IS NULL AND p.is_open = 1 AND p.deleted_at IS NULL",
                              (order_sn,)).fetchone()
        finally:
            con.close()
        return dict(row) if row else None

    def signed_requests(self) -> list[dict[str, Any]]:
        return [s for s in self.seen if s.get("signature_ok")]


# --- the shop and recon ----------------------------------------------------------------------------

PAYS = {
    "epay": ("易支付", "alipay", "1001", "https://epay.example/submit.php", EPAY_KEY, "/pay/yipay"),
    "epusdt": ("USDT", "epusdt", EPUSDT_TOKEN, "", "https://epusdt.example/api/v1/order/create-transaction",
               "pay/epusdt"),
    "alipay": ("支付宝当面付", "zfbf2f", "2021000000000000", "ALIPAY-PUBLIC-KEY", "MERCHANT-PRIVATE-KEY",
               "/pay/alipay"),
}


def lost_order(tmp_path: Path, gateway: str, repair_toml: str, base_url: str | None = None,
               amount: str = "12.00", is_open: int = 1) -> Scenario:
    """A shop whose pays.id 1 is ``gateway``, one paid 掉单 EP1 (status 1) with 3 cards in stock, the
    statement imported and the day reconciled: a missing_callback exception waits for repair."""
    s = Scenario(tmp_path, more_channels=repair_toml)
    if base_url is not None:
        toml = s.folder / "recon.toml"
        text = toml.read_text(encoding="utf-8")
        toml.write_text(text.replace('schema = "dujiaoka"\n', f'schema = "dujiaoka"\nnotify_base_url = "{base_url}"\n',
                                     1), encoding="utf-8")
        s.config = load_config(toml)
    con = sqlite3.connect(s.shop_path)
    con.execute("INSERT INTO goods (id, group_id, gd_name, actual_price, type, in_stock) "
                "VALUES (1, 1, 'Steam 充值卡', ?, 1, 0)", (amount,))
    con.executemany("INSERT INTO carmis (goods_id, status, carmi) VALUES (1, 1, ?)", [(f"CARD-{i}",) for i in range(3)])
    con.execute("INSERT INTO pays (id, pay_name, pay_check, pay_method, merchant_id, merchant_key, merchant_pem, "
                "pay_handleroute, is_open) VALUES (1, ?, ?, 1, ?, ?, ?, ?, ?)", (*PAYS[gateway], is_open))
    con.commit()
    con.close()
    s.order("EP1", amount, status=1, pay_id=1)
    con = sqlite3.connect(s.shop_path)
    con.execute("UPDATE orders SET title = ? WHERE order_sn = 'EP1'", (TITLE,))
    con.commit()
    con.close()
    s.import_(s.statement([{"txn": "T-EP1", "order": "EP1", "amount": amount}]))
    s.run()
    return s


def notify_toml(method: str = "notify") -> str:
    return f'\n[repair]\nmethod = "{method}"\n'


def repair_apply(s: Scenario) -> Result:
    return runner.invoke(app, ["--config", str(s.folder / "recon.toml"), "repair", "--apply", "--json"])


def order_row(s: Scenario, sn: str = "EP1") -> dict[str, Any]:
    con = sqlite3.connect(s.shop_path)
    con.row_factory = sqlite3.Row
    try:
        return dict(con.execute("SELECT status, info, trade_no FROM orders WHERE order_sn = ?", (sn,)).fetchone())
    finally:
        con.close()


def sold_cards(s: Scenario) -> list[str]:
    con = sqlite3.connect(s.shop_path)
    try:
        return [r[0] for r in con.execute("SELECT carmi FROM carmis WHERE status = 2 ORDER BY id")]
    finally:
        con.close()


def outcomes(result: Result) -> list[dict[str, Any]]:
    return list(json.loads(result.stdout)["outcomes"])


def assert_secret_free(s: Scenario, *texts: str) -> None:
    journal = json.dumps(s.query("SELECT * FROM repairs"), default=str)
    events = json.dumps(s.query("SELECT * FROM exception_events"), default=str)
    for secret in (EPAY_KEY, EPUSDT_TOKEN, HOOK_TOKEN):
        for text in (*texts, journal, events):
            assert secret not in text


# --- tests -----------------------------------------------------------------------------------------

def test_epay_params_match_the_reference_vector() -> None:
    """channel-formats.md §8: the documented V1 notify query, signed with the documented sample key."""
    pay = PayRow(1, "alipay", "1001", "89unJUB8HZ54Hj7x4nUj56HN4nUzUJ8i", "/pay/yipay", 1, False)
    target = NotifyTarget("20240101120000001", "VIP会员", 1, Decimal("1.00"), 1, pay)
    params = epay_params(target, Decimal("1.00"), "2024010112000012345")
    assert urlencode(params) == (
        "money=1.00&name=VIP%E4%BC%9A%E5%91%98&out_trade_no=20240101120000001&pid=1001"
        "&trade_no=2024010112000012345&trade_status=TRADE_SUCCESS&type=alipay"
        "&sign=3c5d568accfd803abd404c39da8c0621&sign_type=MD5")


def test_epay_notify_completes_the_order_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeDujiaoka(tmp_path / "shop.sqlite").running() as shop:
        s = lost_order(tmp_path, "epay", notify_toml(), shop.url)
        first = repair_apply(s)
        assert first.exit_code == 0, first.output
        assert [(o["order_no"], o["state"]) for o in outcomes(first)] == [("EP1", "applied")]
        assert "the shop answered 'success'" in outcomes(first)[0]["detail"]
        assert "the shop's own completion mails the buyer" in outcomes(first)[0]["detail"]
        assert len(shop.seen) == 1 and shop.signed_requests() == shop.seen
        sent = shop.seen[0]
        assert sent["method"] == "GET" and sent["path"] == "/pay/yipay/notify_url"
        assert sent["params"] == {"money": "12.00", "name": TITLE, "out_trade_no": "EP1", "pid": "1001",
                                  "trade_no": "T-EP1", "trade_status": "TRADE_SUCCESS", "type": "alipay",
                                  "sign": sent["params"]["sign"], "sign_type": "MD5"}
        second = repair_apply(s)
        assert second.exit_code == 0, second.output
        assert json.loads(second.stdout)["counts"] == {"planned": 0, "applied": 0, "skipped": 0, "failed": 0}
        assert len(shop.seen) == 1
    assert order_row(s) == {"status": 4, "info": "CARD-0", "trade_no": "T-EP1"}
    assert sold_cards(s) == ["CARD-0"]
    assert [r["state"] for r in s.query("SELECT state FROM repairs")] == ["applied"]
    assert [e["status"] for e in s.exceptions()] == ["repaired"]
    assert_secret_free(s, first.output, second.output, caplog.text)


def test_epusdt_callback_completes_the_order(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeDujiaoka(tmp_path / "shop.sqlite").running() as shop:
        s = lost_order(tmp_path, "epusdt", notify_toml(), shop.url + "/", amount="12.50")
        done = repair_apply(s)
    assert done.exit_code == 0, done.output
    assert [o["state"] for o in outcomes(done)] == ["applied"]
    assert len(shop.seen) == 1 and shop.signed_requests() == shop.seen
    sent = shop.seen[0]
    assert (sent["method"], sent["path"]) == ("POST", "/pay/epusdt/notify_url")
    assert sent["json"]["amount"] == 12.5 and sent["json"]["status"] == 2
    assert (sent["json"]["order_id"], sent["json"]["trade_id"]) == ("EP1", "T-EP1")
    assert order_row(s) == {"status": 4, "info": "CARD-0", "trade_no": "T-EP1"}
    assert_secret_free(s, done.output, caplog.text)


def test_a_wrong_key_at_the_shop_is_not_applied_and_recorded_failed(tmp_path: Path) -> None:
    with FakeDujiaoka(tmp_path / "shop.sqlite", shop_key="the shop's other key").running() as shop:
        s = lost_order(tmp_path, "epay", notify_toml(), shop.url)
        done = repair_apply(s)
    assert done.exit_code == 1, done.output
    (outcome,) = outcomes(done)
    assert outcome["state"] == "failed" and "HTTP 200 'fail'" in outcome["detail"]
    assert len(shop.seen) == 1 and not shop.seen[0]["signature_ok"]
    assert order_row(s)["status"] == 1 and sold_cards(s) == []
    assert [r["state"] for r in s.query("SELECT state FROM repairs")] == ["failed"]
    assert [e["status"] for e in s.exceptions()] == ["open"]
    assert_secret_free(s, done.output)


def test_a_closed_gateway_is_refused_without_a_request(tmp_path: Path) -> None:
    with FakeDujiaoka(tmp_path / "shop.sqlite").running() as shop:
        s = lost_order(tmp_path, "epay", notify_toml(), shop.url, is_open=0)
        done = repair_apply(s)
    assert done.exit_code == 1, done.output
    assert "closed (is_open=0)" in outcomes(done)[0]["detail"] and shop.seen == []
    assert order_row(s)["status"] == 1


def test_a_timeout_after_the_shop_applied_is_settled_by_reading_it(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("recon.repair.notify.NOTIFY_TIMEOUT", 0.5)
    with FakeDujiaoka(tmp_path / "shop.sqlite", delay=2.0).running() as shop:
        s = lost_order(tmp_path, "epay", notify_toml(), shop.url)
        done = repair_apply(s)
        assert shop.answered.wait(10)
    assert done.exit_code == 0, done.output
    (outcome,) = outcomes(done)
    assert outcome["state"] == "applied" and "recovered after a lost answer" in outcome["detail"]
    assert len(shop.seen) == 1 and shop.signed_requests() == shop.seen
    assert order_row(s) == {"status": 4, "info": "CARD-0", "trade_no": "T-EP1"} and sold_cards(s) == ["CARD-0"]
    detail = json.loads(s.query("SELECT detail FROM repairs")[0]["detail"])
    assert detail["detail"].startswith("the answer was lost")
    assert_secret_free(s, done.output)


def test_a_gateway_without_a_shared_secret_falls_back_to_the_db_transaction(tmp_path: Path) -> None:
    with FakeDujiaoka(tmp_path / "shop.sqlite").running() as shop:
        s = lost_order(tmp_path, "alipay", notify_toml(), shop.url)
        done = repair_apply(s)
    assert done.exit_code == 0, done.output
    (outcome,) = outcomes(done)
    assert outcome["state"] == "applied" and "/pay/alipay) is not a shared-secret gateway" in outcome["detail"]
    assert "locked DB transaction: completed" in outcome["detail"]
    assert shop.seen == []
    assert order_row(s) == {"status": 4, "info": "CARD-0", "trade_no": "T-EP1"}


def test_the_hook_completes_the_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hook = '\n[repair]\nmethod = "hook"\n[repair.hook]\nurl = "env:RECON_HOOK_URL"\ntoken = "env:RECON_HOOK_TOKEN"\n'
    with FakeDujiaoka(tmp_path / "shop.sqlite").running() as shop:
        monkeypatch.setenv("RECON_HOOK_URL", f"{shop.url}/hook")
        monkeypatch.setenv("RECON_HOOK_TOKEN", HOOK_TOKEN)
        s = lost_order(tmp_path, "epay", hook)
        done = repair_apply(s)
        again = repair_apply(s)
    assert done.exit_code == 0, done.output
    assert [o["state"] for o in outcomes(done)] == ["applied"] and "HTTP 200" in outcomes(done)[0]["detail"]
    assert len(shop.seen) == 1
    assert shop.seen[0]["json"] == {"order_no": "EP1", "amount": "12.00", "channel_txn_id": "T-EP1",
                                    "action": "complete"}
    assert shop.seen[0]["headers"]["Authorization"] == f"Bearer {HOOK_TOKEN}"
    assert json.loads(again.stdout)["counts"]["planned"] == 0
    assert order_row(s) == {"status": 4, "info": "CARD-0", "trade_no": "T-EP1"}
    assert_secret_free(s, done.output, again.output)


@pytest.mark.parametrize(("repair_toml", "key"), [(notify_toml("notify"), "shop.notify_base_url"),
                                                  (notify_toml("hook"), "repair.hook")])
def test_a_method_without_its_setting_is_a_config_error(tmp_path: Path, repair_toml: str, key: str) -> None:
    s = lost_order(tmp_path, "epay", repair_toml)
    done = repair_apply(s)
    assert done.exit_code == 2 and key in done.output
    assert order_row(s)["status"] == 1
