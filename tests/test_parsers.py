"""The reference statements parse into the rows a user expects (golden files) and survive the channels' quirks."""

from __future__ import annotations

import hashlib
import zipfile
from datetime import date, datetime, timezone
from decimal import Decimal
from io import BytesIO

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from fetchers.base import MONEY
from fetchers.statement_zip import UTF8_NAME_FLAG, entry_name
from tests.parser_helpers import (
    ALIPAY_CSV,
    ALIPAY_ZIP,
    PARSEABLE,
    WECHAT_ALL,
    WECHAT_ALL_LF,
    WECHAT_REFUND,
    WECHAT_SUCCESS,
    alipay_bytes,
    alipay_text,
    check_golden,
    line_of,
    parse,
    parse_sample,
    rows_csv,
    sample,
    set_cell,
    statement_json,
    totals,
    wechat_bytes,
    wechat_text,
)

WECHAT_ALL_SHA1 = "dcd7ceb3d382a1181798368bb15d8437de46c00f"


@pytest.mark.parametrize("name", sorted(PARSEABLE))
def test_sample_matches_golden(name: str) -> None:
    statement = parse_sample(name)
    check_golden(f"{name}.expected.csv", rows_csv(statement.rows))
    check_golden(f"{name}.expected.json", statement_json(statement))


@pytest.mark.parametrize("name", sorted(PARSEABLE))
def test_amounts_are_decimal_and_ids_are_strings(name: str) -> None:
    rows = parse_sample(name).rows
    assert rows.schema["amount"] == MONEY and rows.schema["fee"] == MONEY
    for column in ("order_no", "channel_txn_id", "refund_id", "natural_key"):
        assert rows.schema[column] == pl.String
    assert rows["natural_key"].n_unique() == rows.height, "two rows of one file share a natural key"


def test_alipay_trade_bill_facts() -> None:
    statement = parse_sample(ALIPAY_CSV)
    rows = statement.rows
    assert rows.height == 10
    assert totals(rows) == {"payment": Decimal("0.06"), "refund": Decimal("-0.04")}
    assert statement.merchant_id == "20880211096256330156"
    assert statement.period == (date(2019, 9, 16), date(2019, 9, 16))
    refunds = rows.filter(pl.col("kind") == "refund")
    assert refunds["refund_id"].to_list() == [
        "re_test_1568602607356", "re_test_1568604414433", "re_test_1568614511552", "re_20190916150216125q8Lmiodp",
    ]
    # A refund keeps the trade's 支付宝交易号; its time is the 完成时间 (Beijing) of the refund, in UTC.
    first_refund = refunds.row(0, named=True)
    assert first_refund["channel_txn_id"] == "2019091622001458860515315453"
    assert first_refund["occurred_at"] == datetime(2019, 9, 16, 2, 56, 48, tzinfo=timezone.utc)
    assert first_refund["business_date"] == date(2019, 9, 16)
    # Alipay pads long numbers with a TAB against Excel; none may be left in a value.
    assert not any(rows.select(pl.col(pl.String).str.contains("\t").any()).row(0))


def test_alipay_service_fee_is_positive_when_charged() -> None:
    text = alipay_text()
    payment_line, refund_line = line_of(text, "10:55:23"), line_of(text, "10:56:48")
    text = set_cell(text, payment_line, "服务费（元）", "-0.59")  # charged: written negative
    text = set_cell(text, refund_line, "服务费（元）", "0.59")  # returned with the refund: written positive
    rows = parse("alipay", alipay_bytes(text)).rows
    fees = dict(zip(rows["line_no"].to_list(), rows["fee"].to_list(), strict=True))
    assert fees[payment_line] == Decimal("0.59")
    assert fees[refund_line] == Decimal("-0.59")
    assert sum(fees.values()) == 0


def test_alipay_refund_written_positive_is_still_a_negative_refund() -> None:
    text = alipay_text()
    line = line_of(text, "10:56:48")
    text = set_cell(text, line, "订单金额（元）", "0.01")
    row = parse("alipay", alipay_bytes(text)).rows.filter(pl.col("line_no") == line)
    assert row["kind"].item() == "refund" and row["amount"].item() == Decimal("-0.01")


