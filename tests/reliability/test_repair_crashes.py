"""Crashes inside a repair batch, and answers the shop never sent back (DESIGN §6.3–§6.5).

* A real dujiaoka database on the live MariaDB with five lost orders; ``recon repair --apply`` runs
  as a real process that SIGKILLs itself at a kill point of the n-th order of the batch
  (``RECON_CRASH_AT=<point>:<n>``); reruns must deliver every order exactly once, mail every buyer
  once, and leave every journal intent final.
* The shop completes the order but its answer is lost (the connection drops, the answer comes after
  recon's timeout, or recon dies waiting): with ``repair.method = "notify"`` (and ``"hook"``) and with
  the ``http`` shop kind, the repair is recorded ``unknown``/``started``, settled by reading the shop before any
  new work of the next run, and the order is delivered and its buyer mailed exactly once.

Shop writes are audited by triggers (tests/reliability/history.py); mail goes to a real SMTP server.
"""

from __future__ import annotations

import json
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from typer.testing import CliRunner, Result

from recon_cli import app
from tests.alert_servers import MailBox, answer_json, smtp_server
from tests.dujiaoka_db import ShopDb as DjDb
from tests.reliability.history import (
    Ledger,
    ShopHistory,
    assert_journal_true,
    assert_ledger_consistent,
    mails_to,
)
from tests.repair_world import DAY, REPAIRED, World, delivered_cards
from tests.scenario import CHANNEL_TOML, STATEMENT_COLUMNS, Scenario
from tests.shopdb import ShopDb, mariadb_dujiaoka  # noqa: F401 (fixture)
from tests.test_repair_databases import assert_repaired
from tests.test_repair_notify import HOOK_TOKEN, FakeDujiaoka, lost_order

runner = CliRunner()
AUTO_GOODS = ("DJ-PEND-1", "DJ-PEND-2", "DJ-LOOP-1", "DJ-RESTOCK")  # REPAIRED less the manual order (no cards)


def repair_toml(port: int, method: str = "db") -> str:
    """The [repair] section: the method, and recon's buyer mail to the test's SMTP server."""
    return (f'[repair]\nmethod = "{method}"\nshop_name = "测试小店"\nshop_url = "https://shop.example"\n'
            f'[repair.mail]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\nsender = "shop@shop.example"\n')


@pytest.fixture
def batch(tmp_path: Path, mariadb_dujiaoka: ShopDb) -> Iterator[tuple[World, ShopHistory, MailBox]]:  # noqa: F811
    """Five lost orders on MariaDB, reconciled (open exceptions), with audit triggers and a mailbox."""
    with smtp_server() as (box, port):
        db = DjDb("mysql", mariadb_dujiaoka.connect, mariadb_dujiaoka.name)
        world = World(tmp_path, db, f'kind = "dujiaoka"\ndsn = "{mariadb_dujiaoka.dsn}"',
                      repair_toml(port))
        history = ShopHistory(db)
        world.import_and_reconcile()
        yield world, history, box


def assert_all_delivered_once(world: World, history: ShopHistory, box: MailBox,
                              goods_before: dict[int, tuple[int, int]]) -> None:
    """Every lost order delivered by one write, each buyer mailed once with its own cards, the journal final."""
    assert_repaired(world, goods_before)
    history.assert_delivered_exactly_once(REPAIRED)
    ledger = Ledger.read(world.folder / "recon.duckdb")
    assert_journal_true(ledger, history, settled=True)
    assert_ledger_consistent(ledger)
    assert {r["order_no"]: r["state"] for r in ledger.journal} == dict.fromkeys(REPAIRED, "applied")
    assert {e["order_no"]: e["status"] for e in ledger.exceptions if e["order_no"] in REPAIRED} == \
        dict.fromkeys(REPAIRED, "repaired")
    orders = world.orders()
    for sn in AUTO_GOODS:
        texts = mails_to(box, f"{sn.lower()}@example.com")
        assert len(texts) == 1, f"the buyer of {sn} was mailed {len(texts)} times"
        assert all(card in texts[0] for card in delivered_cards(orders[sn])), (sn, texts[0])
    assert mails_to(box, "dj-manual@example.com") == []  # manual goods: the shop's staff deliver


