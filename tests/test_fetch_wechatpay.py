"""WeChat Pay v3 client against the local sandbox over real HTTP, cross-checked with the wechatpayv3 SDK."""

from __future__ import annotations

import gzip
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from cryptography.hazmat.primitives import serialization
from wechatpayv3 import utils as sdk
from wechatpayv3.core import Core

from fetchers import FETCHERS
from fetchers import wechatpay_sign as ws
from fetchers.base import CANONICAL_SCHEMA
from fetchers.http import ChannelSession
from fetchers.sandbox import Payment, Refund, Sandbox
from fetchers.sandbox.wechatpay import WechatPaySandbox
from fetchers.wechatpay import parse
from fetchers.wechatpay_api import WechatPayFetcher
from recon.config import ChannelConfig
from recon.errors import ConfigError, FetchError, NotReady, ReconError, SignatureError, TransientFetchError

SH = ZoneInfo("Asia/Shanghai")
DAY = date(2024, 5, 1)
FIXTURES = Path(__file__).parent / "fixtures"
APIV3_KEY = "ECHOEDAPIV3KEY0123456789ABCDEFGH"


def at(hour: int, minute: int, second: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=SH)


def payments() -> list[Payment]:
    """Three payments of DAY (one with a comma in its product name, one at 23:59:59), a same-day partial
    refund, the refund of the previous day's payment, an unpaid order and a payment of the next day."""
    return [
        Payment("S1001", Decimal("10.00"), "4200002024050100000000001", at(9, 0, 5), extra={"description": "月卡,VIP会员"}),
        Payment("S1002", Decimal("25.50"), "4200002024050100000000002", at(12, 30),
                refunds=[Refund("50300002024050100000000001", Decimal("5.50"), at(15, 0))]),
        Payment("S1003", Decimal("99.99"), "4200002024050100000000003", at(23, 59, 59)),
        Payment("S0999", Decimal("30.00"), "4200002024043000000000009", at(20, 0, day=DAY - timedelta(days=1)),
                refunds=[Refund("50300002024050100000000002", Decimal("30.00"), at(10, 0))]),
        Payment("S1004", Decimal("8.00"), "", at(13, 0), status="unpaid"),
        Payment("S1005", Decimal("8.00"), "4200002024050200000000005", at(0, 0, 1, day=DAY + timedelta(days=1))),
    ]


@dataclass
class Env:
    module: WechatPaySandbox
    server: Sandbox
    channel: ChannelConfig
    session: ChannelSession
    sleeps: list[float]
    keys: Path

    def fetcher(self) -> WechatPayFetcher:
        return WechatPayFetcher(self.channel, self.session)


def channel_for(module: WechatPaySandbox, server: Sandbox, keys: Path, *, api: dict[str, str] | None = None,
                credentials: dict[str, str] | None = None) -> ChannelConfig:
    keys.mkdir(exist_ok=True)
    (keys / "apiclient_key.pem").write_text(module.merchant_private_pem, encoding="utf-8")
    (keys / "platform_pub.pem").write_text(module.platform_public_pem, encoding="utf-8")
    return ChannelConfig(
        id="wx", kind="wechatpay", api_base=server.url("/wechatpay"),
        api=api if api is not None else {"mchid": module.mchid, "serial_no": module.merchant_serial,
                                         "platform_serial": module.platform_serial},
        credentials=credentials if credentials is not None else {
            "private_key": f"file:{keys / 'apiclient_key.pem'}",
            "platform_public_key": f"file:{keys / 'platform_pub.pem'}",
            "apiv3_key": "env:WX_APIV3_KEY"},
    )


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[WechatPaySandbox, Sandbox]]:
    """One server and one set of keys for the module (a server takes 0.5 s to stop, a key pair 0.1 s to make)."""
    module = WechatPaySandbox()
    with Sandbox(module) as server:
        yield module, server