def test_alipay_zip_with_gbk_names_gives_the_same_rows_as_the_csv() -> None:
    archive = zipfile.ZipFile(BytesIO(sample(ALIPAY_ZIP)))
    assert all(not info.flag_bits & UTF8_NAME_FLAG for info in archive.infolist()), "fixture lost its quirk"
    assert ALIPAY_CSV in [entry_name(info) for info in archive.infolist()]
    zipped, plain = parse_sample(ALIPAY_ZIP), parse_sample(ALIPAY_CSV)
    assert_frame_equal(zipped.rows, plain.rows)
    assert (zipped.period, zipped.merchant_id) == (plain.period, plain.merchant_id)


def test_alipay_csv_with_crlf_line_ends_gives_the_same_rows() -> None:
    raw = sample(ALIPAY_CSV)
    assert b"\r\n" not in raw
    crlf = parse("alipay", raw.replace(b"\n", b"\r\n"))
    assert_frame_equal(crlf.rows, parse_sample(ALIPAY_CSV).rows)
    assert crlf.period == (date(2019, 9, 16), date(2019, 9, 16))


def test_alipay_bill_resaved_as_utf8_gives_the_same_rows() -> None:
    assert_frame_equal(parse("alipay", alipay_text().encode("utf-8")).rows, parse_sample(ALIPAY_CSV).rows)


def test_alipay_ids_keep_leading_zeros() -> None:
    text = alipay_text()
    line = line_of(text, "10:55:23")
    text = set_cell(text, line, "商户订单号", "000123\t")
    row = parse("alipay", alipay_bytes(text)).rows.filter(pl.col("line_no") == line)
    assert row["order_no"].item() == "000123"
    assert row["channel_txn_id"].item() == "2019091622001458860515315453"


def test_alipay_ledger_bill() -> None:
    text = "\n".join([
        "#支付宝账务明细查询",
        "#账号：[20888011365400330156]",
        "#起始日期：[2012年12月29日 00:00:00]   终止日期：[2012年12月30日 00:00:00]",
        "#-----------------------------------------账务明细列表----------------------------------------",
        "账务流水号,业务流水号,商户订单号,商品名称,发生时间,对方账号,收入金额（+元）,支出金额（-元）,账户余额（元）,"
        "交易渠道,业务类型,备注",
        "54632446537371\t,2012122923922029\t,3226563\t,海航机票\t,2012-12-29 21:02:06,陈晶 (kuangzhe@126.com)\t,"
        "2274.00,0.00,14533.03,支付宝,在线支付,",
        "54632446537372\t,2012122923922029\t,\t,服务费\t,2012-12-29 21:02:06,\t,0.00,6.82,14526.21,支付宝,收费,",
        "#----------------------------------------账务明细列表结束-------------------------------------",
        "#支出合计：1笔，共6.82元",
        "#收入合计：1笔，共2274.00元",
        "#导出时间：[2012年12月31日 13:19:01]",
    ]) + "\n"
    statement = parse("alipay", alipay_bytes(text))
    rows = statement.rows
    assert rows["kind"].to_list() == ["payment", "fee"]
    assert rows["amount"].to_list() == [Decimal("2274.00"), Decimal("-6.82")]
    assert rows["order_no"].to_list() == ["3226563", None]
    assert rows["natural_key"].to_list() == ["54632446537371", "54632446537372"]
    assert statement.merchant_id == "20888011365400330156"
    assert statement.period == (date(2012, 12, 29), date(2012, 12, 29))


def test_wechat_all_bill_is_the_hash_verified_original_and_parses() -> None:
    raw = sample(WECHAT_ALL)
    assert hashlib.sha1(raw).hexdigest() == WECHAT_ALL_SHA1
    statement = parse_sample(WECHAT_ALL)
    assert statement.rows.height == 3
    assert totals(statement.rows) == {"payment": Decimal("0.03")}
    assert statement.merchant_id == "1601959334"
    assert statement.rows["refund_id"].null_count() == 3, "payment rows carry '0' as refund number, not a refund id"
    assert statement.rows["channel_txn_id"].to_list()[0] == "4200000925202101284997714292"  # 28 digits, exact


