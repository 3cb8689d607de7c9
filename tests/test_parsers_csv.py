"""The declarative ``csv`` channel kind: a [channels.mapping] table turns a bank-style export into canonical rows."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fetchers import PARSERS, ParsedStatement
from fetchers.base import MONEY
from recon.config import ChannelConfig, CsvMapping
from recon.errors import InputError

# A GB18030 export with a two-line preamble, amounts in fen, refunds written positive and a totals footer.
BANK_EXPORT = "\n".join([
    "某银行商户对账单",
    "商户号：888001",
    "交易时间,流水号,订单号,类型,状态,金额（分）,手续费（分）,退款单号",
    "2024-03-01 10:00:00,0001,A001,收款,成功,1999,12,",
    "2024-03-01 11:30:00,0002,A001,退款（原路）,成功,1999,-12,R001",
    "2024-03-01 23:59:59,0003,000777,收款,处理中,12345678901234,0,",
    "合计,,,,,,,",
    "导出时间：2024-03-02 09:00:00",
]) + "\n"
BANK_MAPPING: dict[str, Any] = {
    "encoding": "gb18030",
    "skip_lines": 2,
    "footer_markers": ["合计", "导出时间"],
    "columns": {
        "occurred_at": "交易时间", "channel_txn_id": "流水号", "order_no": "订单号", "kind": "类型",
        "status": "状态", "amount": "金额（分）", "fee": "手续费（分）", "refund_id": "退款单号",
    },
    "amount_unit": "minor",
    "kind_map": {"收款": "payment", "退款（原路）": "refund"},
    "status_map": {"成功": "success", "处理中": "pending"},
    "refunds_written_positive": True,
}


def _channel(currency: str = "HKD", **changes: Any) -> ChannelConfig:
    return ChannelConfig(id="bank", kind="csv", currency=currency, mapping=CsvMapping(**{**BANK_MAPPING, **changes}))


def _parse(text: str, channel: ChannelConfig | None = None, encoding: str = "gb18030") -> ParsedStatement:
    return PARSERS["csv"](Path("bank.csv"), text.encode(encoding), channel or _channel())


def _reject(text: str, channel: ChannelConfig | None = None, encoding: str = "gb18030") -> InputError:
    with pytest.raises(InputError) as caught:
        _parse(text, channel, encoding)
    return caught.value


def test_bank_export_becomes_canonical_rows() -> None:
    rows = _parse(BANK_EXPORT).rows
    assert rows["line_no"].to_list() == [4, 5, 6]  # the footer lines are not rows
    assert rows["kind"].to_list() == ["payment", "refund", "payment"]
    assert rows["status"].to_list() == ["success", "success", "pending"]
    # Fen become yuan exactly; the refund written positive is negative; the fee keeps its sign.
    assert rows["amount"].to_list() == [Decimal("19.99"), Decimal("-19.99"), Decimal("123456789012.34")]
    assert rows["fee"].to_list() == [Decimal("0.12"), Decimal("-0.12"), Decimal("0")]
    assert rows.schema["amount"] == MONEY and rows.schema["fee"] == MONEY
    assert rows["currency"].to_list() == ["HKD"] * 3  # no currency column: the channel's currency
    assert rows["channel_txn_id"].to_list() == ["0001", "0002", "0003"]
    assert rows["order_no"].to_list() == ["A001", "A001", "000777"]
    assert rows["refund_id"].to_list() == [None, "R001", None]
    assert rows["occurred_at"][0] == datetime(2024, 3, 1, 2, 0, tzinfo=timezone.utc)
    assert rows["natural_key"].to_list() == ["payment|0001|", "refund|0002|R001", "payment|0003|"]


def test_major_units_and_signed_refunds_are_taken_as_written() -> None:
    text = BANK_EXPORT.replace(",1999,12,", ",19.99,0.12,").replace(",1999,-12,", ",-19.99,-0.12,")
    text = text.replace(",12345678901234,0,", ",1.5,0,")
    rows = _parse(text, _channel(amount_unit="major", refunds_written_positive=False)).rows
    assert rows["amount"].to_list() == [Decimal("19.99"), Decimal("-19.99"), Decimal("1.5")]


def test_refund_written_positive_flag_off_keeps_the_file_sign() -> None:
    rows = _parse(BANK_EXPORT, _channel(refunds_written_positive=False)).rows
    assert rows["amount"][1] == Decimal("19.99")


def test_currency_column_wins_over_the_channel_currency() -> None:
    text = BANK_EXPORT.replace("退款单号\n", "退款单号,币种\n").replace(",\n2024", ",,CNY\n2024")
    text = text.replace(",R001\n", ",R001,USD\n").replace(",0,\n合计", ",0,,\n合计")
    columns = {**BANK_MAPPING["columns"], "currency": "币种"}
    rows = _parse(text, _channel(columns=columns)).rows
    assert rows["currency"].to_list() == ["CNY", "USD", "HKD"]  # an empty cell falls back to the channel


def test_mapping_zone_overrides_the_channel_zone() -> None:
    rows = _parse(BANK_EXPORT, _channel(zone="UTC")).rows
    assert rows["occurred_at"][0] == datetime(2024, 3, 1, 10, 0, tzinfo=timezone.utc)


def test_utf8_file_with_bom() -> None:
    channel = _channel(encoding="utf-8")
    rows = _parse("\ufeff" + BANK_EXPORT, channel, encoding="utf-8").rows
    assert rows.height == 3


@pytest.mark.parametrize(
    ("edit", "line", "says"),
    [
        (("退款（原路）", "冲正"), 5, "类型: '冲正' is not a known kind (map it in kind_map)"),
        (("处理中", "挂起"), 6, "状态: '挂起' is not a known status (map it in status_map)"),
        ((",1999,12,", ",19.9.9,12,"), 4, "金额(分): '19.9.9' is not an amount"),
        (("2024-03-01 11:30:00", "2024-03-01 11h30"), 5, "交易时间: '2024-03-01 11h30' is not a time"),
        (("交易时间,流水号", "时间,流水号"), 3, "missing column(s) 交易时间. The header has: 时间, 流水号, 订单号"),
        ((",A001,收款,成功,1999,12,", ",A001,收款,成功,1999"), 4, "expected 8 fields"),
    ],
)
def test_bad_rows_name_their_line(edit: tuple[str, str], line: int, says: str) -> None:
    old, new = edit
    assert old in BANK_EXPORT
    error = _reject(BANK_EXPORT.replace(old, new, 1))
    assert (error.file, error.line) == ("bank.csv", line), str(error)
    assert says in error.problem


def test_wrong_encoding_names_the_line() -> None:
    raw = BANK_EXPORT.encode("gb18030")
    at = raw.index(b"0002")  # line 5
    with pytest.raises(InputError) as caught:
        PARSERS["csv"](Path("bank.csv"), raw[:at] + b"\x80\xff" + raw[at:], _channel())
    assert caught.value.line == 5


def test_empty_file_and_missing_header() -> None:
    assert _reject("").line == 1
    error = _reject("某银行商户对账单\n")
    assert error.line == 3 and "no header line" in error.problem
