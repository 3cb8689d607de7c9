"""Shared pieces of the statement-parser tests: the reference samples, golden files and byte edits."""

from __future__ import annotations

import difflib
import json
import os
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from fetchers import PARSERS, CANONICAL_SCHEMA, ParsedStatement
from recon.config import ChannelConfig

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "golden"
# Set to 1 to (re)write golden files from the parsers' current output; review the git diff afterwards.
REGEN_ENV = "RECON_REGEN_GOLDEN"

ALIPAY_CSV = "20880211096256330156_20190916_业务明细.csv"
ALIPAY_SUMMARY = "20880211096256330156_20190916_业务明细(汇总).SYNTHETIC.csv"
ALIPAY_ZIP = "alipay_20190916_trade_bill_GBKnames_noUTF8flag.SEMI_SYNTHETIC.zip"
WECHAT_ALL = "wechat_v3_tradebill_ALL_2021-01-28.csv"
WECHAT_ALL_LF = "wechat_v3_tradebill_ALL_sdk_regenerated_LF.txt"
WECHAT_SUCCESS = "wechat_v3_tradebill_SUCCESS_2021-02-01.csv"
WECHAT_REFUND = "wechat_v3_tradebill_REFUND_2021-02-01.csv"
WECHAT_FUNDFLOW = "wechat_v3_fundflowbill_2021-02-01.LF_noBOM_author_regenerated.csv"
WECHAT_FUNDFLOW_SDK = "wechat_v3_fundflowbill_sdk_regenerated_LF.txt"

# Every reference sample that is a statement recon imports, with its channel kind.
PARSEABLE = {
    ALIPAY_CSV: "alipay",
    ALIPAY_ZIP: "alipay",
    WECHAT_ALL: "wechatpay",
    WECHAT_ALL_LF: "wechatpay",
    WECHAT_SUCCESS: "wechatpay",
    WECHAT_REFUND: "wechatpay",
}
# Reference samples recon refuses on purpose, with the kind they were offered to.
REFUSED = {ALIPAY_SUMMARY: "alipay", WECHAT_FUNDFLOW: "wechatpay", WECHAT_FUNDFLOW_SDK: "wechatpay"}

CHANNELS = {
    "alipay": ChannelConfig(id="ali", kind="alipay"),
    "wechatpay": ChannelConfig(id="wx", kind="wechatpay"),
}

# Alipay bills are GBK; gb18030 is its superset and what the parser falls back to.
ALIPAY_ENCODING = "gb18030"


def sample(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def parse(kind: str, raw: bytes, name: str = "bill.csv", channel: ChannelConfig | None = None) -> ParsedStatement:
    return PARSERS[kind](Path(name), raw, channel or CHANNELS[kind])


def parse_sample(name: str) -> ParsedStatement:
    kind = PARSEABLE[name]
    return parse(kind, sample(name), name)


def alipay_text() -> str:
    return sample(ALIPAY_CSV).decode(ALIPAY_ENCODING)


def alipay_bytes(text: str) -> bytes:
    return text.encode(ALIPAY_ENCODING)


def wechat_text(name: str = WECHAT_ALL) -> str:
    """A WeChat sample as text with its BOM dropped and LF line ends."""
    return sample(name).decode("utf-8-sig").replace("\r\n", "\n")


def wechat_bytes(text: str) -> bytes:
    """WeChat bill bytes as the API serves them: UTF-8 BOM and CRLF."""
    return b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8")


def line_of(text: str, needle: str) -> int:
    """1-based number of the first line containing ``needle``."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in the text")


def totals(rows: pl.DataFrame) -> dict[str, Decimal]:
    """Σ amount per kind, as exact Decimals."""
    sums = rows.group_by("kind").agg(pl.col("amount").sum()).sort("kind")
    return {kind: Decimal(str(total)) for kind, total in sums.iter_rows()}


def rows_csv(rows: pl.DataFrame) -> str:
    """Canonical rows as golden CSV: amounts as exact decimal strings, times ISO 8601 in UTC."""
    assert rows.schema == pl.Schema(CANONICAL_SCHEMA)
    as_text = rows.with_columns(
        pl.col("amount", "fee").cast(pl.String),
        pl.col("occurred_at").dt.to_string("%Y-%m-%dT%H:%M:%S%.fZ"),
    )
    return as_text.write_csv(null_value="", line_terminator="\n")


def statement_json(statement: ParsedStatement) -> str:
    """What the user sees about a file besides its rows: period, merchant, counts and totals per kind."""
    rows = statement.rows
    facts = {
        "period": [d.isoformat() for d in statement.period] if statement.period else None,
        "merchant_id": statement.merchant_id,
        "rows": rows.height,
        "kinds": dict(sorted(rows["kind"].value_counts().iter_rows())),
        "totals": {kind: str(total) for kind, total in totals(rows).items()},
        "fees": str(Decimal(str(rows["fee"].sum())) if rows["fee"].count() else None),
        "refund_ids": rows["refund_id"].drop_nulls().to_list(),
    }
    return json.dumps(facts, ensure_ascii=False, indent=2) + "\n"


def check_golden(golden_name: str, actual: str) -> None:
    """Compare with a golden file and show a unified diff; only RECON_REGEN_GOLDEN=1 may (re)write it."""
    path = GOLDEN / golden_name
    if os.environ.get(REGEN_ENV) == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8", newline="\n")
    if not path.exists():
        pytest.fail(f"golden file {path} is missing; create it with {REGEN_ENV}=1 and review it")
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = difflib.unified_diff(
            expected.splitlines(keepends=True), actual.splitlines(keepends=True),
            fromfile=f"golden/{golden_name}", tofile="actual",
        )
        pytest.fail(f"output differs from golden/{golden_name} (rerun with {REGEN_ENV}=1 if intended):\n"
                    + "".join(diff))


def set_cell(text: str, line_no: int, column: str, value: str) -> str:
    """Replace one cell of a plain comma-separated bill (Alipay), addressed by line and header name."""
    lines = text.split("\n")
    header_no = next(i for i, line in enumerate(lines) if column in line.split(","))
    header = lines[header_no].split(",")
    cells = lines[line_no - 1].split(",")
    cells[header.index(column)] = value
    lines[line_no - 1] = ",".join(cells)
    return "\n".join(lines)
