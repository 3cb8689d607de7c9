"""Bad statements are rejected with an InputError that names the file and the line to look at.

Bad inputs are made from the good reference samples by the one edit each case describes.
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from fetchers import PARSERS
from fetchers.statement_zip import MAX_ENTRY_BYTES
from recon.errors import InputError
from tests.parser_helpers import (
    ALIPAY_CSV,
    ALIPAY_SUMMARY,
    ALIPAY_ZIP,
    CHANNELS,
    WECHAT_FUNDFLOW,
    WECHAT_FUNDFLOW_SDK,
    alipay_bytes,
    alipay_text,
    check_golden,
    line_of,
    sample,
    set_cell,
    wechat_bytes,
    wechat_text,
)

HTML_PAGE = b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n<body>nginx</body></html>\n"
DETAIL_ENTRY = ALIPAY_CSV


@dataclass(frozen=True)
class Case:
    kind: str
    name: str  # file name the bad bytes are saved under
    make: Callable[[], bytes]
    line: int | None  # the line the error must name (None: a zip has no lines)
    says: str  # a phrase the problem must contain


def _alipay_edit(old: str, new: str) -> Callable[[], bytes]:
    def make() -> bytes:
        text = alipay_text()
        assert old in text
        return alipay_bytes(text.replace(old, new, 1))
    return make


def _wechat_edit(old: str, new: str) -> Callable[[], bytes]:
    def make() -> bytes:
        text = wechat_text()
        assert old in text
        return wechat_bytes(text.replace(old, new, 1))
    return make


def _alipay_truncated() -> bytes:
    text = alipay_text()
    return alipay_bytes(text[: text.index("#-----------------------------------------业务明细列表结束")])


def _alipay_cell(line_needle: str, column: str, value: str) -> Callable[[], bytes]:
    def make() -> bytes:
        text = alipay_text()
        return alipay_bytes(set_cell(text, line_of(text, line_needle), column, value))
    return make


def _alipay_misencoded() -> bytes:
    raw = sample(ALIPAY_CSV)
    at = raw.index(b"service_1568603173853")  # on line 8, a payment row
    return raw[:at] + b"\x80\xff" + raw[at:]


def _alipay_short_row() -> bytes:
    text = alipay_text()
    lines = text.split("\n")
    lines[8] = ",".join(lines[8].split(",")[:20])  # line 9 loses its last five cells
    return alipay_bytes("\n".join(lines))


def _wechat_without_summary() -> bytes:
    text = wechat_text()
    return wechat_bytes(text[: text.index("总交易单数")])


def _wechat_short_row() -> bytes:
    text = wechat_text()
    return wechat_bytes(text.replace(",`cipher code", "", 1))  # line 2 loses 商户数据包


def _zip_with(content: bytes, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        archive.writestr(DETAIL_ENTRY, content)
    return buffer.getvalue()


def _zip_claiming_huge_entry() -> bytes:
    raw = bytearray(_zip_with(sample(ALIPAY_CSV)))
    central = raw.index(b"PK\x01\x02")
    struct.pack_into("<I", raw, central + 24, 0xFFFF_FFF0)  # uncompressed size in the central directory
    return bytes(raw)


def _zip_bomb() -> bytes:
    return _zip_with(b"0" * (8 << 20))  # 8 MiB of one byte squeezes to a few KiB


def _zip_cut() -> bytes:
    return sample(ALIPAY_ZIP)[:700]


def _zip_corrupt_stream() -> bytes:
    raw = bytearray(sample(ALIPAY_ZIP))
    for at in range(77, 85):  # inside the detail entry's deflate stream
        raw[at] ^= 0x55
    return bytes(raw)


CASES: dict[str, Case] = {
    "alipay truncated (end marker cut off)": Case("alipay", "cut.csv", _alipay_truncated, 15, "end marker is missing"),
    "alipay footer total does not add up": Case(
        "alipay", "edited.csv", _alipay_cell("11:07:09", "商家实收（元）", "0.02"), 17,
        "footer 交易合计 says 6 rows totalling 0.06, but the file holds 6 totalling 0.07"),
    "alipay footer refund count does not add up": Case(
        "alipay", "edited.csv", _alipay_edit("#退款合计：4笔", "#退款合计：5笔"), 18, "footer 退款合计 says 5 rows"),
    "alipay footer amount malformed": Case(
        "alipay", "edited.csv", _alipay_edit("商家实收共0.06元", "商家实收共0.0.6元"), 17, "'0.0.6' is not an amount"),
    "alipay mis-encoded bytes": Case("alipay", "bad-bytes.csv", _alipay_misencoded, 8, "cannot be decoded"),
    "alipay row with too few cells": Case("alipay", "short.csv", _alipay_short_row, 9, "expected 25 fields"),
    "alipay required column renamed": Case(
        "alipay", "renamed.csv", _alipay_edit(",完成时间,", ",完成日期,"), 5,
        "missing column(s): occurred_at ← 完成时间. The header has: 支付宝交易号, 商户订单号, 业务类型, 商品名称, 创建时间, 完成日期,"),
    "alipay non-amount": Case(
        "alipay", "amount.csv", _alipay_cell("11:26:55", "订单金额（元）", "-0.0l"), 9, "'-0.0l' is not an amount"),
    "alipay bad time": Case(
        "alipay", "time.csv", _alipay_edit("2019-09-16 13:57:52", "2019-09-16 25:57:52"), 10,
        "'2019-09-16 25:57:52' is not a time"),
    "alipay bad bill date": Case(
        "alipay", "date.csv", _alipay_edit("[2019年09月16日", "[2019年13月16日"), 3, "not valid dates"),
    "alipay summary file": Case(
        "alipay", ALIPAY_SUMMARY, lambda: sample(ALIPAY_SUMMARY), 4, "import the detail file (业务明细)"),
    "alipay html error page": Case("alipay", "bill.csv", lambda: HTML_PAGE, 1, "not an Alipay bill"),
    "alipay empty file": Case("alipay", "empty.csv", lambda: b"", 1, "the file is empty"),
    "alipay damaged zip (cut)": Case("alipay", "cut.zip", _zip_cut, None, "not a readable zip archive"),
    "alipay damaged zip (corrupt data)": Case("alipay", "corrupt.zip", _zip_corrupt_stream, None, "is damaged"),
    "alipay zip entry claims a huge size": Case(
        "alipay", "huge.zip", _zip_claiming_huge_entry, None, f"would expand to {0xFFFF_FFF0} bytes: refused"),
    "alipay zip bomb": Case("alipay", "bomb.zip", _zip_bomb, None, f"would expand to {8 << 20} bytes: refused"),
    "wechat summary count mismatch": Case(
        "wechatpay", "count.csv", _wechat_edit("`3,`0.03", "`4,`0.03"), 6, "summary says 4 rows, the bill holds 3"),
    "wechat summary total mismatch": Case(
        "wechatpay", "total.csv", _wechat_edit("`3,`0.03", "`3,`0.04"), 6,
        "summary 应结订单总金额 is 0.04, the rows add up to 0.03"),
    "wechat row with a field missing": Case("wechatpay", "short.csv", _wechat_short_row, 2, "expected 27 fields, found 26"),
    "wechat summary cut off": Case(
        "wechatpay", "cut.csv", _wechat_without_summary, 4, "the summary block (总交易单数) is missing"),
    "wechat required column renamed": Case(
        "wechatpay", "renamed.csv", _wechat_edit(",商户订单号,", ",商户单号,"), 1,
        "missing column(s): order_no ← 商户订单号. The header has: 交易时间, 公众账号ID, 商户号"),
    "wechat non-amount": Case("wechatpay", "amount.csv", _wechat_edit("`CNY,`0.01", "`CNY,`一分"), 2, "is not an amount"),
    "wechat bad time": Case(
        "wechatpay", "time.csv", _wechat_edit("`2021-01-28 15:35:18", "`2021/01/28 15:35:18"), 3,
        "'2021/01/28 15:35:18' is not a time in the format %Y-%m-%d %H:%M:%S"),
    "wechat html error page": Case("wechatpay", "bill.csv", lambda: HTML_PAGE, 1, "not a WeChat Pay trade bill"),
    "wechat v2 xml error": Case(
        "wechatpay", "bill.csv",
        lambda: b"<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[No Bill Exist]]></return_msg></xml>",
        1, "not a WeChat Pay trade bill"),
    "wechat empty file": Case("wechatpay", "empty.csv", lambda: b"", 1, "the file is empty"),
    "wechat fund-flow bill": Case(
        "wechatpay", WECHAT_FUNDFLOW, lambda: sample(WECHAT_FUNDFLOW), 1, "import the trade bill, 交易账单"),
    "wechat fund-flow bill (sdk copy)": Case(
        "wechatpay", WECHAT_FUNDFLOW_SDK, lambda: sample(WECHAT_FUNDFLOW_SDK), 1, "this is a fund-flow bill, 资金账单"),
}

# The user-facing text of these errors is pinned in golden/errors.txt.
GOLDEN_MESSAGES = [
    "alipay truncated (end marker cut off)", "alipay footer total does not add up", "alipay mis-encoded bytes",
    "alipay required column renamed", "alipay summary file", "alipay zip bomb", "wechat summary count mismatch",
    "wechat row with a field missing", "wechat summary cut off", "wechat fund-flow bill", "wechat empty file",
]


def _reject(case: Case, tmp_path: Path) -> InputError:
    path = tmp_path / case.name
    path.write_bytes(case.make())
    with pytest.raises(InputError) as caught:
        PARSERS[case.kind](path, path.read_bytes(), CHANNELS[case.kind])
    return caught.value


@pytest.mark.parametrize("case_id", list(CASES))
def test_bad_input_is_rejected_at_its_line(case_id: str, tmp_path: Path) -> None:
    case = CASES[case_id]
    error = _reject(case, tmp_path)
    assert error.file == str(tmp_path / case.name)
    assert error.line == case.line, str(error)
    assert case.says in error.problem, str(error)
    where = f"{error.file}:{error.line}" if error.line is not None else error.file
    assert str(error) == f"{where}: {error.problem}"


def test_error_messages_match_golden(tmp_path: Path) -> None:
    lines = []
    for case_id in GOLDEN_MESSAGES:
        error = _reject(CASES[case_id], tmp_path)
        lines.append(f"{case_id}\n    {str(error).replace(str(tmp_path) + '/', '')}\n")
    check_golden("errors.txt", "".join(lines))


def test_zip_bomb_guard_stays_below_a_gigabyte() -> None:
    assert MAX_ENTRY_BYTES <= 1 << 30


def test_alipay_without_the_refund_number_column_still_parses() -> None:
    text = alipay_text().replace(",退款批次号/请求号,", ",批次,", 1)
    rows = PARSERS["alipay"](Path("bill.csv"), alipay_bytes(text), CHANNELS["alipay"]).rows
    assert rows.height == 10 and rows["refund_id"].null_count() == 10


@pytest.mark.parametrize("bad", [b"\x80\xff", b"\xff\xfe"])
def test_wechat_mis_encoded_names_the_line(bad: bytes) -> None:
    raw = wechat_bytes(wechat_text())
    at = raw.index(b"S20210128165824499930")  # line 4
    with pytest.raises(InputError) as caught:
        PARSERS["wechatpay"](Path("bill.csv"), raw[:at] + bad + raw[at:], CHANNELS["wechatpay"])
    assert caught.value.line == 4
