"""Shared, vectorised pieces for reading tabular statements: decode, cut, split, map by header name.

Every channel module describes its format as data (header names → canonical columns) and calls
these helpers; no helper loops over rows in Python.
"""

from __future__ import annotations

import csv
import io
import mmap
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import polars as pl

from fetchers.base import CANONICAL_SCHEMA, MONEY
from recon.errors import InputError
from recon.frames import utc_from_wall

# ASCII digits only: the regex engine's \d also takes other scripts' digits ('١', '１'), which the cast refuses.
_AMOUNT = r"^[-+]?[0-9]{1,14}(\.[0-9]{1,6})?$"
# Characters banks and spreadsheets wrap around amounts: currency signs, thousands commas, spaces.
_AMOUNT_NOISE = r"[¥￥$,\s]"
# Cells that channels pad to stop Excel from mangling long numbers: TAB (Alipay), backtick (WeChat).
_CELL_PADDING = " \t`\u3000"
# Appended as one extra cell to every CSV line: polars pads a row with too few fields with empty cells,
# so a row cut short is only seen by this cell landing in the wrong column.
_ROW_END = "\x1f"
_ROW_END_COLUMN = "\x1frow end"
# No statement line comes near this. A longer one (a binary file, a bill whose line breaks were lost, a
# hostile file) is refused before decoding, which would otherwise copy it several times over; it also keeps
# every CSV field below the csv module's field limit (131 072 characters).
MAX_LINE_BYTES = 128 * 1024


def decode(raw: bytes, path: Path, encodings: Sequence[str]) -> str:
    """Decode ``raw`` with the first encoding that fits; name the line of the first bad byte otherwise.

    The bad byte reported is the one the encoding that got furthest stopped at: a GBK bill fails as UTF-8
    on its first Chinese character, but the damage is where GB18030 fails.
    """
    check_line_lengths(raw, path)
    furthest = -1
    for enc in encodings:
        try:
            return raw.decode(enc)
        except UnicodeDecodeError as exc:
            # utf-8-sig reports offsets past the BOM it dropped; count from the start of ``raw``.
            furthest = max(furthest, len(raw) - len(exc.object) + exc.start)
    line = count_in(raw, b"\n", furthest) + 1
    raise InputError(path, f"cannot be decoded as {' or '.join(encodings)} (byte {furthest})", line)


# Reads over a mapped file go this many bytes at a time, each span's pages let go after it.
SPAN_BYTES = 16 * 1024 * 1024


def release(raw: bytes | mmap.mmap, start: int, end: int) -> None:
    """Let the pages of a mapped file between ``start`` and ``end`` go: read again from disk if touched again.

    A mapped file's pages count as the process's memory once read; a parser that has moved past them
    does not need them resident. Bytes objects are left alone.
    """
    if isinstance(raw, mmap.mmap):
        start, end = max(start, 0), min(end, len(raw))
        first, last = start - start % mmap.PAGESIZE, end - end % mmap.PAGESIZE
        if last > first:
            raw.madvise(mmap.MADV_DONTNEED, first, last - first)


def count_in(raw: bytes | mmap.mmap, needle: bytes, end: int) -> int:
    """How often ``needle`` occurs in ``raw[:end]``, counted a span at a time (a mapping has no count)."""
    found = 0
    for start in range(0, end, SPAN_BYTES):
        stop = min(start + SPAN_BYTES, end)
        # One byte more, so a needle across the span's end is counted here and never in the next span.
        found += raw[start:min(stop + len(needle) - 1, end)].count(needle)
        release(raw, start, stop)
    return found


def is_blank(raw: bytes | mmap.mmap) -> bool:
    """True for an empty file or one of white space only (stops at the first other byte)."""
    return re.search(rb"\S", raw) is None