def crash_at_nth_order(world: World, history: ShopHistory, point: str, nth: int) -> list[str]:
    """A fresh batch killed at ``point`` of its ``nth`` order: the n−1 before it are applied and only they
    (and the nth, once past the act) changed in the shop. Returns the orders changed."""
    before = world.orders()
    rc, out, err = world.run_process("repair", "--apply", crash_at=f"{point}:{nth}")
    assert rc == -9, (rc, out, err)
    journal = world.journal()
    assert [r["state"] for r in journal] == ["applied"] * (nth - 1) + ["started"], journal
    acted = [r["order_no"] for r in journal][: nth - 1 if point == "after_intent" else nth]
    now = world.orders()
    assert [sn for sn in before if now[sn] != before[sn]] == [sn for sn in before if sn in acted]
    history.assert_delivered_at_most_once()
    return acted


@pytest.mark.parametrize(("point", "nth"), [("after_intent", 3), ("before_verify", 5)])
def test_a_crash_at_the_nth_order_of_a_batch_then_a_rerun_delivers_every_order_exactly_once(
        batch: tuple[World, ShopHistory, MailBox], point: str, nth: int) -> None:
    world, history, box = batch
    goods_before = world.goods()
    acted = crash_at_nth_order(world, history, point, nth)
    at_crash = world.orders()

    rerun = world.cli("repair", "--apply", "--json")
    assert rerun.exit_code == 3, rerun.output  # DJ-BIG and DJ-S5 still wait for a person
    for sn in acted:  # what the killed process delivered stays as it was: no second delivery
        assert world.orders()[sn] == at_crash[sn], sn
    assert_all_delivered_once(world, history, box, goods_before)


def test_a_rerun_that_crashes_again_after_settling_still_delivers_each_order_once(
        batch: tuple[World, ShopHistory, MailBox]) -> None:
    world, history, box = batch
    goods_before = world.goods()
    crash_at_nth_order(world, history, "after_shop_update", 2)
    # the rerun settles the intent left in flight (the shop shows it done), then dies at its own first act
    rc, out, err = world.run_process("repair", "--apply", crash_at="before_verify:1")
    assert rc == -9, (rc, out, err)
    history.assert_delivered_at_most_once()
    states = [r["state"] for r in world.journal()]
    assert states == ["applied", "applied", "started"], states
    rerun = world.cli("repair", "--apply", "--json")
    assert rerun.exit_code == 3, rerun.output
    assert_all_delivered_once(world, history, box, goods_before)
    again = world.cli("repair", "--apply", "--json")
    assert again.exit_code == 3 and json.loads(again.stdout)["counts"]["applied"] == 0, again.output
    assert len(box.envelopes) == len(AUTO_GOODS)


# --- lost answers ---------------------------------------------------------------------------------

LATE = 1.5  # seconds the shop takes before it completes, past recon's timeout
TIMEOUT = 0.5


class Lost:
    """How a shop stand-in loses its first answer: ``drop`` completes then closes the connection;
    ``late`` completes only after recon has given up and read the order back; ``killed`` holds the
    request until the test has SIGKILLed recon, then completes."""

    def __init__(self, mode: str, smtp_port: int) -> None:
        self.mode, self.smtp_port = mode, smtp_port
        self.arrived, self.release = threading.Event(), threading.Event()
        self.first = True

    def before_completing(self) -> bool:
        """Called first thing by the stand-in's completion; True when this answer is the one lost."""
        lose, self.first = self.first, False
        if lose and self.mode == "late":
            time.sleep(LATE)
        if lose and self.mode == "killed":
            self.arrived.set()
            assert self.release.wait(30)
        return lose

    def mail_buyer(self, to: str, info: str) -> None:
        """The shop's own buyer mail after its completion (dujiaoka's MailSend job)."""
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "shop@shop.example", to, "【独角数卡】感谢您的购买，请查收您的收据"
        msg.set_content(info)
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=10) as smtp:
            smtp.send_message(msg)


class Dropped(Exception):
    """The stand-in closes the connection without answering."""


def recon_process(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", "from recon_cli import main; main()", "--config", str(config),
                             *args], cwd=config.parent, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


