"""PayPal: the STL settlement file, and the Transaction Search client against the sandbox over real HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetchers import FETCHERS, PARSERS
from fetchers.http import ChannelSession
from fetchers.paypal import PaypalFetcher, parse_settlement_report
from fetchers.paypal_api import windows
from fetchers.sandbox import Payment, Refund, Sandbox
from fetchers.sandbox.paypal import PaypalSandbox
from recon.config import ChannelConfig
from recon.errors import ConfigError, FetchError, InputError, NotReady, TransientFetchError

STL = Path(__file__).parent / "fixtures" / "paypal" / "STL-20240820.01.009.SYNTHETIC.CSV"
SECRET = "EPPaypalClientSecretDoNotLeak0123456789"
CLIENT = "AZsandboxClientId"
ZONE = "America/Los_Angeles"
DAY = date(2024, 8, 20)


def channel(**kw: object) -> ChannelConfig:
    base: dict[str, object] = {"id": "pp", "kind": "paypal", "currency": "USD", "zone": ZONE}
    return ChannelConfig(**{**base, **kw})


def totals(rows: pl.DataFrame) -> dict[tuple[str, str], tuple[int, Decimal, Decimal]]:
    """(kind, currency) → (count, Σ amount, Σ fee)."""
    out = rows.group_by("kind", "currency").agg(pl.len(), pl.col("amount").sum(), pl.col("fee").sum())
    return {(k, c): (n, Decimal(str(a)), Decimal(str(f))) for k, c, n, a, f in out.iter_rows()}


# --- the STL file ---------------------------------------------------------------------------------

def test_settlement_file_rows_by_kind_signed_from_cr_dr_in_minor_units() -> None:
    parsed = PARSERS["paypal"](STL, STL.read_bytes(), channel())
    assert totals(parsed.rows) == {
        ("payment", "USD"): (3, Decimal("175.49"), Decimal("5.99")),
        ("refund", "USD"): (1, Decimal("-125.50"), Decimal("-3.64")),  # fee returned: negative
        ("adjustment", "USD"): (1, Decimal("-50.00"), Decimal("0")),  # T0400 withdrawal
        ("payment", "JPY"): (1, Decimal("4500"), Decimal("190")),  # no decimals: 4500 is 4500 yen
        ("refund", "JPY"): (1, Decimal("-1000"), Decimal("0")),
    }
    assert parsed.period == (DAY, DAY) and parsed.merchant_id == "SYNTHMERCHANT01"
    refund = parsed.rows.filter((pl.col("kind") == "refund") & (pl.col("currency") == "USD")).row(0, named=True)
    assert refund == {**refund, "order_no": "P2002", "channel_txn_id": "2AB23456CD7890121",
                      "refund_id": "3AB23456CD7890122", "line_no": 7, "status": "success"}
    # -0700 offsets: 23:30 on the 20th in California is 06:30 UTC on the 21st, business date the 20th.
    late = parsed.rows.filter(pl.col("order_no") == "P2005").row(0, named=True)
    assert (late["occurred_at"], late["business_date"]) == (datetime(2024, 8, 21, 6, 30, tzinfo=UTC), DAY)
    shanghai = parse_settlement_report(STL, STL.read_bytes(), channel(zone="Asia/Shanghai"))
    assert shanghai.rows.filter(pl.col("order_no") == "P2005")["business_date"].item() == date(2024, 8, 21)


def test_order_number_from_custom_field_when_configured() -> None:
    rows = parse_settlement_report(STL, STL.read_bytes(), channel(api={"order_field": "custom_field"})).rows
    assert rows["order_no"].drop_nulls().unique().sort().to_list() == ["c-1", "c-2", "c-5", "c-6"]
    with pytest.raises(ConfigError, match=r"channels\.pp\.api\.order_field"):
        parse_settlement_report(STL, STL.read_bytes(), channel(api={"order_field": "memo"}))


def _edit_line(number: int, old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        lines = text.split("\r\n")
        assert old in lines[number - 1], lines[number - 1]
        lines[number - 1] = lines[number - 1].replace(old, new, 1)
        return "\r\n".join(lines)
    return edit


BAD: dict[str, tuple[Callable[[str], str], int, str]] = {
    "section footer total": (_edit_line(10, "17549", "17550"), 10, "SF footer totals for USD"),
    "section count": (_edit_line(11, '"SC",5', '"SC",4'), 11, "SC section record count says 4"),
    "report footer total": (_edit_line(19, ",190,", ",191,"), 19, "RF footer totals for JPY"),
    "report count": (_edit_line(20, '"RC",7', '"RC",8'), 20, "RC report record count"),
    "file count": (_edit_line(21, '"FF",7', '"FF",9'), 21, "FF file record count"),
    "truncated": (lambda t: t[: t.index('"SB","7AB')], 14, "does not end with its FF"),
    "cut mid-line": (lambda t: t[: t.index('"SB","7AB') + 30], 15, "FF"),
    "non-amount": (_edit_line(5, ",3000,", ",30.00,"), 5, "not an unsigned amount"),
    "amount beyond the store": (_edit_line(6, '"CR",12550', '"CR",100000000000000'), 6, "at most 14 digits"),
    "direction": (_edit_line(6, '"CR",12550', '"C",12550'), 6, "neither CR nor DR"),
    "missing column": (lambda t: t.replace('"Invoice ID"', '"Invoice"'), 4, "missing column"),
    "bad time": (_edit_line(5, "2024/08/20 09:15:00 -0700", "20.08.2024 09:15"), 5, "not a time"),
    "unknown record": (_edit_line(8, '"SB"', '"XX"'), 8, "not a settlement record"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_settlement_files_are_refused_naming_file_and_line(case: str) -> None:
    edit, line, problem = BAD[case]
    raw = edit(STL.read_bytes().decode("utf-8")).encode("utf-8")
    with pytest.raises(InputError) as error:
        parse_settlement_report(STL, raw, channel())
    assert (error.value.file, error.value.line) == (str(STL), line)
    assert problem in error.value.problem


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=400),
    st.builds(lambda cut, junk: STL.read_bytes()[:cut] + junk, st.integers(0, 3000), st.binary(max_size=20)),
    st.text(alphabet=',"\r\n0123456789/:- RHFSCBTDUJPY').map(str.encode),
))
def test_any_bytes_give_rows_or_an_input_error(raw: bytes) -> None:
    try:
        parse_settlement_report(Path("fuzz.CSV"), raw, channel())
    except InputError as error:
        assert error.file == "fuzz.CSV" and error.problem


# --- Transaction Search against the sandbox --------------------------------------------------------

def _payments() -> list[Payment]:
    start = datetime(2024, 8, 20, 7, 0, tzinfo=UTC)  # 2024-08-20 00:00 in California (PDT)
    payments = [Payment(f"P{i:04d}", Decimal("12.50"), f"{i:04d}TXN0000000000", start + timedelta(minutes=2 * i),
                        currency="USD", fee=Decimal("0.79"), extra={"custom": f"c-{i}"}) for i in range(520)]
    payments[3].refunds.append(Refund("9REFUND000000003", Decimal("12.50"), start + timedelta(hours=20)))
    payments.append(Payment("J1", Decimal("4500"), "JPYTXN0000000001", start + timedelta(hours=2), currency="JPY",
                            fee=Decimal("190")))
    payments.append(Payment("PEND", Decimal("5.00"), "PENDTXN000000001", start + timedelta(hours=3), status="unpaid",
                            currency="USD"))
    payments.append(Payment("LATE", Decimal("5.00"), "LATETXN000000001", start + timedelta(days=1), currency="USD"))
    return payments


@pytest.fixture
def sandbox() -> Iterator[tuple[Sandbox, PaypalSandbox]]:
    paypal = PaypalSandbox(_payments(), client_id=CLIENT, client_secret=SECRET)
    with Sandbox(paypal) as server:
        yield server, paypal


def fetcher(server: Sandbox, monkeypatch: pytest.MonkeyPatch, secret: str = SECRET, **kw: object) -> PaypalFetcher:
    monkeypatch.setenv("PAYPAL_SECRET", secret)
    ch = channel(api_base=server.url("/paypal"), api={"client_id": CLIENT, **kw},
                 credentials={"client_secret": "env:PAYPAL_SECRET"})
    session = ChannelSession(ch.id, secrets=ch.secret_values(), sleep=lambda s: None, read_timeout=1.0)
    made = FETCHERS["paypal"](ch, session)
    assert isinstance(made, PaypalFetcher)
    return made


def test_fetch_a_day_pages_with_one_token_and_signs_refunds(sandbox: tuple[Sandbox, PaypalSandbox],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    server, _ = sandbox
    [fetched] = fetcher(server, monkeypatch).fetch(DAY)
    rows = fetched.rows
    assert rows is not None and fetched.period == (DAY, DAY)
    assert totals(rows.filter(pl.col("status") == "success")) == {
        ("payment", "USD"): (520, Decimal("6500.00"), Decimal("410.80")),
        ("refund", "USD"): (1, Decimal("-12.50"), Decimal("0")),
        ("payment", "JPY"): (1, Decimal("4500"), Decimal("190")),
    }
    assert rows.filter(pl.col("order_no") == "PEND")["status"].to_list() == ["pending"]
    refund = rows.filter(pl.col("kind") == "refund").row(0, named=True)
    assert (refund["order_no"], refund["channel_txn_id"], refund["refund_id"]) == (
        "P0003", "0003TXN0000000000", "9REFUND000000003")
    assert "LATE" not in rows["order_no"].to_list() and rows["business_date"].unique().to_list() == [DAY]
    paths = [p for _, p in server.requests]
    assert sum("/v1/oauth2/token" in p for p in paths) == 1
    searches = [p for p in paths if "/v1/reporting/transactions" in p]
    assert len(searches) == 2 and "page=2" in searches[1] and "start_date=2024-08-20T00%3A00%3A00-0700" in searches[0]


def test_order_number_from_custom_field_via_the_api(sandbox: tuple[Sandbox, PaypalSandbox],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    server, _ = sandbox
    [fetched] = fetcher(server, monkeypatch, order_field="custom_field").fetch(DAY)
    assert fetched.rows is not None and "c-17" in fetched.rows["order_no"].to_list()


def test_a_day_not_yet_refreshed_is_not_ready(sandbox: tuple[Sandbox, PaypalSandbox],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    server, paypal = sandbox
    paypal.refreshed_at = datetime(2024, 8, 21, 5, 0, tzinfo=UTC)  # 22:00 on the 20th in California
    with pytest.raises(NotReady):
        fetcher(server, monkeypatch).fetch(DAY)


def test_an_expired_token_is_renewed_once(sandbox: tuple[Sandbox, PaypalSandbox],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    server, paypal = sandbox
    client = fetcher(server, monkeypatch)
    client.fetch(DAY)
    paypal.tokens.clear()  # PayPal forgot every token it issued
    [fetched] = client.fetch(DAY)
    assert fetched.rows is not None and fetched.rows.height == 523
    assert sum("/v1/oauth2/token" in p for _, p in server.requests) == 2


def test_query_is_honestly_unknown(sandbox: tuple[Sandbox, PaypalSandbox], monkeypatch: pytest.MonkeyPatch) -> None:
    server, _ = sandbox
    result = fetcher(server, monkeypatch).query("P0001")
    assert (result.state, result.order_no) == ("unknown", "P0001") and "date window" in result.note
    assert server.requests == []


@pytest.mark.parametrize("fault", ["500", "429", "timeout", "reset", "slow_body"])
@pytest.mark.parametrize("path", ["/paypal/v1/oauth2/token", "/paypal/v1/reporting/transactions"])
def test_a_passing_fault_is_retried(sandbox: tuple[Sandbox, PaypalSandbox], monkeypatch: pytest.MonkeyPatch,
                                    fault: str, path: str) -> None:
    server, _ = sandbox
    client = fetcher(server, monkeypatch)
    server.add_fault(fault, times=1, path=path)
    [fetched] = client.fetch(DAY)
    assert fetched.rows is not None and fetched.rows.height == 523
    assert any(outcome != "200" for _, _, outcome in client.session.attempts_log)


def test_a_lasting_fault_is_a_transient_error(sandbox: tuple[Sandbox, PaypalSandbox],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    server, _ = sandbox
    server.add_fault("429", times=10)
    with pytest.raises(TransientFetchError):
        fetcher(server, monkeypatch).fetch(DAY)


def test_a_wrong_secret_is_refused_without_showing_it(sandbox: tuple[Sandbox, PaypalSandbox],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    server, _ = sandbox
    wrong = "EPWrongSecretEchoedByTheServer987"
    client = fetcher(server, monkeypatch, secret=wrong)
    with pytest.raises(FetchError) as error:
        client.fetch(DAY)
    assert "401" in str(error.value) and "invalid_client" in str(error.value)
    assert wrong not in str(error.value) and wrong not in repr(client.session.attempts_log)


class _Forgetful(set[str]):
    """A token store that never knows the token presented: every search is refused, echoing it."""

    def __contains__(self, item: object) -> bool:
        return False


def test_an_echoed_access_token_is_redacted(sandbox: tuple[Sandbox, PaypalSandbox],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    server, paypal = sandbox
    paypal.tokens = _Forgetful()
    client = fetcher(server, monkeypatch)
    with pytest.raises(FetchError, match="AUTHENTICATION_FAILURE") as error:
        client.fetch(DAY)
    for token in paypal.tokens:
        assert token not in str(error.value) and token not in repr(client.session.attempts_log)
    assert len(paypal.tokens) == 2 and "***" in str(error.value)


@pytest.mark.parametrize(("drop", "key"), [("client_id", "channels.pp.api.client_id"),
                                           ("client_secret", "channels.pp.credentials.client_secret")])
def test_missing_credentials_name_the_key_path(drop: str, key: str) -> None:
    api = {} if drop == "client_id" else {"client_id": CLIENT}
    credentials = {} if drop == "client_secret" else {"client_secret": "env:PAYPAL_SECRET"}
    with pytest.raises(ConfigError) as error:
        PaypalFetcher(channel(api=api, credentials=credentials), ChannelSession("pp", sleep=lambda s: None))
    assert error.value.key == key


def test_long_ranges_are_cut_into_31_day_windows() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    cut = windows(start, start + timedelta(days=40))
    assert [(b - a).days for a, b in cut] == [31, 9] and cut[0][1] == cut[1][0]
