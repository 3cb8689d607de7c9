"""Epay (易支付) client against the sandbox panel over real HTTP, and the notify signing rule."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from fetchers import CANONICAL_SCHEMA, FETCHERS
from fetchers.epay import EpayFetcher, epusdt_sign, notify_sign, verify_notify
from fetchers.http import ChannelSession
from fetchers.sandbox import Payment, Refund, Sandbox
from fetchers.sandbox.epay import EpaySandbox
from recon.config import ChannelConfig
from recon.errors import ConfigError, FetchError, NotReady, TransientFetchError

KEY = "89unJUB8HZ54Hj7x4nUj56HN4nUzUJ8i"
PID = "1001"
SH = ZoneInfo("Asia/Shanghai")
DAY = date(2024, 3, 1)
_seq = iter(range(10_000, 99_999))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SH)


def order(order_no: str, amount: str, paid: str, status: str = "paid", created: str | None = None,
          refunded: bool = False, api_trade_no: str = "") -> Payment:
    """An Epay order; trade_no follows the panel's rule date("YmdHis") + 5 digits, from the creation time."""
    paid_at = at(paid)
    created_at = at(created) if created else paid_at - timedelta(minutes=1)
    extra = {"addtime": created_at.strftime("%Y-%m-%d %H:%M:%S"), "api_trade_no": api_trade_no}
    refunds = [Refund("R" + order_no, Decimal(amount), paid_at + timedelta(hours=1))] if refunded else []
    return Payment(order_no, Decimal(amount), created_at.strftime("%Y%m%d%H%M%S") + str(next(_seq)), paid_at,
                   status=status, refunds=refunds, extra=extra)


def day_orders() -> list[Payment]:
    """80 paid orders of the day plus the edge cases, and 60 orders of an older week."""
    orders = [order(f"D{i:03d}", f"{1 + i}.50", f"2024-03-01 {8 + i // 60:02d}:{i % 60:02d}:00",
                    api_trade_no=f"42000{i:014d}") for i in range(80)]
    orders += [
        order("REFUNDED", "20.00", "2024-03-01 12:00:00", refunded=True, api_trade_no="2024030122001400001"),
        order("UNPAID", "9.99", "2024-03-01 13:00:00", status="unpaid"),
        order("LATE", "5.50", "2024-03-01 23:59:59"),
        order("OVERNIGHT", "7.00", "2024-03-01 00:10:00", created="2024-02-29 23:50:00"),
        order("BEFORE", "3.00", "2024-02-29 23:59:59"),
        order("AFTER", "4.00", "2024-03-02 00:00:00"),
    ]
    orders += [order(f"OLD{i:02d}", "1.00", f"2024-02-2{i % 5} 10:{i:02d}:00") for i in range(60)]
    return orders


EXPECTED_PAID = {f"D{i:03d}" for i in range(80)} | {"REFUNDED", "LATE", "OVERNIGHT"}
EXPECTED_SUM = sum((Decimal(f"{1 + i}.50") for i in range(80)), Decimal("32.50"))


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Sandbox, EpaySandbox]]:
    channel = EpaySandbox(PID, KEY)
    with Sandbox(channel) as sandbox:
        yield sandbox, channel


@pytest.fixture
def panel(server: tuple[Sandbox, EpaySandbox]) -> tuple[Sandbox, EpaySandbox]:
    """The running sandbox, emptied of faults and requests, serving ``day_orders()``."""
    sandbox, channel = server
    sandbox.faults.clear()
    sandbox.requests.clear()
    channel.reset(day_orders())
    return sandbox, channel


def make(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, key: str = KEY, **overrides: object) -> EpayFetcher:
    monkeypatch.setenv("EPAY_KEY", key)
    settings: dict[str, object] = {"id": "ep", "kind": "epay", "api": {"pid": PID}, "api_base": sandbox.url("/epay"),
                                   "credentials": {"key": "env:EPAY_KEY"}, **overrides}
    channel = ChannelConfig.model_validate(settings)
    session = ChannelSession("ep", channel.secret_values(), sleep=lambda s: None, read_timeout=1.0)
    fetcher = FETCHERS["epay"](channel, session)
    assert isinstance(fetcher, EpayFetcher)
    return fetcher