def check_line_lengths(raw: bytes | mmap.mmap, path: Path) -> None:
    """Refuse ``raw`` at its first line of ``MAX_LINE_BYTES`` or more, without copying it.

    Such a line holds a whole aligned window of half the limit without a line break, so only windows
    without one are measured, each at most a limit's length either way: linear in the file's size.
    """
    window = MAX_LINE_BYTES // 2
    for start in range(0, len(raw), window):
        end = start + window
        if start % SPAN_BYTES == 0 and start > MAX_LINE_BYTES:
            release(raw, start - SPAN_BYTES - MAX_LINE_BYTES, start - MAX_LINE_BYTES)
        # Any line break will do here: LF first, as almost every line ends with one (a search for a CR the file
        # does not hold would read the whole window).
        if raw.find(b"\n", start, end) >= 0 or raw.find(b"\r", start, end) >= 0:
            continue
        before = max(0, start - MAX_LINE_BYTES)
        line_start = _last_break(raw, before, start) + 1 or before
        after = _break_in(raw, end, end + MAX_LINE_BYTES)
        line_end = after if after >= 0 else min(len(raw), end + MAX_LINE_BYTES)
        if line_end - line_start < MAX_LINE_BYTES:
            continue
        line_start = _last_break(raw, 0, start) + 1
        breaks = count_in(raw, b"\n", line_start) + count_in(raw, b"\r", line_start) - count_in(raw, b"\r\n", line_start)
        raise InputError(path, f"a line of {MAX_LINE_BYTES} bytes or more: not a statement (or its line breaks "
                               "were lost)", breaks + 1)


def _break_in(raw: bytes | mmap.mmap, start: int, end: int) -> int:
    """Index of the first CR or LF in ``raw[start:end]``, or -1."""
    found = [i for i in (raw.find(b"\n", start, end), raw.find(b"\r", start, end)) if i >= 0]
    return min(found, default=-1)


def _last_break(raw: bytes | mmap.mmap, start: int, end: int) -> int:
    """Index of the last CR or LF in ``raw[start:end]``, or -1."""
    return max(raw.rfind(b"\n", start, end), raw.rfind(b"\r", start, end))


def normalise_header(name: str) -> str:
    """Header cell as matched: NFKC folds full-width （元） and ：, padding and BOM are dropped."""
    return unicodedata.normalize("NFKC", name).strip(_CELL_PADDING + "\ufeff\"")


def split_lines(text: str | pl.Series, has_cr: bool | None = None) -> pl.Series:
    r"""The lines of a decoded file (or of a one-value text Series): CRLF, CR and LF end a line, nothing else does.

    str.splitlines would also split on \x0b, \x0c, \x1c-\x1e, \x85, U+2028 and
    U+2029, which may sit inside a product name, cutting the row in two and shifting every line number.
    Split by polars rather than ``re.split``: no Python string per line is made on the way.
    ``has_cr``: whether the text holds a CR, when the caller knows it (asked of the raw bytes it is a fortieth of
    what polars takes to search the text).
    """
    lines = text if isinstance(text, pl.Series) else pl.Series("text", [text], dtype=pl.String)
    if lines.str.contains("\r", literal=True).any() if has_cr is None else has_cr:
        lines = lines.str.replace_all("\r\n", "\n", literal=True).str.replace_all("\r", "\n", literal=True)
    lines = lines.str.split("\n").explode().rename("text")
    return lines.head(-1) if lines.tail(1).item() == "" else lines


def line_frame(lines: pl.Series, start: int, end: int) -> pl.DataFrame:
    """Non-blank lines ``start``..``end`` (0-based, end exclusive) with their 1-based line numbers."""
    frame = pl.DataFrame({"text": lines.slice(start, max(end - start, 0))}).with_columns(
        line_no=pl.int_range(start + 1, start + 1 + pl.len(), dtype=pl.Int64)
    )
    return frame.filter(pl.col("text").str.strip_chars() != "")


def split_csv(path: Path, header_line: str, body: pl.DataFrame, delimiter: str = ",") -> pl.DataFrame:
    """Split quoted CSV lines into string columns named by the (normalised) header."""
    header_no = int(body["line_no"].min() or 1) - 1
    try:
        header = _header_names(next(csv.reader([header_line], delimiter=delimiter), []))
    except csv.Error as exc:
        raise InputError(path, f"the header line cannot be read as CSV ({exc})", max(header_no, 1)) from None
    _check_header(path, header, header_no)
    if body.is_empty():
        return pl.DataFrame(schema={**{h: pl.String for h in header}, "line_no": pl.Int64})
    # Joined and handed over as UTF-8 bytes: a Python string of the slice would be built and encoded back.
    row_end = f"{delimiter}{_ROW_END}\n"
    text = body["text"].str.join(row_end).cast(pl.Binary).item() + row_end.encode()
    try:
        cells = pl.read_csv(
            io.BytesIO(text), has_header=False, new_columns=[*header, _ROW_END_COLUMN],
            separator=delimiter, infer_schema_length=0, quote_char='"', raise_if_empty=False,
        )
    except pl.exceptions.PolarsError:
        raise _ragged(path, body, len(header), delimiter) from None
    if cells.height != body.height or cells.width != len(header) + 1 or (
        cells[_ROW_END_COLUMN].ne_missing(_ROW_END).any()
    ):
        raise _ragged(path, body, len(header), delimiter)
    return cells.drop(_ROW_END_COLUMN).with_columns(body["line_no"])