@pytest.fixture
def env(served: tuple[WechatPaySandbox, Sandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    module, server = served
    module.payments = payments()
    module.echo, module.reject_with, module.sign_with_certificate_serial = None, None, False
    server.faults.clear()
    server.requests.clear()
    monkeypatch.setenv("WX_APIV3_KEY", APIV3_KEY)
    channel = channel_for(module, server, tmp_path / "keys")
    sleeps: list[float] = []
    session = ChannelSession("wx", secrets=channel.secret_values(), sleep=sleeps.append, read_timeout=1.0)
    return Env(module, server, channel, session, sleeps, tmp_path / "keys")


def paths(env: Env) -> list[str]:
    return [path.split("?")[0].removeprefix("/wechatpay") for _, path in env.server.requests]


# ---------------------------------------------------------------------------------------------- fetch


def test_fetch_of_a_day_parses_into_the_expected_canonical_rows(env: Env) -> None:
    fetched = env.fetcher().fetch(DAY)

    assert len(fetched) == 1
    bill = fetched[0]
    assert bill.name == f"wechatpay_{env.module.mchid}_2024-05-01_ALL.csv"
    assert (bill.source, bill.period, bill.rows) == ("api:/v3/bill/tradebill", (DAY, DAY), None)
    assert bill.raw is not None and bill.raw.startswith(b"\xef\xbb\xbf") and bill.raw.endswith(b"\r\n")
    assert paths(env) == ["/v3/bill/tradebill", "/v3/billdownload/file"]
    assert "bill_date=2024-05-01&bill_type=ALL&tar_type=GZIP" in env.server.requests[0][1]

    parsed = parse(Path(bill.name), bill.raw, env.channel)
    rows = parsed.rows
    assert parsed.merchant_id == env.module.mchid
    by_kind = rows.group_by("kind").agg(n=pl.len(), amount=pl.col("amount").sum(), fee=pl.col("fee").sum()).sort("kind")
    assert by_kind.to_dicts() == [
        {"kind": "payment", "n": 3, "amount": Decimal("135.49"), "fee": Decimal("0.81")},  # 0.06 + 0.15 + 0.60
        {"kind": "refund", "n": 2, "amount": Decimal("-35.50"), "fee": Decimal("-0.21")},  # fee returned: 0.03 + 0.18
    ]
    payments_ = rows.filter(kind="payment").sort("order_no")
    assert payments_["order_no"].to_list() == ["S1001", "S1002", "S1003"]  # unpaid and next-day orders are absent
    assert payments_["amount"].to_list() == [Decimal("10.00"), Decimal("25.50"), Decimal("99.99")]
    assert payments_["business_date"].to_list() == [DAY, DAY, DAY]  # 23:59:59 Beijing time is still DAY
    assert payments_["occurred_at"][2] == at(23, 59, 59)
    refunds = rows.filter(kind="refund").sort("refund_id")
    assert refunds.select("order_no", "refund_id", "amount").rows() == [
        ("S1002", "50300002024050100000000001", Decimal("-5.50")),
        ("S0999", "50300002024050100000000002", Decimal("-30.00")),
    ]
    assert set(rows["status"]) == {"success"} and set(rows["currency"]) == {"CNY"}


def test_sandbox_writes_the_bill_byte_for_byte_like_the_real_one() -> None:
    real = (FIXTURES / "wechat_v3_tradebill_ALL_2021-01-28.csv").read_bytes()
    extra = {"openid": "ofyak5qR_1wYsC99CsWA6R9MJazA", "description": "for testing", "attach": "cipher code",
             "rate": "1.00%"}
    sample = [(17, 7, 11, "4200000925202101284997714292", "S20210128170702357723"),
              (15, 35, 18, "4200000910202101282955148400", "S20210128153505214586"),
              (16, 59, 46, "4200000926202101281412639609", "S20210128165824499930")]
    module = WechatPaySandbox(
        [Payment(order, Decimal("0.01"), txn, at(h, m, s, date(2021, 1, 28)), fee=Decimal(0), extra=extra)
         for h, m, s, txn, order in sample], mchid="1601959334", appid="wx81be3101902f7cb2")

    bill = module.tradebill(date(2021, 1, 28))

    assert bill == real
    assert hashlib.sha1(bill).hexdigest() == "dcd7ceb3d382a1181798368bb15d8437de46c00f"  # published hash_value


def test_a_day_without_trades_is_an_empty_complete_day(env: Env) -> None:
    fetched = env.fetcher().fetch(date(2024, 4, 1))

    assert len(fetched) == 1
    assert fetched[0].raw is None and fetched[0].period == (date(2024, 4, 1), date(2024, 4, 1))
    assert fetched[0].rows is not None and fetched[0].rows.is_empty()
    assert fetched[0].rows.schema == pl.Schema(CANONICAL_SCHEMA)


def test_a_bill_still_being_generated_is_not_ready(env: Env) -> None:
    env.server.add_fault("not_ready")

    with pytest.raises(NotReady, match="STATEMENT_CREATING") as caught:
        env.fetcher().fetch(DAY)
    assert caught.value.retryable


def test_the_registry_builds_this_client(env: Env) -> None:
    assert isinstance(FETCHERS["wechatpay"](env.channel, env.session), WechatPayFetcher)


# ---------------------------------------------------------------------------------------------- query


@pytest.mark.parametrize(("status", "trade_state", "state", "note"), [
    ("paid", None, "paid", ""),
    ("unpaid", None, "unpaid", ""),
    ("closed", None, "closed", ""),
    ("paid", "REVOKED", "closed", ""),
    ("unpaid", "USERPAYING", "unpaid", "USERPAYING"),
    ("unpaid", "PAYERROR", "unpaid", "支付失败"),
    ("paid", "SOMETHING_NEW", "unknown", "unknown trade_state"),
])
def test_query_maps_each_trade_state(env: Env, status: str, trade_state: str | None, state: str, note: str) -> None:
    extra = {"trade_state": trade_state} if trade_state else {}
    env.module.payments.append(Payment("Q1", Decimal("12.34"), "4200009999", at(11, 22, 33), status=status,
                                       extra=extra))

    result = env.fetcher().query("Q1")

    assert (result.channel, result.order_no, result.state) == ("wx", "Q1", state)
    assert result.raw_status == (trade_state or {"paid": "SUCCESS", "unpaid": "NOTPAY", "closed": "CLOSED"}[status])
    assert result.amount == Decimal("12.34") and str(result.amount) == "12.34"  # 1234 fen
    assert result.currency == "CNY"
    assert note in result.note
    if result.raw_status == "SUCCESS":
        assert result.channel_txn_id == "4200009999"
        assert result.paid_at == at(11, 22, 33) and result.paid_at.utcoffset() == timedelta(hours=8)
    if result.raw_status == "NOTPAY":
        assert result.channel_txn_id is None and result.paid_at is None


def test_query_of_a_refunded_order_and_of_an_unknown_one(env: Env) -> None:
    refunded = env.fetcher().query("S1002")
    missing = env.fetcher().query("NO-SUCH-ORDER")

    assert (refunded.state, refunded.raw_status, refunded.amount) == ("refunded", "REFUND", Decimal("25.50"))
    assert refunded.channel_txn_id == "4200002024050100000000002"
    assert (missing.state, missing.raw_status, missing.amount) == ("not_found", "ORDER_NOT_EXIST", None)


# ---------------------------------------------------------------------------------------------- faults


@pytest.mark.parametrize("fault", ["500", "429", "timeout", "reset", "slow_body"])
def test_transient_faults_are_retried_and_the_day_still_arrives(env: Env, fault: str) -> None:
    env.server.add_fault(fault, path="/wechatpay/v3/bill/tradebill")

    fetched = env.fetcher().fetch(DAY)

    assert fetched[0].raw is not None
    assert parse(Path(fetched[0].name), fetched[0].raw, env.channel).rows.height == 5
    if fault == "429":
        assert env.sleeps == [1.0]  # Retry-After honoured
    expected = 1 if fault == "slow_body" else 2  # a slow body within the read timeout is simply waited for
    assert paths(env).count("/v3/bill/tradebill") == expected


def test_persistent_server_errors_give_up_without_data(env: Env) -> None:
    env.server.add_fault("500", times=10)

    with pytest.raises(TransientFetchError, match="HTTP 500"):
        env.fetcher().fetch(DAY)
    assert len(env.session.attempts_log) == 4


def test_a_proxy_error_page_is_not_accepted(env: Env) -> None:
    env.server.add_fault("html")

    with pytest.raises(FetchError, match="not JSON"):
        env.fetcher().fetch(DAY)


@pytest.mark.parametrize("fault", ["bad_signature", "no_signature", "stale_timestamp"])
@pytest.mark.parametrize("call", ["fetch", "query", "empty_day", "not_found"])
def test_unverified_answers_are_refused(env: Env, fault: str, call: str) -> None:
    env.server.add_fault(fault)
    fetcher = env.fetcher()

    with pytest.raises(SignatureError, match="nothing of it is used"):
        if call == "fetch":
            fetcher.fetch(DAY)
        elif call == "empty_day":  # a forged "no bill" must not turn a day of payments into an empty day
            fetcher.fetch(date(2024, 4, 1))
        elif call == "query":
            fetcher.query("S1001")
        else:
            fetcher.query("NO-SUCH-ORDER")
    assert "/v3/billdownload/file" not in paths(env)


def test_answers_signed_by_an_unexpected_platform_key_are_refused(env: Env, tmp_path: Path) -> None:
    wrong_serial = channel_for(env.module, env.server, env.keys, api={
        "mchid": env.module.mchid, "serial_no": env.module.merchant_serial, "platform_serial": "PUB_KEY_ID_OTHER"})
    other = WechatPaySandbox()
    (tmp_path / "other_pub.pem").write_text(other.platform_public_pem, encoding="utf-8")
    wrong_key = channel_for(env.module, env.server, env.keys, credentials={
        "private_key": env.channel.credentials["private_key"].ref,
        "platform_public_key": f"file:{tmp_path / 'other_pub.pem'}"})

    with pytest.raises(SignatureError, match="another platform key"):
        WechatPayFetcher(wrong_serial, env.session).query("S1001")
    with pytest.raises(SignatureError, match="does not verify"):
        WechatPayFetcher(wrong_key, env.session).query("S1001")


@pytest.mark.parametrize("where", ["/wechatpay/v3/bill/tradebill", "/wechatpay/v3/billdownload"])
def test_a_bill_that_does_not_match_its_hash_is_refused(env: Env, where: str) -> None:
    env.server.add_fault("bad_hash", path=where)

    with pytest.raises(SignatureError, match="does not match its published SHA1"):
        env.fetcher().fetch(DAY)


def test_a_bill_of_another_merchant_is_refused(env: Env) -> None:
    env.server.add_fault("wrong_merchant")

    with pytest.raises(FetchError, match="another 商户号") as caught:
        env.fetcher().fetch(DAY)
    assert not isinstance(caught.value, SignatureError)


def test_an_order_answer_of_another_merchant_is_refused(env: Env) -> None:
    env.server.add_fault("wrong_merchant")

    with pytest.raises(FetchError, match="another 商户号"):
        env.fetcher().query("S1001")


def test_a_download_url_on_another_host_is_not_fetched(env: Env) -> None:
    env.server.add_fault("foreign_host")

    with pytest.raises(FetchError, match="another host"):
        env.fetcher().fetch(DAY)
    assert [url for _, url, _ in env.session.attempts_log if "wechatpay-sandbox.invalid" in url] == []


def test_other_refusals_name_status_and_code(env: Env) -> None:
    env.module.reject_with = (403, "NO_AUTH")

    with pytest.raises(FetchError, match=r"HTTP 403 NO_AUTH") as caught:
        env.fetcher().fetch(DAY)
    assert not isinstance(caught.value, NotReady | SignatureError)


def test_a_rejected_request_signature_says_what_to_check(env: Env) -> None:
    other = WechatPaySandbox()
    (env.keys / "apiclient_key.pem").write_text(other.merchant_private_pem, encoding="utf-8")

    with pytest.raises(FetchError, match=r"HTTP 401 SIGN_ERROR .*credentials.private_key"):
        env.fetcher().query("S1001")


def test_secrets_never_appear_in_errors_or_the_attempts_log_even_when_echoed(env: Env) -> None:
    private_pem = env.module.merchant_private_pem
    env.module.echo = private_pem + " " + APIV3_KEY
    messages: list[str] = []
    for code in ("PARAM_ERROR", APIV3_KEY):  # a server may even put a secret where the code belongs
        env.module.reject_with = (400, code)
        for call in (lambda f: f.fetch(DAY), lambda f: f.query("S1001")):
            with pytest.raises(ReconError) as caught:
                call(env.fetcher())
            messages.append(str(caught.value))
    env.module.reject_with = None
    env.server.add_fault("500", times=10)
    with pytest.raises(ReconError) as caught:
        env.fetcher().query("S1001")
    messages.append(str(caught.value))

    assert any("PARAM_ERROR" in m for m in messages) and any("***" in m for m in messages)
    logged = json.dumps(env.session.attempts_log)
    for secret in (private_pem.strip(), APIV3_KEY, private_pem.splitlines()[1]):
        assert all(secret not in m for m in messages)
        assert secret not in logged


# ---------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(("drop", "key_path"), [
    ("api.mchid", "channels.wx.api.mchid"),
    ("api.serial_no", "channels.wx.api.serial_no"),
    ("api.platform_serial", "channels.wx.api.platform_serial"),
    ("credentials.private_key", "channels.wx.credentials.private_key"),
    ("credentials.platform_public_key", "channels.wx.credentials.platform_public_key"),
])
def test_missing_settings_are_config_errors_naming_the_key(env: Env, drop: str, key_path: str) -> None:
    section, key = drop.split(".")
    api = {k: v for k, v in env.channel.api.items() if drop != f"api.{k}"}
    credentials = {k: v.ref for k, v in env.channel.credentials.items() if drop != f"credentials.{k}"}
    channel = channel_for(env.module, env.server, env.keys, api=api, credentials=credentials)

    with pytest.raises(ConfigError) as caught:
        WechatPayFetcher(channel, env.session)
    assert caught.value.key == key_path and key_path in str(caught.value)


