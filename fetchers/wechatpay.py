"""WeChat Pay (微信支付) trade bills: v3 ALL / SUCCESS / REFUND and the legacy v2 layout.

Formats and quirks: reference/channel-formats.md §2. Columns are matched by header name.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import polars as pl

from fetchers.base import CANONICAL_SCHEMA, MONEY, ParsedStatement
from fetchers.chunks import Lines, decoded, read_sections
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
    split_backtick,
    text,
)
from recon.config import ChannelConfig
from recon.errors import InputError

# Real API bills start with a UTF-8 BOM and use CRLF (verified through the published SHA1).
ENCODINGS = ("utf-8-sig",)
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# The summary header; the line after it holds the totals. Legacy bills have 5 summary columns, v3 has 7.
SUMMARY_MARKER = r"^\ufeff?总交易单数"

COLUMNS = {
    "occurred_at": ("交易时间",),
    "refunded_at": ("退款成功时间",),
    "merchant_id": ("商户号",),
    "channel_txn_id": ("微信订单号",),
    "order_no": ("商户订单号",),
    "counterparty": ("用户标识",),
    "trade_state": ("交易状态",),
    "currency": ("货币种类",),
    "paid": ("应结订单金额", "总金额"),
    "refund_amount": ("退款金额",),
    "refund_id": ("微信退款单号",),
    "refund_state": ("退款状态",),
    "fee": ("手续费",),
}
# Summary header → the detail column it totals.
TOTALS = {"应结订单总金额": "paid", "总交易额": "paid", "退款总金额": "refund_amount", "总退款金额": "refund_amount",
          "手续费总金额": "fee"}
# 交易状态 of payment rows; REFUND marks a refund row. 退款状态 is a snapshot taken at export.
PAYMENT_STATES = {"SUCCESS": "success", "REVOKED": "closed", "CLOSED": "closed", "NOTPAY": "pending",
                  "USERPAYING": "pending", "PAYERROR": "failed"}
REFUND_STATES = {"SUCCESS": "success", "PROCESSING": "pending", "FAIL": "failed", "CHANGE": "failed"}
# Payment rows carry "0" in the refund-number columns instead of leaving them empty.
NO_REFUND_ID = "0"


# Columns a slice's rows carry beside the canonical ones, for the checks over the whole bill.
MERCHANT = "_merchant"
TOTAL_PREFIX = "_total_"


def parse(path: Path, raw: bytes, channel: ChannelConfig) -> ParsedStatement:
    """Parse a WeChat Pay trade bill."""
    if is_blank(raw):
        raise InputError(path, "the file is empty (an interrupted download?)", 1)
    return decoded(path, raw, ENCODINGS, lambda slices: _parse_lines(path, slices, channel))


def _parse_lines(path: Path, slices: Iterator[Lines], channel: ChannelConfig) -> ParsedStatement:
    def start(lines: pl.Series, first: int) -> int:
        head = lines[0] if lines.len() else ""
        if first == 0 and ("交易时间" not in head or "微信订单号" not in head):
            hint = " (this is a fund-flow bill, 资金账单; import the trade bill, 交易账单)" if "记账时间" in head else ""
            raise InputError(path, f"not a WeChat Pay trade bill: the first line is not its header{hint}", 1)
        return 0

    def tail(lines: pl.Series, at: int) -> int | None:
        return find_line(lines, SUMMARY_MARKER, at)

    found = read_sections(slices, start, 0, tail, lambda header, _, lines: _rows(path, header, lines, channel))
    if found.header is None:
        raise InputError(path, "not a WeChat Pay trade bill: the first line is not its header", 1)
    if found.tail_index is None or len(found.tail) < 2:
        raise InputError(path, "truncated: the summary block (总交易单数) is missing", found.lines)
    frame = found.rows()
    _check_totals(path, frame, found.tail[0], found.tail[1], found.tail_index + 2)
    merchant, merchant_line = _merchant(path, frame)
    rows = frame.select(list(CANONICAL_SCHEMA))
    return ParsedStatement(rows=check_complete(path, rows), merchant_id=merchant, merchant_line=merchant_line)


def _rows(path: Path, header: str, lines: pl.DataFrame, channel: ChannelConfig) -> pl.DataFrame:
    """Canonical rows of a slice, with the 商户号 and the summed columns kept for the checks over the bill."""
    cells = split_backtick(path, header, lines)
    cols = pick_columns(path, cells, COLUMNS, ["occurred_at", "channel_txn_id", "order_no", "trade_state", "paid"], 1)
    cells = check_amounts(path, cells, [cols[c] for c in ("paid", "refund_amount", "fee") if c in cols])
    is_refund = text(cols["trade_state"]) == "REFUND"
    if "refunded_at" in cols:
        cells = cells.with_columns(
            pl.when(is_refund & text(cols["refunded_at"]).is_not_null())
            .then(pl.col(cols["refunded_at"])).otherwise(pl.col(cols["occurred_at"])).alias(cols["occurred_at"])
        )
    frame = parse_times(path, cells, cols["occurred_at"], TIME_FORMAT, channel.zone)
    refund_state = text(cols["refund_state"]) if "refund_state" in cols else pl.lit("SUCCESS")
    refund_id = text(cols["refund_id"]) if "refund_id" in cols else pl.lit(None, pl.String)
    refunded = amount(cols["refund_amount"], cleaned=True) if "refund_amount" in cols else pl.lit(None, MONEY)
    frame = frame.with_columns(
        kind=pl.when(is_refund).then(pl.lit("refund")).otherwise(pl.lit("payment")),
        amount=pl.when(is_refund).then(-refunded.abs()).otherwise(amount(cols["paid"], cleaned=True)),
        status=pl.when(is_refund)
        .then(refund_state.replace_strict(REFUND_STATES, default="pending", return_dtype=pl.String))
        .otherwise(text(cols["trade_state"]).replace_strict(PAYMENT_STATES, default="failed", return_dtype=pl.String)),
        refund_id=pl.when(is_refund & (refund_id != NO_REFUND_ID)).then(refund_id),
        fee=amount(cols["fee"], cleaned=True) if "fee" in cols else pl.lit(None, MONEY),
        currency=text(cols["currency"]).fill_null(channel.currency) if "currency" in cols else pl.lit(channel.currency),
        **{c: text(cols[c]) for c in ("order_no", "channel_txn_id", "counterparty") if c in cols},
    )
    extra = [text(cols["merchant_id"]).alias(MERCHANT)] if "merchant_id" in cols else []
    extra += [amount(cols[detail], cleaned=True).alias(TOTAL_PREFIX + detail) for detail in set(TOTALS.values())
              if detail in cols]
    rows = canonical(frame).with_columns(natural_key=natural_key(["kind", "channel_txn_id", "refund_id"]))
    return rows.with_columns(frame.select(extra)) if extra else rows


def _merchant(path: Path, frame: pl.DataFrame) -> tuple[str | None, int | None]:
    """The bill's 商户号 and the first line naming it; a bill whose rows name two is refused.

    Rows of two merchants mean an edited or merged file: which rows are ours cannot be told, so none is taken.
    """
    if MERCHANT not in frame.columns:
        return None, None
    named = frame.select(pl.col(MERCHANT), "line_no").drop_nulls(MERCHANT)
    if named.is_empty():
        return None, None
    first, line = named.row(0)
    other = named.filter(pl.col(MERCHANT) != first)
    if other.height:
        raise InputError(path, f"rows of more than one 商户号: {first} (line {line}) and {other[MERCHANT][0]}",
                         int(other["line_no"][0]))
    return str(first), int(line)


def _check_totals(path: Path, frame: pl.DataFrame, header: str, values: str, line_no: int) -> None:
    """The summary block must agree with the rows: a mismatch means a cut or altered bill."""
    names = [h.strip().lstrip("\ufeff") for h in header.split(",")]
    figures = [v.strip().lstrip("`") for v in values.split(",")]
    if len(figures) != len(names):
        raise InputError(path, f"summary line has {len(figures)} values for {len(names)} headings", line_no)
    stated = dict(zip(names, figures, strict=True))
    try:
        if int(stated["总交易单数"]) != frame.height:
            raise InputError(path, f"summary says {stated['总交易单数']} rows, the bill holds {frame.height}", line_no)
        for heading, detail in TOTALS.items():
            if heading in stated and TOTAL_PREFIX + detail in frame.columns:
                total = Decimal(str(frame[TOTAL_PREFIX + detail].sum() or 0))
                if total != Decimal(stated[heading]):
                    raise InputError(path, f"summary {heading} is {stated[heading]}, the rows add up to "
                                           f"{total.normalize()}", line_no)
    except (ArithmeticError, ValueError, KeyError) as exc:
        raise InputError(path, f"summary values are not numbers ({exc})", line_no) from None