def _header_names(cells: list[str]) -> list[str]:
    """Normalised header names; a blank header cell is named by its position so that columns stay distinct."""
    names = [normalise_header(h) for h in cells]
    return [name or f"(column {i})" for i, name in enumerate(names, start=1)]


def _ragged(path: Path, body: pl.DataFrame, width: int, delimiter: str) -> InputError:
    for text, line_no in body.iter_rows():  # error path only: find the line to name
        if len(next(csv.reader([text], delimiter=delimiter))) != width:
            return InputError(path, f"expected {width} fields, found a different number (truncated or shifted row?)",
                              line_no)
    return InputError(path, "rows could not be split into the header's columns")


def split_backtick(path: Path, header_line: str, body: pl.DataFrame) -> pl.DataFrame:
    """Split WeChat-style rows: every value starts with one backtick and text cells hold bare commas."""
    header = _header_names(header_line.split(","))
    _check_header(path, header, int(body["line_no"].min() or 1) - 1)
    parts = body.with_columns(
        pl.col("text").str.strip_chars_end("\r").str.strip_prefix("`").str.split(",`").alias("parts")
    )
    wrong = parts.filter(pl.col("parts").list.len() != len(header))
    if wrong.height:
        raise InputError(path, f"expected {len(header)} fields, found {wrong['parts'][0].len()}", wrong["line_no"][0])
    return parts.select(*[pl.col("parts").list.get(i).alias(h) for i, h in enumerate(header)], "line_no")


def _check_header(path: Path, header: list[str], line_no: int) -> None:
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise InputError(path, f"header names a column twice: {', '.join(dupes)}", max(line_no, 1))


def pick_columns(
    path: Path, cells: pl.DataFrame, spec: Mapping[str, Iterable[str]], required: Iterable[str], header_line_no: int
) -> dict[str, str]:
    """Map canonical names to the file's header names; a required column that is absent is an error."""
    present = set(cells.columns)
    found: dict[str, str] = {}
    for canonical, names in spec.items():
        for name in names:
            if normalise_header(name) in present:
                found[canonical] = normalise_header(name)
                break
    missing = [c for c in required if c not in found]
    if missing:
        wanted = "; ".join(f"{c} ← {' | '.join(spec[c])}" for c in missing)
        have = ", ".join(c for c in cells.columns if c != "line_no")
        raise InputError(path, f"missing column(s): {wanted}. The header has: {have}", header_line_no)
    return found


def text(col: str) -> pl.Expr:
    """A cell as text with channel padding removed; empty becomes null."""
    value = pl.col(col).str.strip_chars(_CELL_PADDING)
    return pl.when(value == "").then(None).otherwise(value)


def check_amounts(path: Path, cells: pl.DataFrame, columns: Iterable[str]) -> pl.DataFrame:
    """Reject the file at the first cell that is not an exact decimal amount (the first column named, then the
    first line); else ``cells`` with those columns cleaned of padding, currency signs and separators, for
    ``amount(..., cleaned=True)``. Every column is cleaned once and checked in one pass, side by side; the bad
    cell (as the file has it) is looked up only then."""
    columns = list(columns)
    if not columns:
        return cells
    clean = cells.with_columns([_cleaned(col).alias(col) for col in columns])
    wrong = {col: pl.col(col).is_not_null() & (pl.col(col) != "") & ~pl.col(col).str.contains(_AMOUNT)
             for col in columns}
    flagged = clean.select([bad.any().alias(col) for col, bad in wrong.items()]).row(0)
    for col, any_bad in zip(wrong, flagged, strict=True):
        if any_bad:
            bad = cells.filter(clean.select(wrong[col]).to_series())
            raise InputError(path, f"{col}: {bad[col][0]!r} is not an amount", int(bad["line_no"][0]))
    return clean


def _cleaned(col: str) -> pl.Expr:
    return pl.col(col).str.strip_chars(_CELL_PADDING).str.replace_all(_AMOUNT_NOISE, "")


