"""Import statement files: content-addressed, idempotent, all or nothing, duplicates recorded."""

from __future__ import annotations

import dataclasses
import hashlib
import mmap
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from itertools import islice
from pathlib import Path

import duckdb
import polars as pl

from fetchers import PARSERS, ParsedStatement
from fetchers.chunks import SLICED_KINDS
from fetchers.tabular import SPAN_BYTES, release
from recon.config import ChannelConfig, Config
from recon.errors import InputError
from recon.faults import crash_point, pause_point
from recon.frames import insert_frame, repeated
from recon.store import ROW_GROUP_ROWS


@dataclass
class ImportOutcome:
    """What importing one file did."""

    file: str
    channel: str
    sha256: str
    import_id: int
    already_imported: bool
    rows_total: int = 0
    rows_new: int = 0
    rows_duplicate: int = 0
    # (line, "file:line" it repeats); API records have no line (None)
    duplicates: list[tuple[int | None, str]] = field(default_factory=list)
    period: tuple[date, date] | None = None


# Files of at least this size are mapped, not read, when their channel's parser reads a slice at a time
# (fetchers.chunks.SLICED_KINDS): hashing, parsing and archiving let each slice's pages go once past it,
# so a bill of a gigabyte is never resident whole. Smaller files, and the other parsers, get bytes.
MAP_BYTES = 64 * 1024 * 1024


def sha256_of(raw: bytes | mmap.mmap) -> str:
    digest = hashlib.sha256()
    for start in range(0, len(raw), SPAN_BYTES):
        digest.update(raw[start:start + SPAN_BYTES])
        release(raw, start, start + SPAN_BYTES)
    return digest.hexdigest()


def read_statement(path: Path, kind: str) -> bytes | mmap.mmap:
    """The file's contents: mapped when large and its parser reads slices (see MAP_BYTES), else bytes."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < MAP_BYTES or kind not in SLICED_KINDS:
                return fh.read()
            return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror}") from None


@dataclass(frozen=True)
class StatementBytes:
    """A statement file's contents (see ``read_statement``) and their sha256."""

    raw: bytes | mmap.mmap
    digest: str


def read_hashed(path: Path, kind: str) -> StatementBytes:
    raw = read_statement(path, kind)
    return StatementBytes(raw, sha256_of(raw))


# Files read and hashed ahead, each on a thread of its own (hashlib lets go of the GIL). A re-import is hashing
# and little else: two files at a time, and the first ones while the store opens.
READ_AHEAD_FILES = 2


def read_statements(files: Sequence[tuple[Path, str]]) -> Iterator[Future[StatementBytes]]:
    """Each (path, channel kind)'s ``read_hashed``, in order, as a future; the first ones start at once, before
    the iterator is first advanced, and at most READ_AHEAD_FILES wait beyond the one handed out. A file that
    cannot be read raises its InputError from its own future's ``result()``."""
    pool = ThreadPoolExecutor(READ_AHEAD_FILES, thread_name_prefix="hash")
    todo = iter(files)
    pending = deque(pool.submit(read_hashed, path, kind) for path, kind in islice(todo, READ_AHEAD_FILES))

    def handed_out() -> Iterator[Future[StatementBytes]]:
        try:
            while pending:
                pending.extend(pool.submit(read_hashed, path, kind) for path, kind in islice(todo, 1))
                # Handed out without a name here: a caller that lets go of a file's future lets go of its bytes.
                yield pending.popleft()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    return handed_out()


def archive_path(digest: str, archive_dir: Path) -> Path:
    return archive_dir / digest[:2] / digest


def archive(raw: bytes | mmap.mmap, digest: str, archive_dir: Path) -> Path:
    """Keep the original bytes, named by content, so every row's raw line can be shown later."""
    target = archive_path(digest, archive_dir)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{digest}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        for start in range(0, len(raw), SPAN_BYTES):
            fh.write(raw[start:start + SPAN_BYTES])
            release(raw, start, start + SPAN_BYTES)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    return target


