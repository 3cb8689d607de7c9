"""A shop with one finished run and a finance console serving it: real uvicorn on 127.0.0.1:<free port>
in a thread, real HTTP clients. Shared by the HTTP-level and the browser tests of the console."""

from __future__ import annotations

import re
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn
from argon2 import PasswordHasher

from jobs.reconcile import reconcile
from recon.cli.serve import server_config
from recon.config import Config, load_config
from recon.web.app import create_app
from tests.scenario import DAY, Scenario

# name → (role, password). Cheap argon2 parameters keep the tests fast; verification reads them from the hash.
USERS = {
    "fiona": ("finance", "fiona-password-1"),
    "otto": ("operator", "otto-password-1"),
    "rita": ("finance", "rita-password-1"),     # the rate-limit test locks this one out
}
HOSTILE_TITLE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">{{7*7}} 点卡'
HOSTILE_ORDER = '<b id="injected">BOLD1</b>'
FORMULA_ORDER = '=HYPERLINK("http://evil.example","x")'
CHINESE_FILE = "对账说明_2026-11-20.csv"
FORMATS = ["xlsx", "html", "csv", "parquet"]
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def fast_hash(password: str) -> str:
    return PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(password)


def web_toml(folder: Path, extra: str = "") -> str:
    users = "".join(f'\n[[web.users]]\nname = "{name}"\nrole = "{role}"\npassword_hash = "{fast_hash(pw)}"\n'
                    for name, (role, pw) in USERS.items())
    return (f'\n[web]\nsession_secret = "file:{folder / "session.key"}"\nforwarded_allow_ips = ["127.0.0.1"]\n'
            f"page_size = 5\n{extra}{users}")


def console_shop(folder: Path, web_extra: str = "") -> Scenario:
    """Orders and one statement giving matched, missing_callback (×2, stock to deliver), shop_only (a hostile
    product name), amount_mismatch and channel_only (hostile and formula-like order numbers); one run with
    every report format; a Chinese-named file and a symlink out of the report folder beside the reports."""
    s = Scenario(folder)
    (folder / "session.key").write_text("k" * 8 + "-session-key-for-tests-only-0123456789", encoding="utf-8")
    with open(folder / "recon.toml", "a", encoding="utf-8") as fh:
        fh.write(web_toml(folder, web_extra))
    s.config = load_config(folder / "recon.toml")
    s.stock(3)
    s.order("OK1", "10.00", status=4, trade_no="T1")
    s.order("LOST1", "10.00", status=1)
    s.order("LOST2", "20.00", status=1)
    s.order("FORGED1", "88.00", status=4, trade_no="TX")
    s.order("SHORT1", "30.00", status=4, trade_no="T5")
    con = sqlite3.connect(s.shop_path)
    con.execute("UPDATE orders SET title = ? WHERE order_sn = 'FORGED1'", [HOSTILE_TITLE])
    con.commit()
    con.close()
    s.import_(s.statement([
        {"txn": "T1", "order": "OK1", "amount": "10.00"},
        {"txn": "T2", "order": "LOST1", "amount": "10.00"},
        {"txn": "T3", "order": "LOST2", "amount": "20.00"},
        {"txn": "T5", "order": "SHORT1", "amount": "25.00"},
        {"txn": "T6", "order": HOSTILE_ORDER, "amount": "5.00"},
        {"txn": "T7", "order": FORMULA_ORDER, "amount": "7.00"},
    ], name="pay_2026-11-20.csv"))
    reconcile(s.config, DAY, None, "test run", formats=FORMATS)
    reports = s.config.resolve(s.config.reports.out_dir)
    (reports / CHINESE_FILE).write_text("说明,值\n", encoding="utf-8")
    (folder / "secret.csv").write_text("not for download\n", encoding="utf-8")
    (reports / "leak.csv").symlink_to(folder / "secret.csv")
    (reports / ".partial.csv").write_text("temporary\n", encoding="utf-8")
    return s


def exception_id(s: Scenario, code: str, order_no: str | None = None) -> int:
    rows = [r for r in s.exceptions() if r["code"] == code and (order_no is None or r["order_no"] == order_no)]
    assert rows, f"no {code} exception for {order_no}"
    return int(rows[0]["id"])


class Console:
    """``recon serve``'s app and server settings, run in a thread on a socket of its own."""

    def __init__(self, config: Config) -> None:
        self.app = create_app(config)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(server_config(self.app, config, "127.0.0.1", self.port))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Console:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the console did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@contextmanager
def console(config: Config) -> Iterator[Console]:
    with Console(config) as running:
        yield running


@dataclass
class Client:
    """One visitor with a cookie jar; never follows redirects on its own (tests look at them)."""

    base: str
    address: str | None = None  # sent as X-Forwarded-For (the test console trusts 127.0.0.1 as its proxy)

    def __post_init__(self) -> None:
        self.http = requests.Session()
        if self.address:
            self.http.headers["X-Forwarded-For"] = self.address

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.get(self.base + path, allow_redirects=False, timeout=30, **kwargs)

    def post(self, path: str, data: dict[str, str], csrf: bool = True) -> requests.Response:
        form = dict(data)
        if csrf:
            form["csrf_token"] = self.token()
        return self.http.post(self.base + path, data=form, allow_redirects=False, timeout=30)

    def token(self) -> str:
        """The session's CSRF token, from the login page (or, once logged in, the logout form of a page)."""
        page = self.get("/login")
        if page.status_code == 303:
            page = self.get("/runs")
        found = _CSRF.search(page.text)
        assert found, f"no CSRF token: {page.status_code}"
        return found[1]

    def login(self, name: str, password: str | None = None) -> requests.Response:
        return self.post("/login", {"username": name, "password": password or USERS[name][1], "next": "/runs"})


def logged_in(base: str, name: str) -> Client:
    client = Client(base)
    answer = client.login(name)
    assert answer.status_code == 303, answer.text
    return client


# The console of one module's tests (import both names into a test module to use them).
@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return console_shop(tmp_path_factory.mktemp("console"))


@pytest.fixture(scope="module")
def web(shop: Scenario) -> Iterator[Console]:
    with console(shop.config) as running:
        yield running
