"""Statements read in slices: decoded, split into lines and turned into rows a few megabytes at a time.

A day of ten million orders makes bills of a gigabyte. Decoded whole, such a bill is one Python string
of twice its size (GBK text becomes UCS-2), then a column of lines, then a frame of text cells: many
gigabytes, and the time grows faster than the file. Cut at line breaks, each slice decodes on its own
(no GBK, GB18030 or UTF-8 character contains a CR or LF byte), so memory stays at one slice's worth
beyond the bytes and the rows, and every polars step runs over a slice that fits the caches.
"""

from __future__ import annotations

import codecs
import mmap
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import polars as pl

from fetchers.tabular import check_line_lengths, count_in, release, split_lines
from recon.errors import InputError

# Bytes of a slice. A slice ends at a line break; check_line_lengths has refused any line longer than
# MAX_LINE_BYTES (128 KiB) before slicing starts, so a slice never has to grow far past this. Half the 16 MB it
# was, with three slices in flight instead of one (below): the same bytes waiting, but the threads wait less on
# each other (ten million orders: the Alipay bill 10.3-11.2 s → 9.3-9.8 s, WeChat 5.8-6.3 s → 5.1-5.4 s, and the
# parse's peak RSS 1.88-1.98 GB → 1.81-1.83 GB).
CHUNK_BYTES = 8 * 1024 * 1024
# Lines before a statement's header (an Alipay preamble has four). A file whose header is not found
# within them is refused at once rather than held line by line in memory.
MAX_LINES_BEFORE = 1000

# Slices' bodies are parsed on worker threads while the main thread decodes and splits the next ones: polars
# lets go of the GIL, so on two cores they run side by side (a million-row Alipay bill: 2.5 s on one thread,
# 2.0 s so; WeChat 1.6 s, 1.1 s). A slice waiting its turn holds several times its bytes as text and lines,
# hence a few at most.
PARSE_THREADS = 2
SLICES_IN_FLIGHT = 3

# Channel kinds whose parser reads a file a slice at a time, and so may be handed a mapped file.
SLICED_KINDS = frozenset({"alipay", "wechatpay", "csv"})

UTF8_NAMES = frozenset({"utf-8", "utf-8-sig"})

T = TypeVar("T")
Lines = tuple[pl.Series, int]  # the lines of one slice, and the 0-based index of its first line in the file


class _Undecodable(Exception):
    """A slice that the encoding being tried cannot decode; ``offset`` is the bad byte's place in the file."""

    def __init__(self, offset: int) -> None:
        super().__init__(offset)
        self.offset = offset


def _cut(raw: bytes | mmap.mmap, start: int, size: int) -> int:
    """End (exclusive) of the slice that starts at ``start``: just after a line break, or the end of ``raw``."""
    limit = start + size
    if limit >= len(raw):
        return len(raw)
    newline = raw.rfind(b"\n", start, limit)
    if newline >= 0:
        return newline + 1
    carriage = raw.rfind(b"\r", start, limit)
    if carriage >= 0:
        return carriage + 2 if raw[carriage + 1:carriage + 2] == b"\n" else carriage + 1
    # A slice smaller than one line (only when CHUNK_BYTES is set tiny): take the line whole.
    ends = [i for i in (raw.find(b"\n", limit), raw.find(b"\r", limit)) if i >= 0]
    return _cut(raw, start, min(ends) - start + 1) if ends else len(raw)


def line_slices(raw: bytes | mmap.mmap, encoding: str, chunk_bytes: int | None = None) -> Iterator[Lines]:
    """The lines of ``raw`` decoded with ``encoding``, a slice at a time, split as ``split_lines`` splits."""
    size = chunk_bytes or CHUNK_BYTES
    later = encoding.removesuffix("-sig")  # a BOM is dropped at the start of the file only
    start, first = 0, 0
    while start < len(raw):
        end = _cut(raw, start, size)
        piece = raw[start:end]
        text = _decode(piece, encoding if start == 0 else later, start)
        has_cr = b"\r" in piece  # a CR decoded is a CR byte read (a stray 0x0D byte only costs a search)
        del piece
        release(raw, start, end)
        lines = split_lines(text, has_cr)
        del text
        yield lines, first
        first += lines.len()
        start = end


def _decode(piece: bytes, encoding: str, offset: int) -> pl.Series:
    """One slice as a one-value text Series. UTF-8 is checked by polars and never becomes a Python string
    (which would hold Chinese text as two bytes a character); other encodings are decoded by Python.
    ``offset`` is the slice's place in the file, for the bad byte's."""
    if encoding in UTF8_NAMES:
        body = piece[len(codecs.BOM_UTF8):] if encoding == "utf-8-sig" and piece.startswith(codecs.BOM_UTF8) else piece
        try:
            return pl.Series("text", [body], dtype=pl.Binary).cast(pl.String)
        except pl.exceptions.PolarsError:
            pass  # Python's decoder finds the bad byte below
    try:
        text = piece.decode(encoding)
    except UnicodeDecodeError as exc:
        # utf-8-sig reports offsets past the BOM it dropped; count from the start of the slice.
        raise _Undecodable(offset + len(piece) - len(exc.object) + exc.start) from None
    # Handed to polars as UTF-8 bytes: encoding them is a quarter of what polars takes to convert the string.
    return pl.Series("text", [text.encode("utf-8")], dtype=pl.Binary).cast(pl.String)