def rows_of(fetcher: EpayFetcher, day: date = DAY) -> pl.DataFrame:
    [statement] = fetcher.fetch(day)
    assert statement.rows is not None
    return statement.rows


def assert_no_secret(fetcher: EpayFetcher, text: str, key: str = KEY) -> None:
    assert key not in text
    assert all(key not in url and key not in outcome for _, url, outcome in fetcher.session.attempts_log)


# --------------------------------------------------------------------------------------------- fetch

def test_fetch_day_gives_paid_and_refunded_orders_of_the_day(panel: tuple[Sandbox, EpaySandbox],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, _ = panel
    fetcher = make(sandbox, monkeypatch)
    [statement] = fetcher.fetch(DAY)
    assert (statement.name, statement.source, statement.period) == (
        "epay_1001_2024-03-01.json", "api:api.php?act=orders", (DAY, DAY))
    rows = statement.rows
    assert rows is not None
    assert set(rows["order_no"]) == EXPECTED_PAID
    assert rows["channel_txn_id"].n_unique() == rows.height == len(EXPECTED_PAID)
    assert rows["amount"].sum() == EXPECTED_SUM
    assert set(rows["kind"]) == {"payment"} and set(rows["currency"]) == {"CNY"}
    by_order = {r["order_no"]: r for r in rows.iter_rows(named=True)}
    assert by_order["REFUNDED"]["status"] == "refunded"
    assert by_order["REFUNDED"]["upstream_txn_id"] == "2024030122001400001"
    assert by_order["D007"]["status"] == "success" and by_order["D007"]["upstream_txn_id"] == "42000" + "7".zfill(14)
    assert by_order["LATE"]["upstream_txn_id"] is None  # empty api_trade_no
    assert by_order["LATE"]["occurred_at"] == datetime(2024, 3, 1, 15, 59, 59, tzinfo=UTC)
    assert by_order["OVERNIGHT"]["business_date"] == DAY  # created the day before, paid on the day
    assert set(rows["business_date"]) == {DAY}
    assert rows["natural_key"].to_list() == rows["channel_txn_id"].to_list()
    assert rows["line_no"].min() >= 1 and rows["line_no"].is_unique().all()


def test_paging_stops_once_orders_are_older_than_the_day(panel: tuple[Sandbox, EpaySandbox],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, channel = panel
    rows_of(make(sandbox, monkeypatch))
    asked = [path for _, path in sandbox.requests if "act=orders" in path]
    assert len(asked) == channel.page_requests < 4  # 146 orders would need 4 pages; the old week is not read
    assert all("limit=50" in path for path in asked)


def test_numbers_instead_of_strings_give_the_same_rows(panel: tuple[Sandbox, EpaySandbox],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, channel = panel
    channel.reset(day_orders(), numbers=True)
    rows = rows_of(make(sandbox, monkeypatch))
    assert rows.height == len(EXPECTED_PAID)
    assert rows["amount"].sum() == EXPECTED_SUM
    assert rows.schema["amount"] == pl.Decimal(20, 6)


def test_an_order_arriving_between_pages_is_neither_duplicated_nor_lost(panel: tuple[Sandbox, EpaySandbox],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, channel = panel
    for i in range(3):  # three new orders land after the first page: every later page shifts down by three
        channel.arrive_after(1, order(f"NEW{i}", "100.00", "2024-03-01 23:59:00", created="2024-03-02 09:00:00"))
    rows = rows_of(make(sandbox, monkeypatch))
    assert rows["channel_txn_id"].is_unique().all()
    assert EXPECTED_PAID <= set(rows["order_no"])
    assert rows.filter(pl.col("order_no").is_in(list(EXPECTED_PAID)))["amount"].sum() == EXPECTED_SUM


def test_an_order_vanishing_between_pages_loses_no_other_order(panel: tuple[Sandbox, EpaySandbox],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, channel = panel
    for gone in ("UNPAID", "AFTER"):  # a purge after the first page shifts every later page up by two
        channel.vanish_after(1, next(p.txn_id for p in channel.payments if p.order_no == gone))
    rows = rows_of(make(sandbox, monkeypatch))
    assert set(rows["order_no"]) == EXPECTED_PAID
    assert rows["channel_txn_id"].is_unique().all()


@pytest.mark.parametrize("orders", [[], [order("UNPAID", "9.99", "2024-03-01 13:00:00", status="unpaid")]])
def test_a_day_without_payments_is_covered_and_empty(panel: tuple[Sandbox, EpaySandbox],
                                                     monkeypatch: pytest.MonkeyPatch, orders: list[Payment]) -> None:
    sandbox, channel = panel
    channel.reset(orders)
    [statement] = make(sandbox, monkeypatch).fetch(DAY)
    assert statement.period == (DAY, DAY)
    assert statement.rows is not None and statement.rows.height == 0
    assert list(statement.rows.schema) == list(CANONICAL_SCHEMA)


def test_a_day_not_over_yet_is_not_ready(panel: tuple[Sandbox, EpaySandbox], monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, _ = panel
    fetcher = make(sandbox, monkeypatch)
    fetcher._now = lambda: datetime(2024, 3, 1, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai
    with pytest.raises(NotReady):
        fetcher.fetch(DAY)
    assert sandbox.requests == []


def test_an_unknown_order_status_is_an_error_not_a_guess(panel: tuple[Sandbox, EpaySandbox],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, channel = panel
    odd = order("ODD", "1.00", "2024-03-01 10:00:00")
    odd.extra["status"] = "7"
    channel.reset([odd])
    with pytest.raises(FetchError, match="unknown status '7'"):
        make(sandbox, monkeypatch).fetch(DAY)


# --------------------------------------------------------------------------------------------- query

@pytest.mark.parametrize(("order_no", "state", "amount"), [
    ("D001", "paid", Decimal("2.50")), ("UNPAID", "unpaid", Decimal("9.99")),
    ("REFUNDED", "refunded", Decimal("20.00")), ("NOPE", "not_found", None),
])
def test_query_maps_the_order_status(panel: tuple[Sandbox, EpaySandbox], monkeypatch: pytest.MonkeyPatch,
                                     order_no: str, state: str, amount: Decimal | None) -> None:
    sandbox, channel = panel
    result = make(sandbox, monkeypatch).query(order_no)
    assert (result.channel, result.order_no, result.state, result.amount) == ("ep", order_no, state, amount)
    if state == "paid":
        payment = next(p for p in channel.payments if p.order_no == order_no)
        assert result.channel_txn_id == payment.txn_id and result.paid_at == payment.paid_at
        assert result.currency == "CNY" and result.raw_status == "1"
    if state == "unpaid":
        assert result.paid_at is None
    assert any(f"out_trade_no={order_no}" in path for _, path in sandbox.requests)


def test_wrong_key_is_a_fetch_error_that_never_shows_the_key(panel: tuple[Sandbox, EpaySandbox],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, _ = panel
    wrong = "WRONGwrongWRONGwrong0123456789ab"
    fetcher = make(sandbox, monkeypatch, key=wrong)
    for call in (lambda: fetcher.query("D001"), lambda: fetcher.fetch(DAY)):
        with pytest.raises(FetchError) as caught:
            call()
        assert "refused" in str(caught.value) and "商户密钥错误" in str(caught.value)
        assert_no_secret(fetcher, str(caught.value), wrong)


def test_wrong_merchant_is_a_fetch_error(panel: tuple[Sandbox, EpaySandbox], monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, _ = panel
    sandbox.add_fault("wrong_merchant")
    with pytest.raises(FetchError, match="merchant 1001 refused"):
        make(sandbox, monkeypatch).query("D001")


# --------------------------------------------------------------------------------------------- faults

@pytest.mark.parametrize("fault", ["500", "429", "timeout", "reset", "slow_body"])
def test_transient_faults_are_retried(panel: tuple[Sandbox, EpaySandbox], monkeypatch: pytest.MonkeyPatch,
                                      fault: str) -> None:
    sandbox, _ = panel
    sandbox.add_fault(fault)
    fetcher = make(sandbox, monkeypatch)
    assert fetcher.query("NOPE").state == "not_found"  # a short answer: slow_body stays quick
    assert_no_secret(fetcher, "")
    if fault != "slow_body":
        assert len(fetcher.session.attempts_log) == 2


def test_transient_faults_while_paging_are_retried(panel: tuple[Sandbox, EpaySandbox],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, _ = panel
    sandbox.add_fault("500", times=2)
    sandbox.add_fault("reset")
    rows = rows_of(make(sandbox, monkeypatch))
    assert set(rows["order_no"]) == EXPECTED_PAID


def test_retries_run_out_without_showing_the_key(panel: tuple[Sandbox, EpaySandbox],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, _ = panel
    sandbox.add_fault("500", times=10)
    fetcher = make(sandbox, monkeypatch)
    with pytest.raises(TransientFetchError) as caught:
        fetcher.fetch(DAY)
    assert "api.php" in str(caught.value)
    assert_no_secret(fetcher, str(caught.value))


def test_an_html_page_is_a_fetch_error(panel: tuple[Sandbox, EpaySandbox], monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, _ = panel
    sandbox.add_fault("html")
    with pytest.raises(FetchError, match="not JSON: <html>"):
        make(sandbox, monkeypatch).query("D001")


# --------------------------------------------------------------------------------------------- config

@pytest.mark.parametrize(("overrides", "key_path"), [
    ({"api_base": None}, "channels.ep.api_base"),
    ({"api": {}}, "channels.ep.api.pid"),
    ({"credentials": {}}, "channels.ep.credentials.key"),
])
def test_missing_config_names_the_key(panel: tuple[Sandbox, EpaySandbox], monkeypatch: pytest.MonkeyPatch,
                                      overrides: dict[str, object], key_path: str) -> None:
    sandbox, _ = panel
    with pytest.raises(ConfigError) as caught:
        make(sandbox, monkeypatch, **overrides)
    assert caught.value.key == key_path


def test_v2_rsa_is_refused_by_name(panel: tuple[Sandbox, EpaySandbox], monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, _ = panel
    with pytest.raises(ConfigError) as caught:
        make(sandbox, monkeypatch, api={"pid": PID, "version": "2"})
    assert caught.value.key == "channels.ep.api.version" and "V2" in str(caught.value)
    assert sandbox.requests == []


# --------------------------------------------------------------------------------------------- signing

NOTIFY = {"pid": "1001", "trade_no": "2024010112000012345", "out_trade_no": "20240101120000001", "type": "alipay",
          "name": "VIP会员", "money": "1.00", "trade_status": "TRADE_SUCCESS", "param": ""}


def test_v1_md5_test_vector() -> None:
    assert notify_sign(NOTIFY, KEY) == "3c5d568accfd803abd404c39da8c0621"


def test_verify_notify_as_received_in_the_query_string() -> None:
    query = ("money=1.00&name=VIP%E4%BC%9A%E5%91%98&out_trade_no=20240101120000001&pid=1001"
             "&trade_no=2024010112000012345"
             "&trade_status=TRADE_SUCCESS&type=alipay&sign=3c5d568accfd803abd404c39da8c0621&sign_type=MD5")
    params = dict(parse_qsl(query, keep_blank_values=True))
    assert verify_notify(params, KEY)
    assert verify_notify({**params, "sign": params["sign"].upper()}, KEY)
    assert not verify_notify({**params, "money": "1"}, KEY)  # the exact received string is signed
    assert not verify_notify({**params, "sign": ""}, KEY)
    assert not verify_notify(params, KEY[:-1])


def test_epusdt_test_vector() -> None:
    params = {"amount": 42, "notify_url": "http://example.com/notify", "order_id": "20220201030210321",
              "redirect_url": "http://example.com/redirect"}
    assert epusdt_sign(params, "epusdt_password_xasddawqe") == "1cd4b52df5587cfb1968b0c0c6e156cd"
    assert epusdt_sign({**params, "signature": "x"}, "epusdt_password_xasddawqe") == "1cd4b52df5587cfb1968b0c0c6e156cd"