@dataclass
class PreparedImport:
    """A parsed, validated file waiting to be stored."""

    channel: str
    path: Path
    digest: str
    raw: bytes | mmap.mmap
    parsed: ParsedStatement


def prepare_import(con: duckdb.DuckDBPyConnection, config: Config, channel_id: str, path: Path,
                   read: StatementBytes | None = None) -> PreparedImport | ImportOutcome:
    """Read and parse one file (or take ``read``, its contents as ``read_statements`` read them); an
    ImportOutcome when it was imported before. Changes nothing."""
    channel = config.channel(channel_id)
    if read is None:
        read = read_hashed(path, channel.kind)
    raw, digest = read.raw, read.digest
    del read
    seen = con.execute("SELECT import_id, channel FROM imports WHERE sha256 = ?", [digest]).fetchone()
    if seen:
        if seen[1] != channel_id:
            raise InputError(path, f"this file was already imported for channel {seen[1]!r} (import #{seen[0]})")
        return ImportOutcome(str(path), channel_id, digest, int(seen[0]), already_imported=True)
    try:
        parsed = PARSERS[channel.kind](path, raw, channel)
        check_merchant(path, channel, parsed)
    except InputError as exc:
        refused = exc
    else:
        return PreparedImport(channel_id, path, digest, raw, parsed)
    # The parser's frames in the traceback hold the file's bytes; callers quarantine a copy of a refused file,
    # and a large one must not be in memory twice then.
    del raw
    raise refused.with_traceback(None)


# Alipay bills name the account as the 16-digit PID followed by "0156"; configs may give either form.
ALIPAY_ACCOUNT_SUFFIX = "0156"


# The ``api`` identifier that names the merchant a channel's bills belong to, when merchant_id is not set.
API_MERCHANT_KEY = {"wechatpay": "mchid"}  # 商户号: what the bill's rows and the fetcher's check use


def check_merchant(path: Path, channel: ChannelConfig, parsed: ParsedStatement) -> None:
    """A bill of another merchant is never imported for this channel (by hand no more than fetched)."""
    expected = channel.merchant_id or channel.api.get(API_MERCHANT_KEY.get(channel.kind, ""))
    found = parsed.merchant_id
    if not expected or not found or found in (expected, expected + ALIPAY_ACCOUNT_SUFFIX):
        return
    raise InputError(path, f"bill of merchant {found}, but channel {channel.id!r} is merchant {expected}",
                     parsed.merchant_line)


def store_import(con: duckdb.DuckDBPyConnection, config: Config, prepared: PreparedImport,
                 source: str = "file") -> ImportOutcome:
    """Archive the original bytes and store the rows in one transaction.

    The archive copy is written on a thread while DuckDB takes the rows (a bill of a gigabyte: two seconds of
    writing); the import commits only once the copy is complete, and an archive that fails rolls it back.
    """
    raw = prepared.raw
    # The prepared rows are handed over, not shared: they are let go a slice at a time as DuckDB takes them.
    held = [prepared.parsed.rows]
    prepared.parsed = _without_rows(prepared.parsed)
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="archive") as copier:
            archived = copier.submit(archive, raw, prepared.digest, config.archive_dir)
            return _store_rows(con, prepared.channel, prepared.path, prepared.digest,
                               archive_path(prepared.digest, config.archive_dir), len(raw), source, prepared.parsed,
                               held, archived.result)
    finally:
        if isinstance(raw, mmap.mmap):
            raw.close()  # the copier is done with it: leaving the with waited for it


def import_file(con: duckdb.DuckDBPyConnection, config: Config, channel_id: str, path: Path,
                source: str = "file", read: StatementBytes | None = None) -> ImportOutcome:
    """Parse, validate and store one statement file in a single transaction (``read``: its contents as
    ``read_statements`` read them ahead, else it is read here)."""
    prepared = prepare_import(con, config, channel_id, path, read)
    if isinstance(prepared, ImportOutcome):
        return prepared
    return store_import(con, config, prepared, source)