def decoded(path: Path, raw: bytes | mmap.mmap, encodings: Sequence[str], parse: Callable[[Iterator[Lines]], T]) -> T:
    """``parse`` over the slices of the first encoding that decodes the whole file.

    A file is parsed as it is decoded; a slice the encoding cannot decode restarts the parse with the
    next encoding (a GBK bill fails as UTF-8 on its first Chinese character, so it restarts at once).
    When none fits, the error names the line of the bad byte the furthest-reaching encoding stopped at.
    """
    check_line_lengths(raw, path)
    furthest = -1
    for encoding in encodings:
        try:
            return parse(line_slices(raw, encoding))
        except _Undecodable as exc:
            furthest = max(furthest, exc.offset)
    line = count_in(raw, b"\n", furthest) + 1
    raise InputError(path, f"cannot be decoded as {' or '.join(encodings)} (byte {furthest})", line)


@dataclass
class Sections:
    """A statement cut into what comes before its header, the header, the body's parsed parts and the tail."""

    before: list[str] = field(default_factory=list)
    header: str | None = None
    header_index: int = -1  # 0-based line index of the header
    parts: list[pl.DataFrame] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)
    tail_index: int | None = None  # 0-based line index of the first tail line; None when no tail was found
    lines: int = 0  # lines read in all
    # The first refusal of a body line. It is raised by ``rows`` only: a parser first says what is wrong with
    # the file as a whole (a missing end marker explains a row cut in half better than the row does).
    refused: InputError | None = None

    def rows(self) -> pl.DataFrame:
        """The body's parsed parts as one frame (not copied into one buffer), or the refusal of a body line."""
        if self.refused is not None:
            raise self.refused
        return self.parts[0] if len(self.parts) == 1 else pl.concat(self.parts, rechunk=False)


def body_frame(lines: pl.Series, start: int, end: int, first: int) -> pl.DataFrame:
    """Non-blank lines ``start``..``end`` of a slice whose first line is line ``first`` (0-based) of the file."""
    frame = pl.DataFrame({"text": lines.slice(start, max(end - start, 0))}).with_columns(
        line_no=pl.int_range(first + start + 1, first + start + 1 + pl.len(), dtype=pl.Int64)
    )
    return frame.filter(pl.col("text").str.strip_chars() != "")


def read_sections(slices: Iterator[Lines], find_start: Callable[[pl.Series, int], int | None], header_offset: int,
                  find_tail: Callable[[pl.Series, int], int | None],
                  body: Callable[[str, int, pl.DataFrame], pl.DataFrame],
                  check_start: Callable[[str, int], None] | None = None) -> Sections:
    """Walk the slices: lines before the start, the header, each slice's body lines through ``body``, the tail.

    ``find_start(lines, first)`` gives the slice index of the line that starts the table (None when the
    slice has none); the header is ``header_offset`` lines after it (0: the start is the header; 1: a
    marker line precedes it). ``check_start(line, index)`` may refuse the start line before any body is
    parsed. ``find_tail(lines, from)`` gives the slice index of the first line after the body, or None.
    ``body(header, header_line, lines)`` is called on each slice's body lines (``header_line`` 1-based), and
    once on none when the body is empty.
    """
    found = Sections()
    start_index: int | None = None
    pending: deque[Future[pl.DataFrame]] = deque()
    pool = ThreadPoolExecutor(PARSE_THREADS, thread_name_prefix="parse")
    try:
        for lines, first in slices:
            found.lines = first + lines.len()
            at = 0
            if start_index is None:
                hit = find_start(lines, first)
                if hit is None:
                    found.before.extend(lines.to_list())
                    if len(found.before) > MAX_LINES_BEFORE:
                        break
                    continue
                found.before.extend(lines.slice(0, hit).to_list())
                start_index = first + hit
                if check_start is not None:
                    check_start(lines[hit], start_index)
            if found.header is None:
                at = start_index + header_offset - first
                if at >= lines.len():
                    continue
                found.header, found.header_index = lines[at], first + at
                at += 1
            if found.tail_index is None:
                hit = find_tail(lines, at)
                stop = lines.len() if hit is None else hit
                if stop > at and found.refused is None:
                    part = body_frame(lines, at, stop, first)
                    pending.append(pool.submit(body, found.header, found.header_index + 1, part))
                    while len(pending) > SLICES_IN_FLIGHT:
                        _collect(found, pending.popleft())
                if hit is None:
                    continue
                found.tail_index, at = first + hit, hit
            found.tail.extend(lines.slice(at).to_list())
        while pending:
            _collect(found, pending.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if found.header is not None and not found.parts and found.refused is None:
        empty = body_frame(pl.Series("text", [], dtype=pl.String), 0, 0, found.header_index + 1)
        found.parts.append(body(found.header, found.header_index + 1, empty))
    return found


def _collect(found: Sections, parsed: Future[pl.DataFrame]) -> None:
    """Add one slice's rows, in file order; the first slice refused (in file order) is the file's refusal."""
    if found.refused is not None:
        parsed.cancel()
        return
    try:
        found.parts.append(parsed.result())
    except InputError as exc:
        found.refused = exc.with_traceback(None)
        found.parts.clear()