def amount(col: str, minor_units: bool = False, cleaned: bool = False) -> pl.Expr:
    """An amount cell as an exact DECIMAL(20,6); call ``check_amounts`` first (``cleaned``: on the frame it
    returned, whose amount cells need no cleaning again)."""
    cleaned = (pl.col(col) if cleaned else _cleaned(col)).str.strip_prefix("+")
    value = pl.when(cleaned == "").then(None).otherwise(cleaned).cast(MONEY)
    return value / 100 if minor_units else value


def parse_times(path: Path, cells: pl.DataFrame, col: str, fmt: str, zone: str) -> pl.DataFrame:
    """Add ``occurred_at`` (UTC) and ``business_date`` (in ``zone``) from a wall-clock column."""
    local = pl.col(col).str.strip_chars(_CELL_PADDING).str.strptime(pl.Datetime("us"), fmt, strict=False)
    out = cells.with_columns(_local=local)
    bad = out.filter(pl.col("_local").is_null())
    if bad.height:
        raise InputError(path, f"{col}: {bad[col][0]!r} is not a time in the format {fmt}", int(bad["line_no"][0]))
    # The business date is the wall clock's own date (a time the zone skips is refused just below).
    out = out.with_columns(occurred_at=utc_from_wall(out, "_local", zone), business_date=pl.col("_local").dt.date())
    skipped = out.filter(pl.col("occurred_at").is_null())
    if skipped.height:
        raise InputError(path, f"{col}: {skipped[col][0]!r} does not exist in {zone} (its clocks skip that time)",
                         int(skipped["line_no"][0]))
    return out.drop("_local")


def natural_key(columns: Sequence[str]) -> pl.Expr:
    """The channel's key for one record; two rows with the same key are the same record."""
    return pl.concat_str([pl.col(c).fill_null("") for c in columns], separator="|")


def canonical(frame: pl.DataFrame) -> pl.DataFrame:
    """Select and type the canonical columns, filling absent ones with nulls."""
    exprs = [
        (pl.col(name) if name in frame.columns else pl.lit(None)).cast(dtype).alias(name)
        for name, dtype in CANONICAL_SCHEMA.items()
    ]
    return frame.select(exprs)


# What a stored row cannot do without: it would never be reconciled, or never be told from another row.
_REQUIRED = {"amount": "an amount", "occurred_at": "a time", "business_date": "a business date", "kind": "a kind",
             "natural_key": "a record key"}


def check_complete(path: Path, rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` when every row has what it needs; else the line of the first that does not (an empty cell)."""
    for column, what in _REQUIRED.items():
        missing = rows.filter(pl.col(column).is_null())
        if missing.height:
            line = missing["line_no"][0]
            raise InputError(path, f"a row without {what} (is its cell empty?)", None if line is None else int(line))
    return rows


def find_line(lines: pl.Series, pattern: str, start: int = 0) -> int | None:
    """Index of the first line at or after ``start`` that matches ``pattern`` (a regex)."""
    hits = lines.slice(start).str.contains(pattern).arg_true()
    return None if hits.is_empty() else start + int(hits[0])


def map_values(
    path: Path, frame: pl.DataFrame, col: str, mapping: Mapping[str, str], allowed: Sequence[str], what: str
) -> pl.Expr:
    """Map a raw cell through ``mapping`` (canonical values pass as they are); unknown values are an error."""
    full = {**{v: v for v in allowed}, **{normalise_header(k): v for k, v in mapping.items()}}
    # Cells are folded like the keys were, so '退款（原路）' in the file meets '退款（原路）' in the map.
    raw = text(col).str.normalize("NFKC").str.strip_chars(_CELL_PADDING + "\ufeff\"")
    raw = pl.when(raw == "").then(None).otherwise(raw)
    unknown = frame.filter(raw.is_not_null() & ~raw.is_in(list(full)))
    if unknown.height:
        value = unknown[col][0]
        raise InputError(path, f"{col}: {value!r} is not a known {what} (map it in {what}_map)",
                         int(unknown["line_no"][0]))
    return raw.replace_strict(full, default=None, return_dtype=pl.String)


def cut_at(lines: pl.Series, start: int, markers: Sequence[str]) -> int:
    """Index of the first line at or after ``start`` beginning with one of ``markers`` (or the end)."""
    if not markers:
        return len(lines)
    hits = lines.slice(start).str.strip_chars(_CELL_PADDING + "\ufeff\"").str.starts_with(markers[0])
    for marker in markers[1:]:
        hits = hits | lines.slice(start).str.strip_chars(_CELL_PADDING + "\ufeff\"").str.starts_with(marker)
    found = hits.arg_true()
    return len(lines) if found.is_empty() else start + int(found[0])
