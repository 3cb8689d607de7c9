"""USDT-TRC20 client against the sandbox TronGrid over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import polars as pl
import pytest
import requests
from requests.adapters import HTTPAdapter

from fetchers import FETCHERS
from fetchers.http import ChannelSession
from fetchers.sandbox import Payment, Sandbox, SandboxResponse
from fetchers.sandbox.trongrid import TronGridSandbox
from fetchers.usdt_trc20 import TronFetcher
from recon.config import ChannelConfig
from recon.errors import ConfigError, FetchError, NotReady, TransientFetchError

WALLET = "TXYZopYRdj2D9XRtbG411XZZ3kM5VkAeBf"
OTHER = "TJRabPrwbZy45sbavfcjinPJC18kjpRTv8"
API_KEY = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
SHASTA_USDT = "TX8ZUpucJYgHb8wBFQYuYSJ459og32AHWW"
SH = ZoneInfo("Asia/Shanghai")
DAY = date(2024, 3, 1)
DAY_START = datetime(2024, 3, 1, tzinfo=SH)


def transfer(tx: str, amount: str, at: datetime, **extra: str) -> Payment:
    return Payment("", Decimal(amount), tx, at, currency="USDT", extra=extra)


def chain() -> list[Payment]:
    """450 incoming transfers of the day (three pages of 200), plus transfers that must not count."""
    base = [transfer(f"{i:064x}", f"{10 + i}.{i % 100:02d}", DAY_START + timedelta(minutes=3 * i)) for i in range(450)]
    return base + [
        transfer("a" * 64, "195.17", DAY_START + timedelta(hours=23, minutes=59, seconds=59)),
        transfer("b" * 64, "0.000001", DAY_START + timedelta(seconds=1)),
        transfer("c" * 64, "50.00", DAY_START + timedelta(hours=12), confirmed="false"),
        transfer("d" * 64, "70.00", DAY_START + timedelta(hours=13), **{"from": WALLET, "to": OTHER}),
        transfer("e" * 64, "80.00", DAY_START - timedelta(milliseconds=1)),
        transfer("f" * 64, "90.00", DAY_START + timedelta(days=1)),
        transfer("9" * 64, "99.00", DAY_START + timedelta(hours=14), contract=SHASTA_USDT),
    ]


BASE_SUM = sum((Decimal(f"{10 + i}.{i % 100:02d}") for i in range(450)), Decimal(0))
EXPECTED_SUM = BASE_SUM + Decimal("195.17") + Decimal("0.000001")


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Sandbox, TronGridSandbox]]:
    channel = TronGridSandbox(WALLET)
    with Sandbox(channel) as sandbox:
        yield sandbox, channel


@pytest.fixture
def grid(server: tuple[Sandbox, TronGridSandbox]) -> tuple[Sandbox, TronGridSandbox]:
    """The running sandbox, emptied of faults and requests, holding ``chain()`` and no API key."""
    sandbox, channel = server
    sandbox.faults.clear()
    sandbox.requests.clear()
    channel.payments = chain()
    channel.api_key = None
    return sandbox, channel


def make(api_base: str | None, monkeypatch: pytest.MonkeyPatch, api_key: str | None = None,
         **overrides: object) -> TronFetcher:
    settings: dict[str, object] = {"id": "tr", "kind": "usdt_trc20", "api": {"wallet": WALLET}, "api_base": api_base}
    if api_key is not None:
        monkeypatch.setenv("TRON_KEY", api_key)
        settings["credentials"] = {"api_key": "env:TRON_KEY"}
    channel = ChannelConfig.model_validate({**settings, **overrides})
    session = ChannelSession("tr", channel.secret_values(), sleep=lambda s: None, read_timeout=1.0)
    fetcher = FETCHERS["usdt_trc20"](channel, session)
    assert isinstance(fetcher, TronFetcher)
    return fetcher


def rows_of(fetcher: TronFetcher, day: date = DAY) -> pl.DataFrame:
    [statement] = fetcher.fetch(day)
    assert statement.rows is not None
    return statement.rows


def test_fetch_day_gives_incoming_confirmed_usdt_transfers(grid: tuple[Sandbox, TronGridSandbox],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, _ = grid
    [statement] = make(sandbox.url("/trongrid"), monkeypatch).fetch(DAY)
    assert statement.name == f"trc20_{WALLET}_2024-03-01.json"
    assert statement.period == (DAY, DAY) and statement.source.startswith("api:")
    rows = statement.rows
    assert rows is not None
    assert rows.height == 452
    assert rows["amount"].sum() == EXPECTED_SUM
    assert rows.schema["amount"] == pl.Decimal(20, 6)
    assert set(rows["kind"]) == {"payment"} and set(rows["status"]) == {"success"} and set(rows["currency"]) == {"USDT"}
    assert rows["order_no"].null_count() == rows.height
    assert rows["natural_key"].to_list() == rows["channel_txn_id"].to_list()
    assert set(rows["business_date"]) == {DAY}
    by_tx = {r["channel_txn_id"]: r for r in rows.iter_rows(named=True)}
    assert by_tx["a" * 64]["amount"] == Decimal("195.17")  # value "195170000" ÷ 10^6
    assert by_tx["b" * 64]["amount"] == Decimal("0.000001")  # one base unit
    assert by_tx["a" * 64]["occurred_at"] == datetime(2024, 3, 1, 15, 59, 59, tzinfo=UTC)
    assert by_tx["a" * 64]["counterparty"] == "TNtbiqvanUnm4YHK9SYzRGR8ktiHRduDbM"
    assert not {"c" * 64, "d" * 64, "e" * 64, "f" * 64, "9" * 64} & set(by_tx)


def test_requests_ask_for_confirmed_incoming_usdt_of_the_day_and_page_by_fingerprint(
        grid: tuple[Sandbox, TronGridSandbox], monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, _ = grid
    rows_of(make(sandbox.url("/trongrid"), monkeypatch))
    paths = [path for _, path in sandbox.requests]
    assert len(paths) == 3
    assert all(path.startswith(f"/trongrid/v1/accounts/{WALLET}/transactions/trc20?") for path in paths)
    for part in ("only_confirmed=true", "only_to=true", "limit=200",
                 "contract_address=TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t",
                 f"min_timestamp={int(DAY_START.timestamp()) * 1000}",
                 f"max_timestamp={int(DAY_START.timestamp()) * 1000 + 86_400_000 - 1}"):
        assert all(part in path for path in paths)
    assert "fingerprint=" not in paths[0] and all("fingerprint=" in path for path in paths[1:])


def test_unconfirmed_transfers_are_listed_only_when_asked_and_never_counted(
        grid: tuple[Sandbox, TronGridSandbox], monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, channel = grid
    channel.payments = [p for p in channel.payments if p.txn_id in ("c" * 64, "a" * 64)]
    everything = requests.get(sandbox.url(f"/trongrid/v1/accounts/{WALLET}/transactions/trc20"), timeout=5)
    assert "c" * 64 in everything.text  # the sandbox does hold it, for a client that does not ask for confirmed
    rows = rows_of(make(sandbox.url("/trongrid"), monkeypatch))
    assert rows["channel_txn_id"].to_list() == ["a" * 64]


def test_outgoing_transfers_are_not_payments_even_if_the_filter_is_ignored(
        grid: tuple[Sandbox, TronGridSandbox], monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, channel = grid
    at = DAY_START + timedelta(hours=1)
    channel.payments = [transfer("1" * 64, "5.00", at, **{"from": WALLET, "to": OTHER}),
                        transfer("2" * 64, "6.00", at, **{"from": WALLET, "to": WALLET}),
                        transfer("3" * 64, "7.00", at, type="Approval"),
                        transfer("4" * 64, "8.00", at, type="TransferFrom")]
    original = channel._wanted
    monkeypatch.setattr(channel, "_wanted", lambda t, q, a: original(t, {**q, "only_to": "false"}, a))
    rows = rows_of(make(sandbox.url("/trongrid"), monkeypatch))
    assert rows["channel_txn_id"].to_list() == ["4" * 64]


def test_foreign_links_next_is_never_followed(grid: tuple[Sandbox, TronGridSandbox],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, channel = grid
    foreign_channel = TronGridSandbox(WALLET, chain())
    with Sandbox(foreign_channel) as foreign:
        channel.foreign_base = foreign.url("/trongrid")
        sandbox.add_fault("foreign_host", times=10)
        rows = rows_of(make(sandbox.url("/trongrid"), monkeypatch))
        assert foreign.requests == []
    assert rows.height == 452 and rows["amount"].sum() == EXPECTED_SUM
    assert len(sandbox.requests) == 3


def test_api_key_is_sent_and_never_shown(grid: tuple[Sandbox, TronGridSandbox],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, channel = grid
    channel.api_key = API_KEY
    assert rows_of(make(sandbox.url("/trongrid"), monkeypatch, api_key=API_KEY)).height == 452
    wrong = "11111111-2222-3333-4444-555555555555"
    fetcher = make(sandbox.url("/trongrid"), monkeypatch, api_key=wrong)
    with pytest.raises(FetchError) as caught:
        fetcher.fetch(DAY)
    assert "credentials.api_key" in str(caught.value) and wrong not in str(caught.value)
    assert all(wrong not in f"{url} {outcome}" for _, url, outcome in fetcher.session.attempts_log)


def test_an_echoed_api_key_in_an_error_body_is_redacted(grid: tuple[Sandbox, TronGridSandbox],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, channel = grid
    fetcher = make(sandbox.url("/trongrid"), monkeypatch, api_key=API_KEY)
    echo = SandboxResponse.json({"success": False, "error": f"bad key {API_KEY} for you"}, status=400)
    monkeypatch.setattr(channel, "handle", lambda request: echo)
    with pytest.raises(FetchError) as caught:
        fetcher.fetch(DAY)
    assert "bad key *** for you" in str(caught.value) and API_KEY not in str(caught.value)


@pytest.mark.parametrize("fault", ["500", "429", "timeout", "reset", "slow_body"])
def test_transient_faults_are_retried(grid: tuple[Sandbox, TronGridSandbox], monkeypatch: pytest.MonkeyPatch,
                                      fault: str) -> None:
    sandbox, channel = grid
    channel.payments = []  # a short answer: slow_body stays quick
    sandbox.add_fault(fault)
    fetcher = make(sandbox.url("/trongrid"), monkeypatch, api_key=None)
    assert rows_of(fetcher).height == 0
    if fault != "slow_body":
        assert len(fetcher.session.attempts_log) == 2


def test_retries_run_out_as_a_transient_error(grid: tuple[Sandbox, TronGridSandbox],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, _ = grid
    sandbox.add_fault("500", times=10)
    with pytest.raises(TransientFetchError):
        make(sandbox.url("/trongrid"), monkeypatch).fetch(DAY)


def test_an_html_page_is_a_fetch_error(grid: tuple[Sandbox, TronGridSandbox], monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, _ = grid
    sandbox.add_fault("html")
    with pytest.raises(FetchError, match="not JSON"):
        make(sandbox.url("/trongrid"), monkeypatch).fetch(DAY)


def test_a_day_is_ready_once_its_last_blocks_are_confirmed(grid: tuple[Sandbox, TronGridSandbox],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, _ = grid
    fetcher = make(sandbox.url("/trongrid"), monkeypatch)
    fetcher._now = lambda: datetime(2024, 3, 1, 16, 0, 30, tzinfo=UTC)  # 00:00:30 the next day in Shanghai
    with pytest.raises(NotReady):
        fetcher.fetch(DAY)
    fetcher._now = lambda: datetime(2024, 3, 1, 16, 5, tzinfo=UTC)
    assert rows_of(fetcher).height == 452


def test_query_is_unknown_and_says_how_usdt_orders_are_matched(monkeypatch: pytest.MonkeyPatch) -> None:
    result = make(None, monkeypatch).query("20240301000001")
    assert (result.channel, result.order_no, result.state) == ("tr", "20240301000001", "unknown")
    assert "wallet" in result.note and "amount" in result.note


class _Recorder(HTTPAdapter):
    """Answers every request with an empty TronGrid page and remembers the URL and headers."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, *args: object, **kwargs: object) -> requests.Response:
        self.seen.append(request)
        response = requests.Response()
        response.status_code, response.url = 200, str(request.url)
        response._content = b'{"data":[],"success":true,"meta":{}}'
        return response


def test_defaults_are_the_public_trongrid_and_mainnet_usdt(monkeypatch: pytest.MonkeyPatch) -> None:
    fetcher = make(None, monkeypatch, api_key=API_KEY)
    recorder = _Recorder()
    fetcher.session.session.mount("https://", recorder)
    assert rows_of(fetcher).height == 0
    [sent] = recorder.seen
    assert str(sent.url).startswith(f"https://api.trongrid.io/v1/accounts/{WALLET}/transactions/trc20?")
    assert "contract_address=TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t" in str(sent.url)
    assert sent.headers["TRON-PRO-API-KEY"] == API_KEY


def test_missing_wallet_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as caught:
        make(None, monkeypatch, api={})
    assert caught.value.key == "channels.tr.api.wallet"
