"""Epay V2 (彩虹易支付V2, RSA) client against the sandbox panel over real HTTP, and the V2 signing rule."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import polars as pl
import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from fetchers import FETCHERS
from fetchers.epay import EpayFetcher
from fetchers.epay_v2 import answer_sign_strings, rsa_sign, rsa_verify, sign_string
from fetchers.http import ChannelSession
from fetchers.sandbox import Payment, Refund, Sandbox
from fetchers.sandbox.epay import EpaySandbox
from recon.config import ChannelConfig
from recon.errors import ConfigError, FetchError, SignatureError
from tests.test_fetch_epay import DAY, EXPECTED_PAID, EXPECTED_SUM, KEY, PID, day_orders, order


def _pems(key: rsa.RSAPrivateKey) -> tuple[str, str]:
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode("ascii")
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")
    return private, public


MERCHANT = rsa.generate_private_key(public_exponent=65537, key_size=2048)
MERCHANT_PRIVATE, MERCHANT_PUBLIC = _pems(MERCHANT)
STRANGER_PRIVATE, _ = _pems(rsa.generate_private_key(public_exponent=65537, key_size=2048))


def secret_fragments(pem: str) -> list[str]:
    """The whole PEM and each base64 line of it: none may show up anywhere."""
    return [pem.strip()] + [line for line in pem.splitlines() if line and not line.startswith("-----")]


def partial() -> Payment:
    """A paid order of the day of which 3.00 of 10.00 went back: status stays "1", refundmoney 3.0."""
    p = order("PARTIAL", "10.00", "2024-03-01 14:00:00", api_trade_no="2024030122001400002")
    p.refunds.append(Refund("RPARTIAL", Decimal("3.00"), p.paid_at + timedelta(hours=2)))
    return p


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Sandbox, EpaySandbox]]:
    channel = EpaySandbox(PID, KEY, merchant_public_key=MERCHANT_PUBLIC)
    with Sandbox(channel) as sandbox:
        yield sandbox, channel


@pytest.fixture
def panel(server: tuple[Sandbox, EpaySandbox]) -> tuple[Sandbox, EpaySandbox]:
    sandbox, channel = server
    sandbox.faults.clear()
    sandbox.requests.clear()
    channel.reset([*day_orders(), partial()])
    return sandbox, channel


def make(sandbox: Sandbox, channel: EpaySandbox, monkeypatch: pytest.MonkeyPatch, private: str = MERCHANT_PRIVATE,
         platform: str | None = None, **overrides: object) -> EpayFetcher:
    monkeypatch.setenv("EPAY_PRIVATE_KEY", private)
    monkeypatch.setenv("EPAY_PLATFORM_KEY", platform or channel.platform_public_pem)
    settings: dict[str, object] = {
        "id": "ep", "kind": "epay", "api": {"pid": PID, "version": "2"}, "api_base": sandbox.url("/epay"),
        "credentials": {"private_key": "env:EPAY_PRIVATE_KEY", "platform_public_key": "env:EPAY_PLATFORM_KEY"},
        **overrides}
    config = ChannelConfig.model_validate(settings)
    session = ChannelSession("ep", config.secret_values(), sleep=lambda s: None, read_timeout=1.0)
    fetcher = FETCHERS["epay"](config, session)
    assert isinstance(fetcher, EpayFetcher)
    return fetcher


def assert_no_secret(fetcher: EpayFetcher, text: str, pem: str = MERCHANT_PRIVATE) -> None:
    logged = " ".join(f"{url} {outcome}" for _, url, outcome in fetcher.session.attempts_log)
    for fragment in secret_fragments(pem):
        assert fragment not in text and fragment not in logged


# --------------------------------------------------------------------------------------------- fetch

def test_fetch_day_gives_the_rows_v1_gives(panel: tuple[Sandbox, EpaySandbox], monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, channel = panel
    [statement] = make(sandbox, channel, monkeypatch).fetch(DAY)
    assert (statement.name, statement.source, statement.period) == (
        "epay_1001_2024-03-01.json", "api:api/pay/orders", (DAY, DAY))
    rows = statement.rows
    assert rows is not None
    assert set(rows["order_no"]) == EXPECTED_PAID | {"PARTIAL"}
    assert rows["channel_txn_id"].is_unique().all()
    assert rows["amount"].sum() == EXPECTED_SUM + Decimal("10.00")  # floats on the wire, exact Decimals here
    by_order = {r["order_no"]: r for r in rows.iter_rows(named=True)}
    assert by_order["REFUNDED"]["status"] == "refunded"  # status 2
    assert by_order["PARTIAL"]["status"] == "refunded" and by_order["PARTIAL"]["amount"] == Decimal("10")
    assert by_order["D007"]["status"] == "success" and by_order["D007"]["upstream_txn_id"] == "42000" + "7".zfill(14)
    assert by_order["LATE"]["occurred_at"] == datetime(2024, 3, 1, 15, 59, 59, tzinfo=UTC)
    assert {m for m, _ in sandbox.requests} == {"POST"}
    assert all(p == "/epay/api/pay/orders" for _, p in sandbox.requests)
    # The same panel read through V1 gives the same rows (V1 knows no partial refunds: "1" stays success).
    monkeypatch.setenv("EPAY_KEY", KEY)
    v1 = ChannelConfig.model_validate({"id": "ep", "kind": "epay", "api": {"pid": PID},
                                       "api_base": sandbox.url("/epay"), "credentials": {"key": "env:EPAY_KEY"}})
    [old] = EpayFetcher(v1, ChannelSession("ep", [KEY], sleep=lambda s: None)).fetch(DAY)
    assert old.rows is not None
    expected = old.rows.with_columns(status=pl.when(pl.col("order_no") == "PARTIAL").then(pl.lit("refunded"))
                                     .otherwise(pl.col("status")))
    assert rows.sort("channel_txn_id").equals(expected.sort("channel_txn_id"))


def test_paging_dedupes_an_order_arriving_between_pages(panel: tuple[Sandbox, EpaySandbox],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, channel = panel
    for i in range(3):
        channel.arrive_after(1, order(f"NEW{i}", "100.00", "2024-03-01 23:59:00", created="2024-03-02 09:00:00"))
    [statement] = make(sandbox, channel, monkeypatch).fetch(DAY)
    assert statement.rows is not None
    assert statement.rows["channel_txn_id"].is_unique().all()
    assert EXPECTED_PAID <= set(statement.rows["order_no"])
    assert 1 < channel.page_requests < 5


# --------------------------------------------------------------------------------------------- query

@pytest.mark.parametrize(("order_no", "state", "raw", "amount"), [
    ("D001", "paid", "1", Decimal("2.50")), ("UNPAID", "unpaid", "0", Decimal("9.99")),
    ("REFUNDED", "refunded", "2", Decimal("20.00")), ("PARTIAL", "refunded", "1", Decimal("10.00")),
    ("NOPE", "not_found", "订单号不存在", None),
])
def test_query_maps_the_order(panel: tuple[Sandbox, EpaySandbox], monkeypatch: pytest.MonkeyPatch,
                              order_no: str, state: str, raw: str, amount: Decimal | None) -> None:
    sandbox, channel = panel
    result = make(sandbox, channel, monkeypatch).query(order_no)
    assert (result.channel, result.order_no, result.state, result.raw_status) == ("ep", order_no, state, raw)
    assert result.amount == amount
    if state in ("paid", "refunded"):
        payment = next(p for p in channel.payments if p.order_no == order_no)
        assert result.channel_txn_id == payment.txn_id and result.paid_at == payment.paid_at
        assert result.currency == "CNY"
    if order_no == "PARTIAL":
        assert "refundmoney 3" in result.note
    if state == "unpaid":  # array_filter dropped status "0" from the answer
        assert result.paid_at is None
    [(method, path)] = sandbox.requests
    assert (method, path) == ("POST", "/epay/api/pay/query")


# --------------------------------------------------------------------------------------------- signatures

@pytest.mark.parametrize(("fault", "words"), [("bad_signature", "does not verify"),
                                              ("no_signature", "no signature"),
                                              ("stale_timestamp", "stale")])
def test_an_answer_that_is_not_authentic_is_refused(panel: tuple[Sandbox, EpaySandbox],
                                                    monkeypatch: pytest.MonkeyPatch, fault: str, words: str) -> None:
    sandbox, channel = panel
    fetcher = make(sandbox, channel, monkeypatch)
    for call in (lambda: fetcher.query("D001"), lambda: fetcher.fetch(DAY)):
        sandbox.add_fault(fault)
        with pytest.raises(SignatureError, match=words) as caught:
            call()
        assert_no_secret(fetcher, str(caught.value))


def test_an_unsigned_not_found_is_not_trusted(panel: tuple[Sandbox, EpaySandbox],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, channel = panel
    sandbox.add_fault("no_signature")
    result = make(sandbox, channel, monkeypatch).query("NOPE")
    assert result.state == "unknown" and "unsigned" in result.note


def test_a_wrong_merchant_key_is_refused_by_the_panel(panel: tuple[Sandbox, EpaySandbox],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, channel = panel
    fetcher = make(sandbox, channel, monkeypatch, private=STRANGER_PRIVATE)
    for call in (lambda: fetcher.query("D001"), lambda: fetcher.fetch(DAY)):
        with pytest.raises(FetchError) as caught:
            call()
        assert type(caught.value) is FetchError
        assert "merchant 1001 refused" in str(caught.value) and "签名校验失败" in str(caught.value)
        assert_no_secret(fetcher, str(caught.value), STRANGER_PRIVATE)


def test_a_wrong_merchant_is_a_fetch_error(panel: tuple[Sandbox, EpaySandbox],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, channel = panel
    sandbox.add_fault("wrong_merchant")
    with pytest.raises(FetchError, match="商户不存在") as caught:
        make(sandbox, channel, monkeypatch).fetch(DAY)
    assert type(caught.value) is FetchError and "unsigned" in str(caught.value)


def test_a_platform_key_that_is_not_the_panels_refuses_every_answer(panel: tuple[Sandbox, EpaySandbox],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, channel = panel
    fetcher = make(sandbox, channel, monkeypatch, platform=MERCHANT_PUBLIC)
    with pytest.raises(SignatureError):
        fetcher.query("D001")


def test_retries_run_out_without_showing_a_key(panel: tuple[Sandbox, EpaySandbox],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, channel = panel
    sandbox.add_fault("500", times=10)
    fetcher = make(sandbox, channel, monkeypatch)
    with pytest.raises(FetchError) as caught:
        fetcher.fetch(DAY)
    assert "api/pay/orders" in str(caught.value)
    assert_no_secret(fetcher, str(caught.value))


def test_bare_base64_keys_and_escaped_newlines_are_accepted(panel: tuple[Sandbox, EpaySandbox],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, channel = panel
    bare_platform = "".join(line for line in channel.platform_public_pem.splitlines() if "-----" not in line)
    escaped_private = MERCHANT_PRIVATE.strip().replace("\n", "\\n")
    fetcher = make(sandbox, channel, monkeypatch, private=escaped_private, platform=bare_platform)
    assert fetcher.query("D001").state == "paid"


# --------------------------------------------------------------------------------------------- config

@pytest.mark.parametrize(("credentials", "key_path"), [
    ({}, "channels.ep.credentials.private_key"),
    ({"private_key": "env:EPAY_PRIVATE_KEY"}, "channels.ep.credentials.platform_public_key"),
    ({"private_key": "env:NOT_SET", "platform_public_key": "env:EPAY_PLATFORM_KEY"},
     "channels.ep.credentials.private_key"),
])
def test_missing_credentials_name_the_key(panel: tuple[Sandbox, EpaySandbox], monkeypatch: pytest.MonkeyPatch,
                                          credentials: dict[str, str], key_path: str) -> None:
    sandbox, channel = panel
    with pytest.raises(ConfigError) as caught:
        make(sandbox, channel, monkeypatch, credentials=credentials)
    assert caught.value.key == key_path
    assert sandbox.requests == []


def test_a_key_that_is_not_a_key_is_named_without_being_shown(panel: tuple[Sandbox, EpaySandbox],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, channel = panel
    broken = MERCHANT_PRIVATE.replace("MII", "XYZ", 1)
    with pytest.raises(ConfigError) as caught:
        make(sandbox, channel, monkeypatch, private=broken)
    assert caught.value.key == "channels.ep.credentials.private_key"
    assert all(fragment not in str(caught.value) for fragment in secret_fragments(broken))


# --------------------------------------------------------------------------------------------- signing

# A request of api/pay/query as the client builds it, and its sign content written out by hand from
# §3.3: sign and sign_type and the empty param are left out, keys in byte order, raw (not URL-encoded).
VECTOR = {"pid": "1001", "out_trade_no": "20240301120000001", "timestamp": "1709265600", "type": "alipay",
          "name": "VIP会员", "money": "1.00", "param": "", "sign_type": "RSA", "sign": "ignored"}
VECTOR_CONTENT = ("money=1.00&name=VIP会员&out_trade_no=20240301120000001&pid=1001&timestamp=1709265600"
                  "&type=alipay")


def test_v2_request_signature_verifies_with_cryptography_directly() -> None:
    assert sign_string(VECTOR) == VECTOR_CONTENT
    sign = rsa_sign(VECTOR, MERCHANT)
    MERCHANT.public_key().verify(base64.b64decode(sign), VECTOR_CONTENT.encode("utf-8"), padding.PKCS1v15(),
                                 hashes.SHA256())  # raises InvalidSignature when not
    assert sign == rsa_sign(VECTOR, MERCHANT)  # PKCS#1 v1.5 is deterministic
    assert rsa_verify(VECTOR_CONTENT, sign, MERCHANT.public_key())
    assert not rsa_verify(VECTOR_CONTENT.replace("1.00", "1"), sign, MERCHANT.public_key())
    assert not rsa_verify(VECTOR_CONTENT, "not base64!", MERCHANT.public_key())


def test_the_request_on_the_wire_carries_the_signed_fields(panel: tuple[Sandbox, EpaySandbox],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox, channel = panel
    sent: list[dict[str, str]] = []
    fetcher = make(sandbox, channel, monkeypatch)
    request = fetcher.session.session.request

    def spy(method: str, url: str, **kwargs: Any) -> requests.Response:
        sent.append(dict(kwargs["data"]))
        return request(method, url, **kwargs)

    monkeypatch.setattr(fetcher.session.session, "request", spy)
    fetcher.query("D001")
    [form] = sent
    assert form["pid"] == PID and form["sign_type"] == "RSA" and form["out_trade_no"] == "D001"
    assert abs(int(form["timestamp"]) - datetime.now(UTC).timestamp()) < 60
    content = f"out_trade_no=D001&pid={PID}&timestamp={form['timestamp']}"
    MERCHANT.public_key().verify(base64.b64decode(form["sign"]), content.encode("utf-8"), padding.PKCS1v15(),
                                 hashes.SHA256())


def test_answer_sign_strings_follow_php() -> None:
    answer = {"code": 0, "msg": "succ", "money": Decimal("10.0"), "refundmoney": Decimal("0"), "ok": True,
              "data": [{"trade_no": "1"}], "param": None, "sign": "s", "sign_type": "RSA"}
    assert answer_sign_strings(answer) == [
        "code=0&money=10.0&msg=succ&ok=1&refundmoney=0",  # as received
        "code=0&money=10&msg=succ&ok=1&refundmoney=0",  # PHP float rendering
        "money=10&msg=succ&ok=1",  # PHP 7 loose empty check drops numeric zeros
    ]
