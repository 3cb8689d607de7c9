"""Alipay (支付宝) statements: the 业务明细 trade bill (direct and ISV variants) and the 账务明细 bill.

Formats and quirks: reference/channel-formats.md §1. Columns are matched by header name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl

from fetchers.base import MONEY, ParsedStatement
from fetchers.chunks import Lines, decoded, read_sections
from fetchers.statement_zip import read_entry
from fetchers.tabular import (
    is_blank,
    amount,
    canonical,
    check_amounts,
    check_complete,
    find_line,
    natural_key,
    parse_times,
    pick_columns,
    split_csv,
    text,
)
from recon.config import ChannelConfig
from recon.errors import InputError

# Real bills are GBK; a bill re-saved by Excel or a text editor may be UTF-8.
ENCODINGS = ("utf-8-sig", "gb18030")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# Marker lines are '#' + dashes + title + dashes; dash counts differ between files, so match the title.
START_MARKER = r"^#-+(业务明细列表|账务明细列表|业务汇总列表)-*\s*$"
# The 业务明细(汇总) file shipped in the same zip holds per-store totals only, never transactions.
SUMMARY_MARKER = "业务汇总列表"
END_MARKER = r"^#-+.*列表结束-*\s*$"
ACCOUNT = re.compile(r"#账号：\[(\d+)\]")
PERIOD = re.compile(r"起始日期：\[(\d{4})年(\d{2})月(\d{2})日.*?终止日期：\[(\d{4})年(\d{2})月(\d{2})日 (\d{2}:\d{2}:\d{2})\]")
# Footer totals; older files say 交易金额/交易退款金额 instead of 商家实收, so only 笔 and 共…元 are relied on.
TRADE_TOTAL = re.compile(r"#交易合计：(\d+)笔，[^，]*?共(-?[\d.]+)元")
REFUND_TOTAL = re.compile(r"#退款合计：(\d+)笔，[^，]*?共(-?[\d.]+)元")

TRADE_COLUMNS = {
    "channel_txn_id": ("支付宝交易号", "银联交易号"),
    "order_no": ("商户订单号",),
    "business_type": ("业务类型",),
    "occurred_at": ("完成时间",),
    "amount": ("订单金额（元）",),
    "received": ("商家实收（元）",),
    "refund_id": ("退款批次号/请求号", "退款批次号"),
    "service_fee": ("服务费（元）",),
    "counterparty": ("对方账户",),
}
# 业务类型 of the trade bill. A refund row keeps the trade's 支付宝交易号 and carries a negative amount,
# though one public sample writes it positive, so the sign is taken from the type, not the cell.
TRADE_KINDS = {"交易": "payment", "退款": "refund"}

LEDGER_COLUMNS = {
    "ledger_id": ("账务流水号",),
    "channel_txn_id": ("业务流水号",),
    "order_no": ("商户订单号",),
    "occurred_at": ("发生时间",),
    "income": ("收入金额（+元）",),
    "expense": ("支出金额（-元）",),
    "business_type": ("业务类型",),
    "counterparty": ("对方账号",),
}
LEDGER_KINDS = {"在线支付": "payment", "交易付款": "payment", "交易退款": "refund", "退款": "refund", "收费": "fee"}


def parse(path: Path, raw: bytes, channel: ChannelConfig) -> ParsedStatement:
    """Parse an Alipay bill (.csv, or the downloaded .zip holding the detail and summary files)."""
    if is_blank(raw):
        raise InputError(path, "the file is empty (an interrupted download?)", 1)
    if raw[:2] == b"PK":
        _, raw = read_entry(path, raw, lambda n: "明细" in n and "汇总" not in n)
    return decoded(path, raw, ENCODINGS, lambda slices: _parse_lines(path, slices, channel))


def _parse_lines(path: Path, slices: Iterator[Lines], channel: ChannelConfig) -> ParsedStatement:
    def start(lines: pl.Series, first: int) -> int | None:
        return find_line(lines, START_MARKER)

    def check_start(line: str, index: int) -> None:
        if SUMMARY_MARKER in line:
            raise InputError(path, "this is the summary file (业务明细(汇总)); import the detail file (业务明细)",
                             index + 1)

    def tail(lines: pl.Series, at: int) -> int | None:
        return find_line(lines, END_MARKER, at)

    def body(header: str, header_line: int, lines: pl.DataFrame) -> pl.DataFrame:
        cells = split_csv(path, header, lines)
        if "账务流水号" in cells.columns:
            return _ledger_rows(path, cells, channel, header_line)
        return _trade_rows(path, cells, channel, header_line)

    found = read_sections(slices, start, 1, tail, body, check_start)
    if found.header is None:
        raise InputError(path, "not an Alipay bill: no '业务明细列表' or '账务明细列表' start marker", 1)
    if found.tail_index is None:
        raise InputError(path, "truncated: the '列表结束' end marker is missing", found.lines)
    frame = found.rows()
    footer = "\n".join(found.tail)
    if "income" in frame.columns:
        rows = _check_ledger_totals(path, frame, footer, found.tail_index + 1)
    else:
        rows = _check_trade_totals(path, frame, footer, found.tail_index + 1)
    preamble = "\n".join(found.before)
    account = ACCOUNT.search(preamble)
    merchant = account.group(1) if account else None
    merchant_line = preamble.count("\n", 0, account.start()) + 1 if account else None
    return ParsedStatement(rows=check_complete(path, rows), period=_period(path, preamble), merchant_id=merchant,
                           merchant_line=merchant_line)


def _period(path: Path, preamble: str) -> tuple[date, date] | None:
    found = PERIOD.search(preamble)
    if not found:
        return None
    y1, m1, d1, y2, m2, d2, end_time = found.groups()
    try:
        first, after = date(int(y1), int(m1), int(d1)), date(int(y2), int(m2), int(d2))
        last = after - timedelta(days=1) if end_time == "00:00:00" else after
    except (ValueError, OverflowError):
        line = preamble.count("\n", 0, found.start()) + 1
        raise InputError(path, f"the bill's dates are not valid dates: {found.group(0)}", line) from None
    return first, max(first, last)


def _footer_total(path: Path, found: re.Match[str], label: str, footer_line: int) -> tuple[int, Decimal, int]:
    """Count, amount and 1-based line of a footer total (``found`` matched inside the footer text)."""
    line = footer_line + found.string.count("\n", 0, found.start())
    try:
        return int(found.group(1)), Decimal(found.group(2)), line
    except ArithmeticError:
        raise InputError(path, f"footer {label}: {found.group(2)!r} is not an amount", line) from None


def _trade_rows(path: Path, cells: pl.DataFrame, channel: ChannelConfig, header_line: int) -> pl.DataFrame:
    """Canonical rows of a slice of the trade bill, with 商家实收 kept for the footer check."""
    cols = pick_columns(path, cells, TRADE_COLUMNS, ["channel_txn_id", "order_no", "business_type", "occurred_at",
                                                     "amount"], header_line)
    cells = check_amounts(path, cells, [cols[c] for c in ("amount", "received", "service_fee") if c in cols])
    frame = parse_times(path, cells, cols["occurred_at"], TIME_FORMAT, channel.zone)
    kind = text(cols["business_type"]).replace_strict(TRADE_KINDS, default="adjustment", return_dtype=pl.String)
    signed = amount(cols["amount"], cleaned=True)
    frame = frame.with_columns(
        kind=kind,
        amount=pl.when(kind == "refund").then(-signed.abs()).otherwise(signed),
        # 服务费 is written negative when charged; canonical fee is positive when charged.
        fee=-amount(cols["service_fee"], cleaned=True) if "service_fee" in cols else pl.lit(None, MONEY),
        received=amount(cols["received"], cleaned=True) if "received" in cols else pl.lit(None, MONEY),
        status=pl.lit("success"),
        currency=pl.lit(channel.currency),
        **{c: text(cols[c]) if c in cols else pl.lit(None, pl.String)
           for c in ("order_no", "channel_txn_id", "refund_id", "counterparty")},
    ).with_columns(natural_key=natural_key(["kind", "channel_txn_id", "refund_id"]))
    return canonical(frame).with_columns(frame["received"])


def _check_trade_totals(path: Path, frame: pl.DataFrame, footer: str, footer_line: int) -> pl.DataFrame:
    """The canonical rows, once they add up to the footer: rows that do not mean a cut or edited file."""
    column = "received" if frame["received"].null_count() < frame.height else "amount"
    for pattern, kind, label in ((TRADE_TOTAL, "payment", "交易合计"), (REFUND_TOTAL, "refund", "退款合计")):
        found = pattern.search(footer)
        if not found:
            continue
        # Counted and summed in place: a filtered copy of every column was the bill's rows twice over.
        held, total = _count_and_sum(frame, pl.col("kind") == kind, column)
        count, stated, line = _footer_total(path, found, label, footer_line)
        if count != held or total != stated:
            raise InputError(path, f"footer {label} says {count} rows totalling {stated}, "
                                   f"but the file holds {held} totalling {total.normalize()}", line)
    return frame.drop("received")


def _count_and_sum(frame: pl.DataFrame, which: pl.Expr, column: str) -> tuple[int, Decimal]:
    """How many rows ``which`` picks and the sum of their ``column``."""
    held, total = frame.select(which.sum().alias("held"), pl.col(column).filter(which).sum().alias("total")).row(0)
    return int(held or 0), Decimal(str(total or 0))


def _ledger_rows(path: Path, cells: pl.DataFrame, channel: ChannelConfig, header_line: int) -> pl.DataFrame:
    """Canonical rows of a slice of the 账务明细 bill, with income and expense kept for the footer check."""
    cols = pick_columns(path, cells, LEDGER_COLUMNS, ["ledger_id", "occurred_at", "income", "expense",
                                                      "business_type"], header_line)
    cells = check_amounts(path, cells, [cols["income"], cols["expense"]])
    frame = parse_times(path, cells, cols["occurred_at"], TIME_FORMAT, channel.zone)
    income = amount(cols["income"], cleaned=True).fill_null(0)
    expense = amount(cols["expense"], cleaned=True).fill_null(0)
    frame = frame.with_columns(
        kind=text(cols["business_type"]).replace_strict(LEDGER_KINDS, default="adjustment", return_dtype=pl.String),
        amount=income - expense,
        income=income,
        expense=expense,
        status=pl.lit("success"),
        currency=pl.lit(channel.currency),
        ledger_id=text(cols["ledger_id"]),
        **{c: text(cols[c]) for c in ("order_no", "channel_txn_id", "counterparty") if c in cols},
    # 账务流水号 identifies a ledger line: it is the record's key.
    ).with_columns(natural_key=natural_key(["ledger_id"]))
    return canonical(frame).with_columns(frame["income"], frame["expense"])


def _check_ledger_totals(path: Path, frame: pl.DataFrame, footer: str, footer_line: int) -> pl.DataFrame:
    """The canonical rows, once their income and expense add up to the footer's."""
    for label, column in (("支出合计", "expense"), ("收入合计", "income")):
        found = re.search(rf"#{label}：(\d+)笔，共(-?[\d.]+)元", footer)
        if found:
            held, total = _count_and_sum(frame, pl.col(column) != 0, column)
            count, stated, line = _footer_total(path, found, label, footer_line)
            if count != held or total != stated:
                raise InputError(path, f"footer {label} says {count} rows totalling {stated}, "
                                       f"but the file holds {held} totalling {total.normalize()}", line)
    return frame.drop("income", "expense")
