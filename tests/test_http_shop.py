"""The ``http`` shop kind against a real local admin API: reading, completing once, lost answers."""

from __future__ import annotations

import csv
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from typer.testing import CliRunner

from recon.config import load_config
from recon.errors import ShopError
from recon.shops import open_shop
from recon.shops.http import ORDERS_IN_FLIGHT
from recon_cli import app
from tests.alert_servers import answer_json
from tests.scenario import CHANNEL_TOML, STATEMENT_COLUMNS

TOKEN = "tok-s3cret-123"
runner = CliRunner()


@dataclass
class Book:
    orders: dict[str, dict[str, Any]]
    posts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    sleep_after_complete: float = 0.0
    # Asking for one order by number: how long each answer takes, which are refused (403), and how many such
    # requests were being answered at once, at most.
    order_delay: float = 0.0
    refused: set[str] = field(default_factory=set)
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answering(self, delta: int) -> None:
        with self.lock:
            self.in_flight += delta
            self.most_in_flight = max(self.most_in_flight, self.in_flight)


def _orders() -> dict[str, dict[str, Any]]:
    base = {"pay": 1, "email": "b@example.com", "title": "card", "txn": None}
    return {
        "H-PEND": {**base, "sn": "H-PEND", "total": 50.00, "state": "new", "created": "2026-11-20T10:00:00"},
        "H-DONE": {**base, "sn": "H-DONE", "total": "30.00", "state": "completed", "txn": "T-DONE",
                   "created": "2026-11-20T03:00:00Z"},  # 11:00 in Asia/Shanghai
        "H-EXP": {**base, "sn": "H-EXP", "total": 20, "state": "expired", "created": "2026-11-20T12:00:00+08:00"},
        "H-OTHER": {**base, "sn": "H-OTHER", "total": "9.99", "state": "new", "created": "2026-11-22T12:00:00"},
    }


def _handler(book: Book) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: Any) -> None:
            answer_json(self, status, body)

        def _authorised(self) -> bool:
            got = self.headers.get("Authorization", "")
            if got != f"Bearer {TOKEN}":
                self._answer(401, {"error": f"bad credentials {got}"})  # echoes the token: recon must redact it
                return False
            return True

        def do_GET(self) -> None:
            if not self._authorised():
                return
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            parts = [unquote(p) for p in url.path.strip("/").split("/")]
            if parts == ["api", "orders"]:
                start = datetime.fromisoformat(query["created_from"])
                end = datetime.fromisoformat(query["created_to"])
                hits = [o for o in book.orders.values() if start <= _instant(o["created"]) < end]
                hits.sort(key=lambda o: o["sn"])
                offset = int(query.get("cursor", "0"))
                page = hits[offset:offset + 2]  # two per page: the window needs the next cursor
                more = offset + 2 < len(hits)
                self._answer(200, {"orders": page, **({"next": str(offset + 2)} if more else {})})
            elif len(parts) == 3 and parts[:2] == ["api", "orders"]:
                book.answering(+1)
                time.sleep(book.order_delay)
                book.answering(-1)
                order = book.orders.get(parts[2])
                if parts[2] in book.refused:
                    self._answer(403, {"error": "not yours"})
                else:
                    self._answer(200, order) if order else self._answer(404, {"error": "no such order"})
            else:
                self._answer(404, {"error": "no route"})

        def do_POST(self) -> None:
            if not self._authorised():
                return
            parts = [unquote(p) for p in urlsplit(self.path).path.strip("/").split("/")]
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            book.posts.append((parts[2], body))
            order = book.orders.get(parts[2])
            if len(parts) != 4 or parts[3] != "complete" or order is None:
                self._answer(404, {"error": "no such order"})
                return
            order.update(state="completed", txn=body["channel_txn_id"])
            if book.sleep_after_complete:
                time.sleep(book.sleep_after_complete)
            self._answer(200, {"ok": True})

    return Handler


def _instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        from zoneinfo import ZoneInfo

        moment = moment.replace(tzinfo=ZoneInfo("Asia/Shanghai"))
    return moment.astimezone(UTC)


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close joins the handler threads, so none outlives the test