def _period(parsed: ParsedStatement, rows: pl.DataFrame) -> tuple[date, date] | None:
    if parsed.period is not None:
        return parsed.period
    if rows.is_empty():
        return None
    dates = rows["business_date"]
    return dates.min(), dates.max()  # type: ignore[return-value]


def _without_rows(parsed: ParsedStatement) -> ParsedStatement:
    return dataclasses.replace(parsed, rows=parsed.rows.clear())


# Rows of a file stored at a time: whole row groups, so that only the file's last insert leaves a part-filled
# group for the commit's checkpoint to merge (it rewrote every group it merged).
STORE_ROWS = 2 * ROW_GROUP_ROWS


def _repeats(rows: pl.DataFrame) -> pl.DataFrame:
    """Keys the file holds more than once, with the first row (``ord``) and line of each: only that row is new.

    Kept aside as the few keys that repeat, not as a ranked copy of every row: at millions of rows a
    window over every key was the slowest step of an import, and its copy the largest.
    """
    keys = rows.select("natural_key", "ord", "line_no").filter(repeated(rows["natural_key"]))
    return keys.sort("ord").group_by("natural_key").agg(first_ord=pl.col("ord").first(),
                                                            first_line=pl.col("line_no").first())


def _held(con: duckdb.DuckDBPyConnection, channel_id: str, keys: pl.Series) -> pl.DataFrame:
    """The file's keys the store already holds for the channel, with the "file:line" of the row that holds each.

    Asked before the import's transaction (the writer lock keeps the store as it is): a frame registered inside
    a transaction stays in memory until the commit.
    """
    [(rows,)] = con.execute("SELECT count(*) FROM channel_txn WHERE channel = ?", [channel_id]).fetchall()
    if not rows:
        return pl.DataFrame(schema={"natural_key": pl.String, "held_at": pl.String})
    con.register("incoming_keys", keys.to_frame("natural_key").to_arrow(compat_level=pl.CompatLevel.newest()))
    try:
        return con.sql(
            """
            SELECT t.natural_key, any_value(m.file_name || ':' || coalesce(t.line_no::VARCHAR, '?')) AS held_at
            FROM channel_txn t JOIN imports m USING (import_id)
            WHERE t.channel = $channel AND t.natural_key IN (SELECT natural_key FROM incoming_keys)
            GROUP BY t.natural_key
            """,
            params={"channel": channel_id},
        ).pl()
    finally:
        con.unregister("incoming_keys")


def _duplicates(rows: pl.DataFrame, held: pl.DataFrame, repeats: pl.DataFrame, name: str) -> pl.DataFrame:
    """The file's rows that are not new, in file order: held already (by the row named), or repeating a row
    above them in the file."""
    if held.is_empty() and repeats.is_empty():
        return pl.DataFrame(schema={"ord": pl.UInt32, "line_no": pl.Int64, "natural_key": pl.String,
                                    "duplicate_of": pl.String})
    key = pl.col("natural_key")
    candidates = rows.select("ord", "line_no", "natural_key").filter(
        key.is_in(held["natural_key"].implode()) | key.is_in(repeats["natural_key"].implode()))
    found = candidates.join(held, on="natural_key", how="left").join(repeats, on="natural_key", how="left")
    first_line = pl.col("first_line").cast(pl.String).fill_null("?")
    return found.filter(pl.col("held_at").is_not_null() | (pl.col("ord") != pl.col("first_ord"))).select(
        "ord", "line_no", "natural_key",
        duplicate_of=pl.coalesce(pl.col("held_at"), pl.lit(f"{name}:") + first_line),
    ).sort("ord")