def test_wechat_bom_crlf_and_lf_without_bom_give_the_same_rows() -> None:
    assert sample(WECHAT_ALL).startswith(b"\xef\xbb\xbf") and not sample(WECHAT_ALL_LF).startswith(b"\xef\xbb\xbf")
    assert_frame_equal(parse_sample(WECHAT_ALL_LF).rows, parse_sample(WECHAT_ALL).rows)
    for name in (WECHAT_SUCCESS, WECHAT_REFUND):
        lf = parse("wechatpay", wechat_text(name).encode("utf-8"))
        assert_frame_equal(lf.rows, parse_sample(name).rows)


def test_wechat_refund_bill_dates_refunds_by_refund_time() -> None:
    rows = parse_sample(WECHAT_REFUND).rows
    assert rows["kind"].to_list() == ["refund", "refund"]
    assert rows["amount"].to_list() == [Decimal("-0.01"), Decimal("-0.01")]
    assert rows["refund_id"].to_list() == ["50300807172021020106006664916", "50300907032021020105978998710"]
    # 交易时间 is the original payment (2021-01-24); the refund happened at 退款成功时间.
    assert rows["occurred_at"][0] == datetime(2021, 2, 1, 6, 33, 24, tzinfo=timezone.utc)
    assert rows["business_date"].to_list() == [date(2021, 2, 1), date(2021, 2, 1)]
    assert rows["order_no"][1] == "S20210119083100844726118382"


def test_wechat_success_bill() -> None:
    statement = parse_sample(WECHAT_SUCCESS)
    assert statement.rows["kind"].to_list() == ["payment"]
    assert totals(statement.rows) == {"payment": Decimal("0.01")}
    assert statement.rows["fee"].to_list() == [Decimal("0")]


def test_wechat_ids_keep_leading_zeros_and_text_keeps_commas() -> None:
    text = wechat_text(WECHAT_ALL)
    text = text.replace("`S20210128170702357723", "`000123", 1)
    # 商品名称 is not quoted: commas and odd separators stay inside the cell.
    text = text.replace("`for testing", "`卡密,月卡\u2028x", 1)
    rows = parse("wechatpay", wechat_bytes(text)).rows
    assert rows.height == 3
    assert rows["order_no"][0] == "000123"
    assert rows["line_no"].to_list() == [2, 3, 4]


LEGACY_BILL = "\n".join([
    "交易时间,公众账号ID,商户号,子商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,"
    "总金额,代金券或立减优惠金额,微信退款单号,商户退款单号,退款金额,代金券或立减优惠退款金额,退款类型,退款状态,"
    "商品名称,商户数据包,手续费,费率",
    "`2014-11-10 16:33:45,`wx2421b1c4370ec43b,`10000100,`0,`1000,`1001690740201411100005734289,`1415640626,"
    "`085e9858e3ba5186aafcbaed1,`MICROPAY,`SUCCESS,`CFT,`CNY,`0.01,`0.0,`0,`0,`0,`0,`,`,`被扫支付测试,`订单额外描述,"
    "`0,`0.60%",
    "`2014-11-10 18:01:02,`wx2421b1c4370ec43b,`10000100,`0,`1000,`1001690740201411100005734289,`1415640626,"
    "`085e9858e3ba5186aafcbaed1,`MICROPAY,`REFUND,`CFT,`CNY,`0.00,`0.0,`2001690740201411100005734289,`R1415640626,"
    "`0.01,`0,`ORIGINAL,`SUCCESS,`被扫支付测试,`订单额外描述,`0,`0.60%",
    "总交易单数,总交易额,总退款金额,总代金券或立减优惠退款金额,手续费总金额",
    "`2,`0.01,`0.01,`0.0,`0",
]) + "\n"


def test_wechat_legacy_v2_bill() -> None:
    statement = parse("wechatpay", wechat_bytes(LEGACY_BILL))
    rows = statement.rows
    assert rows["kind"].to_list() == ["payment", "refund"]
    assert rows["amount"].to_list() == [Decimal("0.01"), Decimal("-0.01")]
    assert rows["refund_id"].to_list() == [None, "2001690740201411100005734289"]
    assert rows["occurred_at"][0] == datetime(2014, 11, 10, 8, 33, 45, tzinfo=timezone.utc)
    assert statement.merchant_id == "10000100"