def test_a_key_file_that_is_not_a_pem_key_is_a_config_error_without_its_content(env: Env) -> None:
    (env.keys / "apiclient_key.pem").write_text("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcw-not-a-key", encoding="utf-8")

    with pytest.raises(ConfigError, match="channels.wx.credentials.private_key") as caught:
        env.fetcher()
    assert "MIIEvQ" not in str(caught.value)


def test_a_platform_certificate_works_instead_of_a_public_key(env: Env) -> None:
    (env.keys / "platform_cert.pem").write_text(env.module.platform_certificate_pem, encoding="utf-8")
    channel = channel_for(env.module, env.server, env.keys,
                          api={"mchid": env.module.mchid, "serial_no": env.module.merchant_serial},
                          credentials={"private_key": env.channel.credentials["private_key"].ref,
                                       "platform_public_key": f"file:{env.keys / 'platform_cert.pem'}"})
    env.module.sign_with_certificate_serial = True

    assert WechatPayFetcher(channel, env.session).query("S1001").state == "paid"


# ---------------------------------------------------------------------------------------------- SDK


def test_our_authorization_is_the_sdks_and_verifies_with_it(env: Env) -> None:
    private_key = sdk.load_private_key(env.module.merchant_private_pem)
    public_key = sdk.load_public_key(env.module.merchant_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii"))
    path = "/v3/bill/tradebill?bill_date=2024-05-01&bill_type=ALL&tar_type=GZIP"
    theirs = sdk.build_authorization(path, "GET", env.module.mchid, env.module.merchant_serial, private_key,
                                     nonce_str="593BEC0C930BF1AFEB40B4A08C8FB242")
    parsed = ws.parse_authorization(theirs)
    assert parsed is not None

    ours = ws.authorization(ws.load_private_key(env.module.merchant_private_pem, "k"), env.module.mchid,
                            env.module.merchant_serial, "GET", path, int(parsed.timestamp), parsed.nonce)

    assert ours == theirs
    message = ws.request_message("GET", path, parsed.timestamp, parsed.nonce)
    signature = ws.parse_authorization(ours).signature  # type: ignore[union-attr]
    assert signature == sdk.rsa_sign(private_key, message)
    # rsa_verify builds "a\nb\nc\n"; the request string is "GET\npath\nts\nnonce\n\n".
    assert sdk.rsa_verify("GET", path, f"{parsed.timestamp}\n{parsed.nonce}\n", signature, public_key)
    assert not sdk.rsa_verify("POST", path, f"{parsed.timestamp}\n{parsed.nonce}\n", signature, public_key)


def sdk_core(env: Env) -> Core:
    """The SDK's client, in 微信支付公钥 mode, pointed at the sandbox (paths then carry the /wechatpay prefix)."""
    core = Core(mchid=env.module.mchid, cert_serial_no=env.module.merchant_serial,
                private_key=env.module.merchant_private_pem, apiv3_key=APIV3_KEY,
                public_key=env.module.platform_public_pem, public_key_id=env.module.platform_serial)
    core._gate_way = env.server.base_url
    return core


def test_the_sdk_talks_to_the_sandbox_and_verifies_its_answers(env: Env) -> None:
    core = sdk_core(env)

    code, text = core.request(f"/wechatpay/v3/pay/transactions/out-trade-no/S1001?mchid={env.module.mchid}")
    assert code == 200 and json.loads(text)["amount"]["total"] == 1000
    code, text = core.request("/wechatpay/v3/bill/tradebill?bill_date=2024-05-01&bill_type=ALL&tar_type=GZIP")
    info = json.loads(text)
    code, content = core.request(info["download_url"].removeprefix(env.server.base_url), skip_verify=True)
    assert code == 200
    assert hashlib.sha1(gzip.decompress(content)).hexdigest() == info["hash_value"]

    env.server.add_fault("bad_signature")
    with pytest.raises(Exception, match="failed to verify the signature"):
        core.request(f"/wechatpay/v3/pay/transactions/out-trade-no/S1001?mchid={env.module.mchid}")


def test_a_sandbox_answer_verifies_with_the_sdk_routine(env: Env) -> None:
    url = f"{env.channel.api_base}/v3/pay/transactions/out-trade-no/S1001?mchid={env.module.mchid}"
    assert env.session.request("GET", url, headers={"Authorization": "x"}).status_code == 401  # unsigned request
    auth = ws.authorization(ws.load_private_key(env.module.merchant_private_pem, "k"), env.module.mchid,
                            env.module.merchant_serial, "GET", url.removeprefix(env.server.base_url),
                            int(time.time()), ws.new_nonce())

    response = env.session.request("GET", url, headers={"Authorization": auth})

    assert response.status_code == 200
    assert sdk_core(env)._verify_signature(response.headers, response.text)
    assert not sdk_core(env)._verify_signature({**response.headers, "Wechatpay-Nonce": "0" * 32}, response.text)
