"""Stripe: the balance report CSV, and the API client against the sandbox over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetchers import FETCHERS, PARSERS
from fetchers.http import ChannelSession
from fetchers.sandbox import Payment, Refund, Sandbox
from fetchers.sandbox.stripe import StripeSandbox
from fetchers.stripe import StripeFetcher, parse_balance_report
from recon.config import ChannelConfig
from recon.errors import ConfigError, FetchError, InputError, TransientFetchError

FIXTURES = Path(__file__).parent / "fixtures" / "stripe"
USD = FIXTURES / "balance_change_from_activity.itemized.3_2024-03-01.SYNTHETIC.csv"
JPY = FIXTURES / "balance_change_from_activity.itemized.1_JPY_2024-03-02.SYNTHETIC.csv"
KEY = "sk_test_51SandboxSecretKeyDoNotLeak"
DAY = date(2024, 3, 1)


def channel(**kw: object) -> ChannelConfig:
    base: dict[str, object] = {"id": "st", "kind": "stripe", "currency": "USD", "zone": "Asia/Shanghai"}
    return ChannelConfig(**{**base, **kw})


def totals(rows: pl.DataFrame) -> dict[str, tuple[int, Decimal, Decimal]]:
    """kind → (count, Σ amount, Σ fee)."""
    out = rows.group_by("kind").agg(pl.len(), pl.col("amount").sum(), pl.col("fee").sum())
    return {k: (n, Decimal(str(a)), Decimal(str(f))) for k, n, a, f in out.iter_rows()}


# --- the report CSV ---------------------------------------------------------------------------------

def test_usd_report_rows_by_kind_with_fees_and_negative_refunds() -> None:
    parsed = PARSERS["stripe"](USD, USD.read_bytes(), channel())
    rows = parsed.rows
    assert totals(rows) == {
        "payment": (3, Decimal("75.91"), Decimal("3.10")),
        "refund": (1, Decimal("-10.00"), Decimal("0")),
        "fee": (1, Decimal("-5.00"), Decimal("0")),
        "adjustment": (1, Decimal("-64.80"), Decimal("0")),  # the payout
    }
    refund = rows.filter(pl.col("kind") == "refund").row(0, named=True)
    assert (refund["order_no"], refund["channel_txn_id"], refund["line_no"]) == ("A1002", "pi_1002", 4)
    assert rows["currency"].unique().to_list() == ["USD"]
    assert rows["natural_key"].to_list() == [f"txn_100{i}" for i in range(1, 7)]
    # created_utc is UTC; the business date is in the channel's zone (UTC+8): 16:00 UTC is the next day.
    late = rows.filter(pl.col("order_no") == "A1004").row(0, named=True)
    assert late["occurred_at"] == datetime(2024, 3, 1, 16, 0, tzinfo=UTC)
    assert late["business_date"] == date(2024, 3, 2)
    # the quoted description with a comma and doubled quotes did not shift any column
    assert rows.filter(pl.col("order_no") == "A1002")["amount"].to_list() == [Decimal("10"), Decimal("-10")]


def test_zero_decimal_currency_amounts_are_taken_as_written() -> None:
    rows = parse_balance_report(JPY, JPY.read_bytes(), channel(currency="JPY")).rows
    assert totals(rows) == {"payment": (2, Decimal("17800"), Decimal("641")),
                            "refund": (1, Decimal("-1200"), Decimal(0))}
    assert rows["currency"].unique().to_list() == ["JPY"]


def test_the_order_metadata_key_is_configurable() -> None:
    raw = USD.read_bytes().replace(b"payment_metadata[order_no]", b"payment_metadata[shop_order]")
    rows = parse_balance_report(USD, raw, channel(api={"order_metadata_key": "shop_order"})).rows
    assert rows["order_no"].drop_nulls().to_list() == ["A1001", "A1002", "A1002", "A1004"]
    with pytest.raises(InputError, match=r"payment_metadata\[order_no\]") as error:
        parse_balance_report(USD, raw, channel())
    assert error.value.line == 1


def _replace_line(raw: bytes, line: int, old: bytes, new: bytes) -> bytes:
    lines = raw.split(b"\r\n")
    assert old in lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    return b"\r\n".join(lines)


BAD = {
    "missing column": (lambda r: r.replace(b",reporting_category,", b",category,", 1), 1, "missing column"),
    "non-amount": (lambda r: _replace_line(r, 3, b",10.00,", b",ten,"), 3, "not an amount"),
    "decimal comma": (lambda r: _replace_line(r, 2, b",45.91,", b',"45,91",'), 2, "decimal comma"),
    "truncated row": (lambda r: r[: r.index(b"txn_1004") + 40], 5, "fields"),
    "bad time": (lambda r: _replace_line(r, 6, b"2024-03-01 23:59:59", b"01/03/2024 23:59"), 6, "not a time"),
    "empty id": (lambda r: _replace_line(r, 7, b"txn_1006", b""), 7, "balance_transaction_id is empty"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_reports_are_refused_naming_file_and_line(case: str) -> None:
    edit, line, problem = BAD[case]
    with pytest.raises(InputError) as error:
        parse_balance_report(USD, edit(USD.read_bytes()), channel())
    assert (error.value.file, error.value.line) == (str(USD), line)
    assert problem in error.value.problem


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=400),
    st.builds(lambda cut, junk: USD.read_bytes()[:cut] + junk, st.integers(0, 900), st.binary(max_size=20)),
    st.text(alphabet=",\"\r\n0123456789.-:abcdefghijklmnopqrstuvwxyz_[] ").map(str.encode),
))
def test_any_bytes_give_rows_or_an_input_error(raw: bytes) -> None:
    try:
        parse_balance_report(Path("fuzz.csv"), raw, channel())
    except InputError as error:
        assert error.file == "fuzz.csv" and error.problem


# --- the API against the sandbox ------------------------------------------------------------------

def _payments() -> list[Payment]:
    start = datetime(2024, 2, 29, 16, 0, tzinfo=UTC)  # 2024-03-01 00:00 in Asia/Shanghai
    payments = [Payment(f"A{i:04d}", Decimal("9.99"), f"pi_{i:04d}", start + timedelta(minutes=5 * i), currency="USD",
                        fee=Decimal("0.59")) for i in range(230)]
    payments[7].refunds.append(Refund("re_0007", Decimal("4.00"), start + timedelta(hours=23)))
    payments.append(Payment("J1", Decimal("5000"), "pi_jpy1", start + timedelta(hours=1), currency="JPY",
                            fee=Decimal("180")))
    payments.append(Payment("NEXTDAY", Decimal("1.00"), "pi_next", start + timedelta(days=1), currency="USD"))
    payments.append(Payment("U1", Decimal("3.00"), "pi_u1", start, status="unpaid", currency="USD"))
    payments.append(Payment("P1", Decimal("3.00"), "pi_p1", start, status="unpaid", currency="USD",
                            extra={"intent_status": "processing"}))
    payments.append(Payment("C1", Decimal("3.00"), "pi_c1", start, status="closed", currency="USD"))
    payments.append(Payment("R1", Decimal("8.00"), "pi_r1", start - timedelta(days=3), currency="USD",
                            refunds=[Refund("re_r1", Decimal("8.00"), start - timedelta(days=2))]))
    payments.append(Payment("it's", Decimal("2.00"), "pi_quote", start - timedelta(days=3), currency="USD"))
    return payments


@pytest.fixture
def sandbox() -> Iterator[tuple[Sandbox, StripeSandbox]]:
    stripe = StripeSandbox(_payments(), secret_key=KEY)
    with Sandbox(stripe) as server:
        yield server, stripe


def fetcher(server: Sandbox, monkeypatch: pytest.MonkeyPatch, key: str = KEY) -> StripeFetcher:
    monkeypatch.setenv("STRIPE_KEY", key)
    ch = channel(api_base=server.url("/stripe"), credentials={"secret_key": "env:STRIPE_KEY"})
    session = ChannelSession(ch.id, secrets=ch.secret_values(), sleep=lambda s: None, read_timeout=1.0)
    made = FETCHERS["stripe"](ch, session)
    assert isinstance(made, StripeFetcher)
    return made


def test_fetch_a_day_pages_converts_minor_units_and_finds_order_numbers(
        sandbox: tuple[Sandbox, StripeSandbox], monkeypatch: pytest.MonkeyPatch) -> None:
    server, _ = sandbox
    [fetched] = fetcher(server, monkeypatch).fetch(DAY)
    rows = fetched.rows
    assert rows is not None and fetched.period == (DAY, DAY) and fetched.source == "api:/v1/balance_transactions"
    assert rows["business_date"].unique().to_list() == [DAY]
    usd = rows.filter(pl.col("currency") == "USD")
    assert totals(usd) == {"payment": (230, Decimal("2297.70"), Decimal("135.70")),
                           "refund": (1, Decimal("-4.00"), Decimal(0))}
    jpy = rows.filter(pl.col("currency") == "JPY").row(0, named=True)
    assert (jpy["amount"], jpy["fee"], jpy["order_no"]) == (Decimal("5000"), Decimal("180"), "J1")
    refund = rows.filter(pl.col("kind") == "refund").row(0, named=True)
    # the refund carries no metadata: its order number comes from its charge
    assert (refund["order_no"], refund["channel_txn_id"], refund["refund_id"]) == ("A0007", "pi_0007", "re_0007")
    assert rows["natural_key"].n_unique() == rows.height == 232
    pages = [p for m, p in server.requests if "/v1/balance_transactions" in p]
    assert len(pages) == 3 and "starting_after=" in pages[1] and "created%5Bgte%5D=1709222400" in pages[0]
    assert any("/v1/charges/ch_0007" in p for _, p in server.requests)


@pytest.mark.parametrize(("order_no", "state", "raw", "amount"), [
    ("A0001", "paid", "succeeded", Decimal("9.99")),
    ("R1", "refunded", "succeeded", Decimal("8.00")),
    ("U1", "unpaid", "requires_payment_method", Decimal("3.00")),
    ("P1", "unknown", "processing", Decimal("3.00")),
    ("C1", "closed", "canceled", Decimal("3.00")),
    ("it's", "paid", "succeeded", Decimal("2.00")),
    ("NOPE", "not_found", "", None),
])
def test_query_maps_payment_intent_states(sandbox: tuple[Sandbox, StripeSandbox], monkeypatch: pytest.MonkeyPatch,
                                          order_no: str, state: str, raw: str, amount: Decimal | None) -> None:
    server, _ = sandbox
    result = fetcher(server, monkeypatch).query(order_no)
    assert (result.order_no, result.state, result.raw_status, result.amount) == (order_no, state, raw, amount)
    if state in ("unknown", "unpaid", "not_found"):
        assert result.note
    if state == "paid":
        assert result.channel_txn_id and result.channel_txn_id.startswith("pi_") and result.paid_at is not None


@pytest.mark.parametrize("fault", ["500", "429", "timeout", "reset", "slow_body"])
def test_a_passing_fault_is_retried(sandbox: tuple[Sandbox, StripeSandbox], monkeypatch: pytest.MonkeyPatch,
                                    fault: str) -> None:
    server, _ = sandbox
    client = fetcher(server, monkeypatch)
    server.add_fault(fault, times=1, path="/stripe/v1/balance_transactions")
    [fetched] = client.fetch(DAY)
    assert fetched.rows is not None and fetched.rows.height == 232
    outcomes = [outcome for _, _, outcome in client.session.attempts_log]
    assert len(outcomes) >= 5 and any(o != "200" for o in outcomes)  # 3 pages + 1 charge + the retried attempt


def test_a_lasting_fault_is_a_transient_error(sandbox: tuple[Sandbox, StripeSandbox],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    server, _ = sandbox
    server.add_fault("500", times=10)
    with pytest.raises(TransientFetchError):
        fetcher(server, monkeypatch).fetch(DAY)


def test_an_html_page_is_a_fetch_error(sandbox: tuple[Sandbox, StripeSandbox], monkeypatch: pytest.MonkeyPatch) -> None:
    server, _ = sandbox
    server.add_fault("html")
    with pytest.raises(FetchError, match="not JSON"):
        fetcher(server, monkeypatch).fetch(DAY)


def test_a_wrong_key_is_refused_without_showing_it(sandbox: tuple[Sandbox, StripeSandbox],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    server, _ = sandbox
    wrong = "sk_test_WrongKeyThatTheServerEchoes"
    client = fetcher(server, monkeypatch, key=wrong)
    for call in (lambda: client.fetch(DAY), lambda: client.query("A0001")):
        with pytest.raises(FetchError) as error:
            call()
        assert "401" in str(error.value) and "Invalid API Key" in str(error.value)
        assert wrong not in str(error.value) and "***" in str(error.value)
    assert wrong not in repr(client.session.attempts_log)


def test_missing_credentials_name_the_key_path() -> None:
    session = ChannelSession("st", sleep=lambda s: None)
    with pytest.raises(ConfigError) as error:
        StripeFetcher(channel(), session)
    assert error.value.key == "channels.st.credentials.secret_key"
