"""The Alipay client against the sandbox: bill download, order query, RSA2 both ways, cross-checked with the SDK.

The SDK is python-alipay-sdk (import name ``alipay``), the channel's public Python client: our request
signatures must verify with its code, its signatures must equal ours, and our sandbox's answers must
verify with its raw-substring rule. Its private helpers (``_sign``, ``_verify``, ``_ordered_data``,
``_get_string_to_be_signed``) are used on purpose: they are exactly the signing rules it applies.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qsl

import polars as pl
import pytest
import requests
from alipay import AliPay
from cryptography.hazmat.primitives import serialization

from fetchers import CANONICAL_SCHEMA, FETCHERS, alipay_sign
from fetchers.alipay import parse
from fetchers.alipay_api import CLOSED_NOTE, AlipayFetcher
from fetchers.http import ChannelSession
from fetchers.sandbox import Payment, Refund, Sandbox
from fetchers.sandbox.alipay import AlipaySandbox, new_key, private_pem, public_pem
from fetchers.statement_zip import UTF8_NAME_FLAG, entry_name
from recon.config import ChannelConfig
from recon.errors import ConfigError, FetchError, NotReady, SignatureError, TransientFetchError

BJ = timezone(timedelta(hours=8))
DAY = date(2024, 1, 1)
# Noon Beijing time two days later: the bill of DAY is long published.
LATER = datetime(2024, 1, 3, 12, 0, tzinfo=BJ)
APP_ID = "2021000000000001"
ACCOUNT = "20881234567890120156"


@dataclass(frozen=True)
class Keys:
    app: str  # the app's private key, PKCS#8 PEM
    alipay: str  # Alipay's private key (the sandbox signs with it)
    app_public: str
    alipay_public: str


@pytest.fixture(scope="module")
def keys() -> Keys:
    app, ali = new_key(), new_key()
    return Keys(private_pem(app), private_pem(ali), public_pem(app), public_pem(ali))


def payments() -> list[Payment]:
    return [
        Payment("SO-1001", Decimal("30.00"), "2024010122001400001", datetime(2024, 1, 1, 10, 0, 5, tzinfo=BJ),
                fee=Decimal("0.18"), extra={"subject": "月卡, 30 天", "store_id": "S1", "store_name": "一号店"}),
        Payment("SO-1002", Decimal("9.90"), "2024010122001400002", datetime(2024, 1, 1, 23, 59, 59, tzinfo=BJ),
                refunds=[Refund("RF-1", Decimal("9.90"), datetime(2024, 1, 1, 23, 59, 59, 500000, tzinfo=BJ))]),
        Payment("SO-1003", Decimal("5.00"), "2024010122001400003", datetime(2024, 1, 2, 0, 0, 1, tzinfo=BJ),
                refunds=[Refund("RF-2", Decimal("1.00"), datetime(2024, 1, 2, 8, 0, tzinfo=BJ))]),
        Payment("SO-1004", Decimal("12.00"), "2024010122001400004", datetime(2024, 1, 1, 9, 0, tzinfo=BJ),
                status="unpaid"),
        Payment("SO-1005", Decimal("12.00"), "2024010122001400005", datetime(2024, 1, 1, 9, 0, tzinfo=BJ),
                status="closed"),
        Payment("SO-1006", Decimal("88.00"), "2024010122001400006", datetime(2024, 1, 1, 11, 0, tzinfo=BJ),
                extra={"trade_status": "TRADE_FINISHED"}),
    ]


@dataclass
class Env:
    server: Sandbox
    alipay: AlipaySandbox
    folder: Path
    keys: Keys

    def channel(self, **changes: object) -> ChannelConfig:
        (self.folder / "app.pem").write_text(self.keys.app, encoding="utf-8")
        (self.folder / "alipay_pub.pem").write_text(self.keys.alipay_public, encoding="utf-8")
        values: dict[str, object] = {
            "id": "ali", "kind": "alipay", "api": {"app_id": APP_ID},
            "api_base": self.server.url("/alipay") + "/gateway.do",
            "credentials": {"private_key": f"file:{self.folder / 'app.pem'}",
                            "alipay_public_key": f"file:{self.folder / 'alipay_pub.pem'}"},
        }
        return ChannelConfig(**{**values, **changes})

    def fetcher(self, now: datetime = LATER, **changes: object) -> AlipayFetcher:
        session = ChannelSession("ali", sleep=lambda _: None, read_timeout=2.0)
        return AlipayFetcher(self.channel(**changes), session, clock=lambda: now)


@pytest.fixture(scope="module")
def server() -> Iterator[Sandbox]:
    # One server for the module (stopping one takes half a second); each test gets a fresh Alipay behind it.
    with Sandbox() as running:
        yield running


@pytest.fixture
def env(tmp_path: Path, keys: Keys, server: Sandbox) -> Env:
    alipay = AlipaySandbox(payments(), app_id=APP_ID, account=ACCOUNT, app_private_key=keys.app,
                           alipay_private_key=keys.alipay)
    server.channels = {alipay.prefix: alipay}
    server.faults.clear()
    server.requests.clear()
    return Env(server, alipay, tmp_path, keys)


# -- fetch: the day's bill ---------------------------------------------------------------------------


def test_registry_names_the_alipay_client() -> None:
    assert FETCHERS["alipay"] is AlipayFetcher


def test_fetch_downloads_the_days_zip_and_the_parser_reads_it(env: Env) -> None:
    fetcher = env.fetcher()
    [statement] = fetcher.fetch(DAY)
    assert statement.name == f"alipay_{APP_ID}_2024-01-01_trade.zip"
    assert statement.source == "api:alipay.data.dataservice.bill.downloadurl.query"
    assert statement.period == (DAY, DAY) and statement.rows is None
    assert statement.raw is not None and statement.raw[:2] == b"PK"
    # One signed gateway call, then the link fetched at once through the same session.
    assert [(m, outcome) for m, _, outcome in fetcher.session.attempts_log] == [("POST", "200"), ("GET", "200")]
    parsed = parse(Path(statement.name), statement.raw, env.channel())
    assert parsed.merchant_id == ACCOUNT and parsed.period == (DAY, DAY)
    rows = parsed.rows.sort("line_no")
    assert rows.select("kind", "order_no", "channel_txn_id", "refund_id").rows() == [
        ("payment", "SO-1001", "2024010122001400001", None),
        ("payment", "SO-1006", "2024010122001400006", None),
        ("payment", "SO-1002", "2024010122001400002", None),
        ("refund", "SO-1002", "2024010122001400002", "RF-1"),
    ]
    assert rows["amount"].to_list() == [Decimal(30), Decimal(88), Decimal("9.9"), Decimal("-9.9")]
    assert rows["fee"].to_list()[0] == Decimal("0.18")
    assert rows["occurred_at"].to_list()[0] == datetime(2024, 1, 1, 2, 0, 5, tzinfo=UTC)
    assert set(rows["business_date"].to_list()) == {DAY}


def test_the_next_day_holds_the_late_payment_and_its_refund(env: Env) -> None:
    [statement] = env.fetcher().fetch(DAY + timedelta(days=1))
    assert statement.raw is not None
    rows = parse(Path(statement.name), statement.raw, env.channel()).rows.sort("line_no")
    assert rows.select("kind", "order_no", "amount").rows() == [
        ("payment", "SO-1003", Decimal(5)), ("refund", "SO-1003", Decimal(-1))]


def test_bill_zip_has_gbk_names_without_the_utf8_flag_and_the_documented_layout(env: Env) -> None:
    [statement] = env.fetcher().fetch(DAY)
    assert statement.raw is not None
    archive = zipfile.ZipFile(io.BytesIO(statement.raw))
    infos = archive.infolist()
    assert all(i.flag_bits & UTF8_NAME_FLAG == 0 for i in infos)
    assert [entry_name(i) for i in infos] == [f"{ACCOUNT}_20240101_业务明细.csv", f"{ACCOUNT}_20240101_业务明细(汇总).csv"]
    assert infos[0].filename != entry_name(infos[0]), "zipfile should see cp437 mojibake, as with the real bill"
    detail = archive.read(infos[0]).decode("gbk").split("\n")
    assert detail[:4] == [
        "#支付宝业务明细查询", f"#账号：[{ACCOUNT}]", "#起始日期：[2024年01月01日 00:00:00]   终止日期：[2024年01月02日 00:00:00]",
        "#" + "-" * 41 + "业务明细列表" + "-" * 40]
    header = detail[4].split(",")
    assert len(header) == 25 and "订单金额（元）" in header and "退款批次号/请求号" in header
    first = detail[5]
    assert first.startswith("2024010122001400001\t,SO-1001\t,交易\t,\"月卡, 30 天\",2024-01-01 10:00:05,")
    assert ",S1\t,一号店\t," in first and ",-0.18,0.00," in first
    assert detail[9:] == [
        "#" + "-" * 41 + "业务明细列表结束" + "-" * 36,
        "#交易合计：3笔，商家实收共127.90元，商家优惠共0.00元",
        "#退款合计：1笔，商家实收退款共-9.90元，商家优惠退款共0.00元",
        "#导出时间：[2024年01月02日 05:46:00]", ""]
    summary = archive.read(infos[1]).decode("gbk").split("\n")
    assert summary[0] == "#支付宝业务汇总查询" and summary[3] == "#" + "-" * 41 + "业务汇总列表" + "-" * 40
    assert summary[-4].startswith("合计,,3,1,118.00,118.00,") and summary[-4].endswith(",-0.18,0.00,117.82")
    assert summary[-3] == "#" + "-" * 40 + "业务汇总列表结束" + "-" * 37
    with pytest.raises(Exception, match="summary file"):
        parse(Path("s.csv"), archive.read(infos[1]), env.channel())


def test_a_day_without_trades_is_an_empty_complete_day(env: Env) -> None:
    quiet = date(2023, 12, 1)
    [statement] = env.fetcher().fetch(quiet)
    assert statement.raw is None and statement.period == (quiet, quiet)
    assert statement.rows is not None and statement.rows.is_empty()
    assert statement.rows.schema == pl.Schema(CANONICAL_SCHEMA)


def test_bill_not_exist_is_matched_in_any_case(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(env.alipay, "_bill_url", lambda biz, request: {
        "code": "40004", "msg": "Business Failed", "sub_code": "ISP.BILL_NOT_EXIST", "sub_msg": "账单不存在"})
    [statement] = env.fetcher().fetch(DAY)
    assert statement.rows is not None and statement.rows.is_empty()


def test_before_ten_next_morning_a_missing_bill_is_not_ready(env: Env) -> None:
    early = datetime(2023, 12, 2, 8, 30, tzinfo=BJ)
    with pytest.raises(NotReady, match="2023-12-02 10:00"):
        env.fetcher(now=early).fetch(date(2023, 12, 1))
    env.server.add_fault("not_ready")
    with pytest.raises(NotReady):
        env.fetcher(now=datetime(2024, 1, 2, 9, 59, tzinfo=BJ)).fetch(DAY)


def test_after_ten_alipay_cannot_tell_not_ready_from_empty(env: Env) -> None:
    # Alipay answers bill_not_exist for both; past the publication hour it is taken as a day without trades.
    env.server.add_fault("not_ready")
    [statement] = env.fetcher().fetch(DAY)
    assert statement.rows is not None and statement.rows.is_empty()


def test_today_and_the_future_are_not_ready_without_asking(env: Env) -> None:
    fetcher = env.fetcher(now=datetime(2024, 1, 1, 23, 0, tzinfo=BJ))
    for day in (DAY, DAY + timedelta(days=3)):
        with pytest.raises(NotReady):
            fetcher.fetch(day)
    assert env.server.requests == []


def test_a_link_to_a_foreign_host_is_not_followed(env: Env) -> None:
    env.server.add_fault("foreign_host")
    fetcher = env.fetcher()
    with pytest.raises(FetchError, match="127.0.0.2"):
        fetcher.fetch(DAY)
    assert [m for m, _, _ in fetcher.session.attempts_log] == ["POST"]


@pytest.mark.parametrize(("gateway", "link", "allowed"), [
    ("https://openapi.alipay.com/gateway.do", "https://dwbillcenter.alipay.com/downloadBillFile.resource?x=1", True),
    ("https://openapi.alipay.com/gateway.do", "http://dwbillcenter.alipay.com/downloadBillFile.resource", False),
    ("https://openapi.alipay.com/gateway.do", "https://dwbillcenter.alipay.com.evil.example/x", False),
    ("https://openapi.alipay.com/gateway.do", "https://evilalipay.com/x", False),
    ("https://openapi-sandbox.dl.alipaydev.com/gateway.do", "https://dwbillcenter.alipaydev.com/x", True),
    ("http://127.0.0.1:8000/alipay/gateway.do", "http://127.0.0.1:8000/alipay/downloadBillFile.resource", True),
    ("http://127.0.0.1:8000/alipay/gateway.do", "http://127.0.0.1:8001/alipay/downloadBillFile.resource", False),
    ("http://127.0.0.1:8000/alipay/gateway.do", "http://localhost:8000/alipay/downloadBillFile.resource", False),
    ("http://127.0.0.1:8000/alipay/gateway.do", "file:///etc/passwd", False),
])
def test_bill_link_host_rule(env: Env, gateway: str, link: str, allowed: bool) -> None:
    fetcher = env.fetcher(api_base=gateway)
    if allowed:
        fetcher._check_link(link)
    else:
        with pytest.raises(FetchError, match="refused"):
            fetcher._check_link(link)


def test_api_base_may_be_the_gateway_or_its_folder(env: Env) -> None:
    assert env.fetcher(api_base=env.server.url("/alipay")).gateway == env.server.url("/alipay") + "/gateway.do"
    assert AlipayFetcher(env.channel(api_base=None), ChannelSession("ali")).gateway == \
        "https://openapi.alipay.com/gateway.do"


def test_another_merchants_bill_is_refused_by_the_fetcher(env: Env) -> None:
    env.server.add_fault("wrong_merchant")
    with pytest.raises(FetchError, match="merchant 20889999999999990156, but the channel is merchant"):
        env.fetcher(merchant_id=ACCOUNT).fetch(DAY)


def test_merchant_id_may_be_the_pid_or_the_bill_account(env: Env) -> None:
    for merchant in (ACCOUNT, ACCOUNT.removesuffix("0156")):
        [statement] = env.fetcher(merchant_id=merchant).fetch(DAY)
        assert statement.raw is not None
    with pytest.raises(FetchError, match="merchant"):
        env.fetcher(merchant_id="2088000000000000").fetch(DAY)


def test_without_a_configured_merchant_the_bill_names_its_own(env: Env) -> None:
    env.server.add_fault("wrong_merchant")
    [statement] = env.fetcher().fetch(DAY)
    assert statement.raw is not None
    assert parse(Path(statement.name), statement.raw, env.channel()).merchant_id == "20889999999999990156"


def test_a_damaged_zip_is_refused(env: Env) -> None:
    env.server.add_fault("bad_hash")
    with pytest.raises(FetchError, match="unusable"):
        env.fetcher().fetch(DAY)


def test_an_expired_link_is_an_error_saying_so(env: Env) -> None:
    ticks = iter(range(0, 1000, 31))
    env.alipay._clock = lambda: float(next(ticks))
    with pytest.raises(FetchError, match="HTTP 403.*30 s"):
        env.fetcher().fetch(DAY)


def test_5xx_is_retried_then_the_bill_comes(env: Env) -> None:
    env.server.add_fault("500", times=2, path="/alipay/gateway.do")
    fetcher = env.fetcher()
    [statement] = fetcher.fetch(DAY)
    assert statement.raw is not None
    assert [o for _, _, o in fetcher.session.attempts_log] == ["HTTP 500", "HTTP 500", "200", "200"]


def test_an_html_page_instead_of_json_is_transient(env: Env) -> None:
    env.server.add_fault("html", path="/alipay/gateway.do")
    with pytest.raises(TransientFetchError, match="HTML page"):
        env.fetcher().fetch(DAY)


@pytest.mark.parametrize("fault", ["bad_signature", "no_signature"])
def test_unverifiable_answers_are_refused(env: Env, fault: str) -> None:
    env.server.add_fault(fault, times=2)
    fetcher = env.fetcher()
    with pytest.raises(SignatureError):
        fetcher.fetch(DAY)
    with pytest.raises(SignatureError):
        fetcher.query("SO-1001")
    assert [m for m, _, _ in fetcher.session.attempts_log] == ["POST", "POST"], "no link followed"


# -- query ------------------------------------------------------------------------------------------


def test_query_paid(env: Env) -> None:
    result = env.fetcher().query("SO-1001")
    assert (result.channel, result.order_no, result.state, result.raw_status) == ("ali", "SO-1001", "paid",
                                                                                  "TRADE_SUCCESS")
    assert result.amount == Decimal("30.00") and isinstance(result.amount, Decimal)
    assert result.currency == "CNY"
    assert result.channel_txn_id == "2024010122001400001"
    assert result.paid_at == datetime(2024, 1, 1, 2, 0, 5, tzinfo=UTC)
    assert result.note == ""


def test_query_states(env: Env) -> None:
    fetcher = env.fetcher()
    finished = fetcher.query("SO-1006")
    assert (finished.state, finished.raw_status, finished.amount) == ("paid", "TRADE_FINISHED", Decimal("88.00"))
    partly_refunded = fetcher.query("SO-1003")
    assert (partly_refunded.state, partly_refunded.raw_status) == ("paid", "TRADE_SUCCESS")
    unpaid = fetcher.query("SO-1004")
    assert (unpaid.state, unpaid.raw_status, unpaid.paid_at) == ("unpaid", "WAIT_BUYER_PAY", None)
    for order in ("SO-1005", "SO-1002"):  # closed unpaid, and fully refunded: Alipay says the same
        closed = fetcher.query(order)
        assert (closed.state, closed.raw_status) == ("closed", "TRADE_CLOSED")
        assert closed.note == CLOSED_NOTE and "ambiguous" in closed.note and "refunded" in closed.note
    assert fetcher.query("SO-1002").paid_at == datetime(2024, 1, 1, 15, 59, 59, tzinfo=UTC)
    missing = fetcher.query("SO-404")
    assert (missing.state, missing.raw_status, missing.amount) == ("not_found", "ACQ.TRADE_NOT_EXIST", None)


def test_query_sends_out_trade_no_signed_in_beijing_time(env: Env) -> None:
    env.fetcher(now=datetime(2024, 1, 3, 1, 2, 3, tzinfo=UTC)).query("SO-1001")
    [sent] = env.alipay.received
    assert {k: v for k, v in sent.items() if k != "sign"} == {
        "app_id": APP_ID, "method": "alipay.trade.query", "format": "JSON", "charset": "utf-8",
        "sign_type": "RSA2", "timestamp": "2024-01-03 09:02:03", "version": "1.0",
        "biz_content": '{"out_trade_no":"SO-1001"}'}
    assert ("POST", "/alipay/gateway.do") in env.server.requests


@pytest.mark.parametrize(("code", "sub_code", "error"), [
    ("20000", "isp.unknow-error", TransientFetchError),
    ("40004", "ACQ.SYSTEM_ERROR", TransientFetchError),
    ("40002", "isv.invalid-parameter", FetchError),
    ("40004", "ACQ.INVALID_PARAMETER", FetchError),
])
def test_query_refusals_name_the_sub_code(env: Env, monkeypatch: pytest.MonkeyPatch, code: str, sub_code: str,
                                          error: type[FetchError]) -> None:
    monkeypatch.setattr(env.alipay, "_trade_query", lambda biz: {
        "code": code, "msg": "Failed", "sub_code": sub_code, "sub_msg": "出错了"})
    with pytest.raises(error, match=sub_code) as raised:
        env.fetcher().query("SO-1001")
    assert (type(raised.value) is TransientFetchError) == (error is TransientFetchError)


def test_an_answer_about_another_order_is_refused(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    real = env.alipay._trade_query
    monkeypatch.setattr(env.alipay, "_trade_query", lambda biz: real({"out_trade_no": "SO-1006"}))
    with pytest.raises(FetchError, match="answered about 'SO-1006'"):
        env.fetcher().query("SO-1001")


def test_gateway_refusals_are_unsigned_and_say_why(env: Env, tmp_path: Path) -> None:
    with pytest.raises(SignatureError, match="not signed.*isv.invalid-app-id"):
        env.fetcher(api={"app_id": "2021999999999999"}).query("SO-1001")
    other = tmp_path / "other.pem"
    other.write_text(private_pem(new_key()), encoding="utf-8")
    channel = env.channel(credentials={"private_key": f"file:{other}",
                                       "alipay_public_key": f"file:{env.folder / 'alipay_pub.pem'}"})
    with pytest.raises(SignatureError, match="isv.invalid-signature"):
        AlipayFetcher(channel, ChannelSession("ali"), clock=lambda: LATER).query("SO-1001")


def test_a_signed_error_response_is_verified_and_returned(env: Env) -> None:
    answer = env.fetcher().call("alipay.no.such.method", {})
    assert answer["sub_code"] == "isv.invalid-method"


# -- signatures -------------------------------------------------------------------------------------


def _signed(keys: Keys, key: str, inner: str, sign_first: bool = False) -> str:
    signature = alipay_sign.sign(alipay_sign.load_private_key(keys.alipay, "k"), inner)
    if sign_first:
        return f'{{"sign": "{signature}", "{key}" :\n {inner}\n}}'
    return f'{{"{key}":{inner},"sign":"{signature}"}}'


def test_the_raw_substring_is_verified_not_a_reserialisation(env: Env) -> None:
    fetcher = env.fetcher()
    # Unsorted keys, spaces, an escaped and an unescaped CJK string, braces and quotes inside strings.
    inner = ('{ "code":"10000", "msg":"Success", "trade_status":"TRADE_SUCCESS", "subject":"卡密 {VIP} \\"月\\" }",'
             ' "buyer":"\\u5f20*", "out_trade_no":"SO-1", "total_amount":"1.00", "trade_no":"T1"}')
    assert json.dumps(json.loads(inner), ensure_ascii=False, separators=(",", ":")) != inner
    for raw in (_signed(env.keys, "alipay_trade_query_response", inner),
                _signed(env.keys, "alipay_trade_query_response", inner, sign_first=True)):
        answer = fetcher.verified("alipay.trade.query", raw)
        assert answer["subject"] == '卡密 {VIP} "月" }' and answer["buyer"] == "张*"
    tampered = _signed(env.keys, "alipay_trade_query_response", inner).replace('"1.00"', '"9.00"')
    with pytest.raises(SignatureError, match="does not verify"):
        fetcher.verified("alipay.trade.query", tampered)


def test_a_repeated_response_key_is_refused(env: Env) -> None:
    inner = '{"code":"10000","out_trade_no":"SO-1","trade_status":"TRADE_SUCCESS"}'
    raw = _signed(env.keys, "alipay_trade_query_response", inner)
    doubled = raw[:-1] + ',"alipay_trade_query_response":{"code":"10000","trade_status":"TRADE_SUCCESS"}}'
    with pytest.raises(SignatureError, match="repeats"):
        env.fetcher().verified("alipay.trade.query", doubled)


@pytest.mark.parametrize("raw", ['{"alipay_trade_query_response":{"code":"10000"},"sign":"abc"} x', "[1]", ""])
def test_text_that_is_not_one_json_object_is_refused(env: Env, raw: str) -> None:
    with pytest.raises(TransientFetchError, match="not JSON"):
        env.fetcher().verified("alipay.trade.query", raw)


def test_key_formats_pkcs1_pkcs8_and_bare_base64_sign_alike(keys: Keys) -> None:
    key = alipay_sign.load_private_key(keys.app, "k")
    pkcs1 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption()).decode()
    bare = base64.b64encode(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())).decode()
    loaded = [alipay_sign.load_private_key(text, "k") for text in (keys.app, pkcs1, bare)]
    signatures = {alipay_sign.sign(k, "a=1&b=2") for k in loaded}
    assert len(signatures) == 1
    public_bare = "".join(keys.app_public.strip().splitlines()[1:-1])
    assert alipay_sign.verify(alipay_sign.load_public_key(public_bare, "k"), "a=1&b=2", signatures.pop())


@pytest.mark.parametrize("text", ["not a key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"])
def test_an_unreadable_key_names_its_config_key_and_not_its_value(env: Env, text: str) -> None:
    (env.folder / "bad.pem").write_text(text, encoding="utf-8")
    channel = env.channel(credentials={"private_key": f"file:{env.folder / 'bad.pem'}",
                                       "alipay_public_key": f"file:{env.folder / 'alipay_pub.pem'}"})
    with pytest.raises(ConfigError, match=r"channels\.ali\.credentials\.private_key") as raised:
        AlipayFetcher(channel, ChannelSession("ali"))
    assert text not in str(raised.value)


def test_a_certificate_for_the_public_key_is_explained(keys: Keys) -> None:
    with pytest.raises(ConfigError, match="公钥证书"):
        alipay_sign.load_public_key("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", "k")


def test_missing_app_id_or_key_names_the_key_path(env: Env) -> None:
    with pytest.raises(ConfigError, match=r"channels\.ali\.api\.app_id"):
        AlipayFetcher(env.channel(api={}), ChannelSession("ali"))
    with pytest.raises(ConfigError, match=r"channels\.ali\.credentials\.alipay_public_key"):
        AlipayFetcher(env.channel(credentials={"private_key": f"file:{env.folder / 'app.pem'}"}),
                      ChannelSession("ali"))


# -- cross-checks with python-alipay-sdk ------------------------------------------------------------


def sdk(keys: Keys, alipay_public: str) -> AliPay:
    return AliPay(appid=APP_ID, app_notify_url=None, app_private_key_string=keys.app,
                  alipay_public_key_string=alipay_public, sign_type="RSA2")


def test_sdk_verifies_the_signature_our_client_sent(env: Env) -> None:
    env.fetcher().query("SO-1001")
    env.fetcher().fetch(DAY)
    checker = sdk(env.keys, env.keys.app_public)  # verifying with the app's public key, as Alipay does
    assert len(env.alipay.received) == 2
    for sent in env.alipay.received:
        unsigned = {k: v for k, v in sent.items() if k != "sign"}
        message = "&".join(f"{k}={v}" for k, v in checker._ordered_data(unsigned))
        assert checker._verify(message, sent["sign"])
        assert not checker._verify(message + "&x=1", sent["sign"])


def test_sdk_signing_the_same_params_gives_our_signature(env: Env) -> None:
    fetcher = env.fetcher()
    signer = sdk(env.keys, env.keys.alipay_public)
    calls = (("alipay.trade.query", {"out_trade_no": "订单-1"}),
             ("alipay.data.dataservice.bill.downloadurl.query", {"bill_type": "trade", "bill_date": "2024-01-01"}))
    for method, biz in calls:
        params = fetcher.request_params(method, biz)
        ours = fetcher.sign(params)["sign"]
        sdk_sign = dict(parse_qsl(signer.sign_data(dict(params))))["sign"]
        assert sdk_sign == ours
        assert signer._sign(alipay_sign.signing_string(params)) == ours


def test_sdk_verifies_the_sandbox_answers_over_the_same_substring(env: Env) -> None:
    checker = sdk(env.keys, env.keys.alipay_public)
    gateway = env.server.url("/alipay") + "/gateway.do"
    cases = [("alipay.trade.query", {"out_trade_no": "SO-1001"}),
             ("alipay.trade.query", {"out_trade_no": "SO-404"}),
             ("alipay.data.dataservice.bill.downloadurl.query", {"bill_type": "trade", "bill_date": "2024-01-01"})]
    for method, biz in cases:
        # The request is built and signed by the SDK; the sandbox must accept it too.
        body = checker.sign_data(checker.build_body(method, json.dumps(biz, separators=(",", ":"))))
        raw = requests.post(gateway, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"},
                            timeout=5).text
        response_type = method.replace(".", "_") + "_response"
        substring = checker._get_string_to_be_signed(raw, response_type)
        [ours] = alipay_sign.top_level(raw)[response_type]
        assert substring == ours.text
        assert checker._verify(substring, json.loads(raw)["sign"])
        assert checker._verify_and_return_sync_response(raw, response_type) == env.fetcher().verified(method, raw)