def _insert_new(con: duckdb.DuckDBPyConnection, piece: pl.DataFrame, duplicates: pl.DataFrame, first_id: int,
                channel_id: str, digest: str, import_id: int) -> None:
    """Store a piece of the file's rows that are new, each id its place in the file above ``first_id``."""
    if not duplicates.is_empty():
        piece = piece.filter(~pl.col("ord").is_in(duplicates["ord"].implode()))
    if piece.is_empty():
        return
    stored = piece.select(
        txn_id=pl.col("ord").cast(pl.Int64) + first_id, channel=pl.lit(channel_id), kind="kind", order_no="order_no",
        channel_txn_id="channel_txn_id", refund_id="refund_id", amount="amount", currency="currency", fee="fee",
        status="status", occurred_at="occurred_at", business_date="business_date", counterparty="counterparty",
        source=pl.lit(digest), line_no="line_no", import_id=pl.lit(import_id, pl.Int64), natural_key="natural_key",
        upstream_txn_id="upstream_txn_id",
    )
    insert_frame(con, "channel_txn", stored)  # each row's id is its own; the order rows are stored in means nothing


def store_parsed(con: duckdb.DuckDBPyConnection, channel_id: str, path: Path, digest: str, stored: Path, size: int,
                 source: str, parsed: ParsedStatement) -> ImportOutcome:
    """Store parsed rows as one import in a single transaction, recording duplicates."""
    return _store_rows(con, channel_id, path, digest, stored, size, source, _without_rows(parsed), [parsed.rows])


def _store_rows(con: duckdb.DuckDBPyConnection, channel_id: str, path: Path, digest: str, stored: Path, size: int,
                source: str, parsed: ParsedStatement, held: list[pl.DataFrame],
                before_commit: Callable[[], object] | None = None) -> ImportOutcome:
    """``store_parsed`` of the rows in ``held`` (taken out of it) and the rest of ``parsed``; ``before_commit``
    is called last inside the transaction (an exception from it rolls the import back)."""
    period = _period(parsed, held[0])
    total = held[0].height
    # ``ord``: the row's place in the file (API records have no line number), so "first" is always defined.
    rows = held.pop().with_row_index("ord")
    repeats = _repeats(rows)
    duplicates = _duplicates(rows, _held(con, channel_id, rows["natural_key"]), repeats, path.name)
    # Stored a piece at a time and each piece let go once DuckDB holds it: a bill of five million rows is
    # 750 MB in polars, and kept whole until the insert was done it sat beside DuckDB's own buffers.
    pieces = list(rows.iter_slices(STORE_ROWS)) or [rows]
    del rows
    pieces.reverse()
    con.execute("BEGIN")
    try:
        import_id = int(con.execute("SELECT nextval('import_ids')").fetchone()[0])  # type: ignore[index]
        # Ids follow the file's order above every id held. Not nextval: a sequence hands out one value at a
        # time and took half of the insert at millions of rows. The store's writer lock makes this safe.
        [(first_id,)] = con.execute("SELECT coalesce(max(txn_id), 0) + 1 FROM channel_txn").fetchall()
        while pieces:
            _insert_new(con, pieces.pop(), duplicates, int(first_id), channel_id, digest, import_id)
        if not duplicates.is_empty():
            con.from_arrow(duplicates.select(
                import_id=pl.lit(import_id, pl.Int64), line_no="line_no", channel=pl.lit(channel_id),
                natural_key="natural_key", duplicate_of="duplicate_of",
            ).to_arrow()).insert_into("import_duplicates")
        # Rows written, the imports ledger row not yet: a crash here must roll all of it back.
        crash_point("import_mid_store")
        pause_point("import_mid_store")
        dupes = con.execute(
            "SELECT line_no, duplicate_of FROM import_duplicates WHERE import_id = ? ORDER BY line_no", [import_id]
        ).fetchall()
        con.execute(
            "INSERT INTO imports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [import_id, channel_id, digest, path.name, str(stored), size, source, total, total - len(dupes),
             len(dupes), period[0] if period else None, period[1] if period else None, parsed.merchant_id,
             datetime.now(UTC)],
        )
        if before_commit is not None:
            before_commit()
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    crash_point("import_after_commit")  # stored, but the caller has not reported it (nor moved an inbox file)
    return ImportOutcome(str(path), channel_id, digest, import_id, already_imported=False, rows_total=total,
                         rows_new=total - len(dupes), rows_duplicate=len(dupes),
                         duplicates=[(None if line is None else int(line), str(of)) for line, of in dupes],
                         period=period)
