"""The ``csv`` channel kind: any statement described by a ``[channels.mapping]`` table in recon.toml."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl

from fetchers.base import MONEY, ParsedStatement
from fetchers.chunks import Lines, decoded, read_sections
from fetchers.tabular import (
    is_blank,
    amount,
    canonical,
    check_amounts,
    check_complete,
    cut_at,
    map_values,
    natural_key,
    normalise_header,
    parse_times,
    split_csv,
    text,
)
from recon.config import CANONICAL_KINDS, CANONICAL_STATUSES, ChannelConfig
from recon.errors import InputError


def parse(path: Path, raw: bytes, channel: ChannelConfig) -> ParsedStatement:
    """Parse a generic CSV statement as its mapping describes."""
    mapping = channel.mapping
    assert mapping is not None  # enforced by ChannelConfig
    encodings = ["utf-8-sig"] if mapping.encoding.lower().replace("_", "-") in ("utf-8", "utf8") else [mapping.encoding]
    if is_blank(raw):
        raise InputError(path, "the file is empty (an interrupted download?)", 1)
    return decoded(path, raw, encodings, lambda slices: _parse_lines(path, slices, channel))


def _parse_lines(path: Path, slices: Iterator[Lines], channel: ChannelConfig) -> ParsedStatement:
    mapping = channel.mapping
    assert mapping is not None
    header_at = mapping.skip_lines

    def start(lines: pl.Series, first: int) -> int | None:
        return header_at - first if first <= header_at < first + lines.len() else None

    def tail(lines: pl.Series, at: int) -> int | None:
        end = cut_at(lines, at, mapping.footer_markers)
        return None if end == lines.len() else end

    found = read_sections(slices, start, 0, tail, lambda header, _, lines: _rows(path, header, lines, channel))
    if found.header is None:
        raise InputError(path, f"no header line: the file has {found.lines} line(s) and skip_lines is {header_at}",
                         header_at + 1)
    rows = found.rows()
    return ParsedStatement(rows=check_complete(path, rows))


def _rows(path: Path, header: str, lines: pl.DataFrame, channel: ChannelConfig) -> pl.DataFrame:
    """Canonical rows of a slice of the statement."""
    mapping = channel.mapping
    assert mapping is not None
    header_at = mapping.skip_lines
    cells = split_csv(path, header, lines, mapping.delimiter)
    # Header cells are matched normalised (NFKC, padding stripped), so the mapping's names are too:
    # a mapping that copies '金额（元）' from the file must find the column.
    cols = {canonical_name: normalise_header(header) for canonical_name, header in mapping.columns.items()}
    missing = [mapping.columns[c] for c, h in cols.items() if h not in cells.columns]
    if missing:
        have = ", ".join(c for c in cells.columns if c != "line_no")
        raise InputError(path, f"missing column(s) {', '.join(missing)}. The header has: {have}", header_at + 1)
    cells = check_amounts(path, cells, [cols[c] for c in ("amount", "fee") if c in cols])
    frame = parse_times(path, cells, cols["occurred_at"], mapping.time_format, mapping.zone or channel.zone)
    kind = (
        map_values(path, frame, cols["kind"], mapping.kind_map, CANONICAL_KINDS, "kind")
        if "kind" in cols else pl.lit(None, pl.String)
    ).fill_null(mapping.default_kind)
    status = (
        map_values(path, frame, cols["status"], mapping.status_map, CANONICAL_STATUSES, "status")
        if "status" in cols else pl.lit(None, pl.String)
    ).fill_null(mapping.default_status)
    frame = frame.with_columns(
        kind=kind,
        status=status,
        amount=amount(cols["amount"], mapping.amount_unit == "minor", cleaned=True),
        fee=amount(cols["fee"], mapping.amount_unit == "minor", cleaned=True) if "fee" in cols
        else pl.lit(None, MONEY),
        currency=text(cols["currency"]).fill_null(channel.currency) if "currency" in cols else pl.lit(channel.currency),
        **{c: text(cols[c]) for c in ("order_no", "channel_txn_id", "refund_id", "counterparty") if c in cols},
    )
    if mapping.refunds_written_positive:
        frame = frame.with_columns(
            amount=pl.when(pl.col("kind") == "refund").then(-pl.col("amount").abs()).otherwise(pl.col("amount"))
        )
    return canonical(frame).with_columns(natural_key=natural_key(mapping.natural_key))