@pytest.fixture
def book() -> Iterator[tuple[Book, str]]:
    state = Book(_orders())
    server = _Server(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/api"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _folder(tmp_path: Path, base_url: str, monkeypatch: pytest.MonkeyPatch, token: str = TOKEN) -> Path:
    monkeypatch.setenv("RECON_TEST_SHOP_TOKEN", token)
    (tmp_path / "recon.toml").write_text(
        '[store]\npath = "recon.duckdb"\n\n[shop]\nkind = "http"\n'
        f'base_url = "{base_url}"\ntoken = "env:RECON_TEST_SHOP_TOKEN"\n'
        'orders_path = "/orders"\norder_path = "/orders/{order_no}"\ncomplete_path = "/orders/{order_no}/complete"\n'
        'zone = "Asia/Shanghai"\ncurrency = "CNY"\n'
        'columns = { order_no = "sn", amount = "total", status = "state", created_at = "created", '
        'pay_method = "pay", channel_txn_id = "txn", buyer_contact = "email", title = "title" }\n'
        'status_map = { new = "pending", expired = "expired", completed = "delivered" }\n'
        + CHANNEL_TOML.format(extra="") + '\n[reports]\nout_dir = "reports"\nformats = []\n',
        encoding="utf-8",
    )
    statement = tmp_path / "statement.csv"
    with open(statement, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(STATEMENT_COLUMNS)
        for txn, order, amount in (("T-PEND", "H-PEND", "50.00"), ("T-DONE", "H-DONE", "30.00")):
            writer.writerow([txn, order, "payment", "2026-11-20 10:00:30", amount, "CNY", "", "success"])
    return tmp_path


def _cli(folder: Path, *args: str) -> Any:
    return runner.invoke(app, ["--config", str(folder / "recon.toml"), *args])


def _import_and_run(folder: Path) -> Any:
    imported = _cli(folder, "import", "--channel", "pay", str(folder / "statement.csv"))
    assert imported.exit_code == 0, imported.output
    return _cli(folder, "run", "--date", "2026-11-20", "--apply", "--json")


def test_reads_a_paged_window_with_exact_amounts(book: tuple[Book, str], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _, base = book
    shop = open_shop(load_config(_folder(tmp_path, base, monkeypatch) / "recon.toml"))
    assert shop.repairable == {"missing_callback": ("new", "expired")}
    window = shop.orders_created_between(datetime(2026, 11, 19, 16, tzinfo=UTC), datetime(2026, 11, 20, 16, tzinfo=UTC))
    rows = {r["order_no"]: r for r in window.iter_rows(named=True)}
    assert sorted(rows) == ["H-DONE", "H-EXP", "H-PEND"]  # three orders over two pages
    assert [rows[n]["amount"] for n in ("H-PEND", "H-DONE", "H-EXP")] == [Decimal("50.00"), Decimal("30.00"), Decimal("20.00")]
    assert rows["H-DONE"]["created_at"] == datetime(2026, 11, 20, 3, tzinfo=UTC)
    assert rows["H-PEND"]["created_at"] == datetime(2026, 11, 20, 2, tzinfo=UTC)  # naive: the shop's wall clock
    assert (rows["H-PEND"]["status"], rows["H-PEND"]["shop_status"], rows["H-PEND"]["pay_method"]) == \
        ("pending", "new", "1")
    named = shop.orders_by_no(["H-DONE", "NOPE"])
    assert named["order_no"].to_list() == ["H-DONE"] and named["channel_txn_id"].to_list() == ["T-DONE"]


def test_orders_asked_by_number_go_a_few_at_a_time_and_come_back_in_order(
        book: tuple[Book, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state, base = book
    template = state.orders["H-DONE"]
    numbers = [f"H-B{i:02d}" for i in range(12)]
    state.orders.update({n: {**template, "sn": n, "total": f"{i}.10"} for i, n in enumerate(numbers)})
    state.order_delay = 0.2
    shop = open_shop(load_config(_folder(tmp_path, base, monkeypatch) / "recon.toml"))
    named = shop.orders_by_no([*reversed(numbers), "NOPE", numbers[3]])
    assert named["order_no"].to_list() == numbers  # each once, in number order; the unknown one left out
    assert named["amount"].to_list() == [Decimal(f"{i}.10") for i in range(12)]
    # A backlog is asked several at a time, never more than the shop is promised.
    assert state.most_in_flight == ORDERS_IN_FLIGHT > 1
    state.refused = {numbers[7], numbers[9]}
    with pytest.raises(ShopError) as caught:
        shop.orders_by_no(numbers)
    assert "HTTP 403" in str(caught.value) and f"/orders/{numbers[7]} " in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_run_apply_completes_the_paid_pending_order_once(book: tuple[Book, str], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    state, base = book
    folder = _folder(tmp_path, base, monkeypatch)
    first = _import_and_run(folder)
    assert first.exit_code in (0, 1), first.output
    assert state.posts == [("H-PEND", {"amount": "50.00", "channel_txn_id": "T-PEND"})]
    assert state.orders["H-PEND"]["state"] == "completed"
    assert TOKEN not in first.output
    second = _cli(folder, "run", "--date", "2026-11-20", "--apply", "--json")
    assert second.exit_code in (0, 1), second.output
    assert len(state.posts) == 1  # nothing sent again
    repairs = _repairs(folder)
    assert [(r[0], r[1]) for r in repairs] == [("H-PEND", "applied")]


def test_a_wrong_token_is_a_shop_error_without_the_token(book: tuple[Book, str], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    state, base = book
    wrong = "wrong-tok-987654"
    folder = _folder(tmp_path, base, monkeypatch, token=wrong)
    shop = open_shop(load_config(folder / "recon.toml"))
    with pytest.raises(ShopError) as caught:
        shop.orders_by_no(["H-PEND"])
    assert "401" in str(caught.value) and wrong not in str(caught.value)
    result = _import_and_run(folder)
    assert result.exit_code != 0 and wrong not in result.output
    assert state.posts == []


def test_a_lost_answer_to_complete_is_settled_by_reading(book: tuple[Book, str], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    state, base = book
    state.sleep_after_complete = 1.5
    monkeypatch.setattr("recon.repair.http_shop.COMPLETE_TIMEOUT", 0.4)
    folder = _folder(tmp_path, base, monkeypatch)
    result = _import_and_run(folder)
    assert result.exit_code in (0, 1), result.output
    assert len(state.posts) == 1
    repairs = _repairs(folder)
    assert [(r[0], r[1]) for r in repairs] == [("H-PEND", "applied")]
    assert "lost" in repairs[0][2]


def _repairs(folder: Path) -> list[tuple[str, str, str]]:
    import duckdb

    con = duckdb.connect(str(folder / "recon.duckdb"), read_only=True)
    try:
        return [tuple(r) for r in con.execute("SELECT order_no, state, detail FROM repairs ORDER BY repair_id").fetchall()]
    finally:
        con.close()