class NotifyCase(FakeDujiaoka):
    """repair.method = "notify" (or "hook") on a SQLite dujiaoka shop: dujiaoka's Epay notify handler and a
    repair hook (tests/test_repair_notify.py) that mail the buyer after completing, as ``completedOrder`` does."""

    def __init__(self, folder: Path, lost: Lost, method: str = "notify") -> None:
        super().__init__(folder / "shop.sqlite")
        self.lost, self.folder, self.method = lost, folder, method
        self.scenario: Scenario | None = None

    @contextmanager
    def running(self) -> Iterator[NotifyCase]:
        with super().running():
            try:
                yield self
            finally:
                self.lost.release.set()  # a handler still holding its request lets go before the server stops

    def start(self, port: int) -> None:
        hook = '[repair.hook]\nurl = "env:RECON_HOOK_URL"\ntoken = "env:RECON_HOOK_TOKEN"\ntimeout_seconds = 0.5\n'
        self.scenario = lost_order(self.folder, "epay", "\n" + repair_toml(port, self.method)
                                   + (hook if self.method == "hook" else ""), self.url)
        self.history = ShopHistory(DjDb("sqlite", self.connect, str(self.shop)))

    def add_lost_order(self, sn: str) -> None:
        assert self.scenario is not None
        self.scenario.order(sn, "12.00", status=1, pay_id=1)
        path = self.scenario.statement([{"txn": f"T-{sn}", "order": sn, "amount": "12.00"}])
        result = cli(self.folder, "import", "--channel", "pay", str(path))
        assert result.exit_code == 0, result.output

    def completed(self, order_sn: str, amount: str, trade_no: str, answer: str) -> tuple[int, str]:
        lose = self.lost.before_completing()
        status, text = super().completed(order_sn, amount, trade_no, answer)
        if status == 200:
            info = self.history.orders()[order_sn]["info"]
            self.lost.mail_buyer(f"{order_sn.lower()}@example.com", info)
        if lose and self.lost.mode == "drop":
            raise Dropped
        return status, text

    def handle(self, req: Any, method: str) -> None:
        try:
            super().handle(req, method)
        except Dropped:
            self.answered.set()  # no answer at all: the server closes the connection

    def completions(self, sn: str) -> int:
        return sum(1 for s in self.seen if sn in (s.get("params", {}).get("out_trade_no"),
                                                  s.get("json", {}).get("order_no")))

    def assert_delivered_once(self, sns: list[str]) -> None:
        self.history.assert_delivered_exactly_once(sns)


HTTP_SHOP = """[shop]
kind = "http"
base_url = "{url}/api"
orders_path = "/orders"
order_path = "/orders/{{order_no}}"
complete_path = "/orders/{{order_no}}/complete"
zone = "Asia/Shanghai"
currency = "CNY"
columns = {{ order_no = "sn", amount = "total", status = "state", created_at = "created", pay_method = "pay", \
channel_txn_id = "txn", buyer_contact = "email", title = "title" }}
status_map = {{ new = "pending", completed = "delivered" }}
"""


class HttpCase:
    """The ``http`` shop kind: an admin API that lists, reads and completes orders, mailing the buyer itself."""

    def __init__(self, folder: Path, lost: Lost) -> None:
        self.folder, self.lost = folder, lost
        self.orders: dict[str, dict[str, Any]] = {}
        self.posts: list[str] = []
        self.answered = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _admin_api(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.statements = 0

    @contextmanager
    def running(self) -> Iterator[HttpCase]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.lost.release.set()
            self.server.shutdown()
            self.server.server_close()
            thread.join(5)

    def start(self, port: int) -> None:
        (self.folder / "recon.toml").write_text(
            '[store]\npath = "recon.duckdb"\n\n' + HTTP_SHOP.format(url=self.url) + CHANNEL_TOML.format(extra="")
            + "\n" + repair_toml(port) + '\n[reports]\nout_dir = "reports"\nformats = []\n', encoding="utf-8")
        self.add_lost_order("EP1")
        result = cli(self.folder, "run", "--date", DAY, "--no-fetch")
        assert result.exit_code == 3, result.output

    def add_lost_order(self, sn: str) -> None:
        self.orders[sn] = {"sn": sn, "total": "12.00", "state": "new", "created": "2026-11-20T10:00:00", "pay": 1,
                           "txn": None, "email": f"{sn.lower()}@example.com", "title": "Steam 充值卡 ¥12"}
        self.statements += 1
        path = self.folder / f"statement_{self.statements}.csv"
        path.write_text(",".join(STATEMENT_COLUMNS) + f"\nT-{sn},{sn},payment,2026-11-20 10:00:30,12.00,CNY,,success\n",
                        encoding="utf-8")
        result = cli(self.folder, "import", "--channel", "pay", str(path))
        assert result.exit_code == 0, result.output

    def completions(self, sn: str) -> int:
        return self.posts.count(sn)

    def assert_delivered_once(self, sns: list[str]) -> None:
        for sn in sns:
            assert self.orders[sn]["state"] == "completed" and self.orders[sn]["txn"] == f"T-{sn}", self.orders[sn]


def _admin_api(shop: HttpCase) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def answer(self, status: int, body: Any) -> None:
            answer_json(self, status, body)

        def do_GET(self) -> None:  # noqa: N802
            parts = [unquote(p) for p in urlsplit(self.path).path.strip("/").split("/")]
            if parts == ["api", "orders"]:
                self.answer(200, {"orders": list(shop.orders.values())})
            elif len(parts) == 3 and parts[2] in shop.orders:
                self.answer(200, shop.orders[parts[2]])
            else:
                self.answer(404, {"error": "no such order"})

        def do_POST(self) -> None:  # noqa: N802
            sn = unquote(urlsplit(self.path).path.strip("/").split("/")[2])
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            shop.posts.append(sn)
            try:
                lose = shop.lost.before_completing()
                order = shop.orders[sn]
                if order["state"] == "new":
                    order.update(state="completed", txn=body["channel_txn_id"])
                    shop.lost.mail_buyer(order["email"], f"the goods of order {sn}")
                if not (lose and shop.lost.mode == "drop"):
                    self.answer(200, {"ok": True})
            finally:
                shop.answered.set()

    return Handler


def cli(folder: Path, *args: str) -> Result:
    return runner.invoke(app, ["--config", str(folder / "recon.toml"), *args])


def journal_of(store: Path) -> dict[str, dict[str, Any]]:
    return {r["order_no"]: r for r in Ledger.read(store).journal}


@pytest.fixture
def mailbox() -> Iterator[tuple[MailBox, int]]:
    with smtp_server() as served:
        yield served


@pytest.mark.parametrize(("kind", "mode"), [("notify", "late"), ("notify", "killed"), ("notify", "drop"),
                                           ("http", "late"), ("http", "killed"), ("hook", "late")])
def test_a_lost_answer_is_settled_by_reading_the_shop_and_delivers_and_mails_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mailbox: tuple[MailBox, int], kind: str, mode: str) -> None:
    box, port = mailbox
    monkeypatch.setattr("recon.repair.notify.NOTIFY_TIMEOUT", TIMEOUT)
    monkeypatch.setattr("recon.repair.http_shop.COMPLETE_TIMEOUT", TIMEOUT)
    lost = Lost(mode, port)
    case = HttpCase(tmp_path, lost) if kind == "http" else NotifyCase(tmp_path, lost, kind)
    monkeypatch.setenv("RECON_HOOK_URL", f"{case.url}/hook")  # read by repair.method = "hook" only
    monkeypatch.setenv("RECON_HOOK_TOKEN", HOOK_TOKEN)
    store = tmp_path / "recon.duckdb"
    with case.running():
        case.start(port)
        if mode == "killed":  # recon dies while the shop is still working on the request
            proc = recon_process(tmp_path / "recon.toml", "repair", "--apply")
            assert lost.arrived.wait(60), proc.communicate()
            proc.kill()
            proc.communicate(timeout=10)
            assert proc.returncode == -9
            lost.release.set()
        else:
            first = cli(tmp_path, "repair", "--apply", "--json")
            assert first.exit_code == (0 if mode == "drop" else 1), first.output
        assert case.answered.wait(10)
        recorded = journal_of(store)["EP1"]
        assert recorded["state"] == {"late": "unknown", "killed": "started", "drop": "applied"}[mode], recorded

        case.add_lost_order("EP2")  # new work for the next run
        second = cli(tmp_path, "run", "--date", DAY, "--no-fetch", "--apply", "--json")
        assert second.exit_code == 0, second.output
        assert json.loads(second.stdout)["repairs"]["failed"] == 0

    journal = journal_of(store)
    assert {sn: r["state"] for sn, r in journal.items()} == {"EP1": "applied", "EP2": "applied"}
    if mode != "drop":  # settled from the shop's own record, before the new order was touched
        assert "settled after an interrupted run" in journal["EP1"]["detail"]
        assert journal["EP1"]["updated_at"] < journal["EP2"]["created_at"], journal
    assert (case.completions("EP1"), case.completions("EP2")) == (1, 1)  # never sent again
    case.assert_delivered_once(["EP1", "EP2"])
    for sn in ("EP1", "EP2"):
        assert len(mails_to(box, f"{sn.lower()}@example.com")) == 1, (sn, [e.rcpt_tos for e in box.envelopes])
    ledger = Ledger.read(store)
    assert_ledger_consistent(ledger)
    assert all(e["status"] != "open" for e in ledger.exceptions), ledger.exceptions
