"""Import statement files: content-addressed, idempotent, all or nothing, duplicates recorded."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

from fetchers import PARSERS, ParsedStatement
from recon.config import ChannelConfig, Config
from recon.errors import InputError
from recon.faults import crash_point, pause_point


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


def sha256_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def archive(raw: bytes, digest: str, archive_dir: Path) -> Path:
    """Keep the original bytes, named by content, so every row's raw line can be shown later."""
    target = archive_dir / digest[:2] / digest
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{digest}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(raw)
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
    raw: bytes
    parsed: ParsedStatement


def prepare_import(con: duckdb.DuckDBPyConnection, config: Config, channel_id: str,
                   path: Path) -> PreparedImport | ImportOutcome:
    """Read and parse one file; an ImportOutcome when it was imported before. Changes nothing."""
    channel = config.channel(channel_id)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror}") from None
    digest = sha256_of(raw)
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
    """Archive the original bytes and store the rows in one transaction."""
    stored = archive(prepared.raw, prepared.digest, config.archive_dir)
    return store_parsed(con, prepared.channel, prepared.path, prepared.digest, stored, len(prepared.raw), source,
                        prepared.parsed)


def import_file(con: duckdb.DuckDBPyConnection, config: Config, channel_id: str, path: Path,
                source: str = "file") -> ImportOutcome:
    """Parse, validate and store one statement file in a single transaction."""
    prepared = prepare_import(con, config, channel_id, path)
    if isinstance(prepared, ImportOutcome):
        return prepared
    return store_import(con, config, prepared, source)


def _period(parsed: ParsedStatement) -> tuple[date, date] | None:
    if parsed.period is not None:
        return parsed.period
    if parsed.rows.is_empty():
        return None
    dates = parsed.rows["business_date"]
    return dates.min(), dates.max()  # type: ignore[return-value]


def store_parsed(con: duckdb.DuckDBPyConnection, channel_id: str, path: Path, digest: str, stored: Path, size: int,
                 source: str, parsed: ParsedStatement) -> ImportOutcome:
    """Store parsed rows as one import in a single transaction, recording duplicates."""
    period = _period(parsed)
    con.register("incoming", parsed.rows.to_arrow())
    con.execute("BEGIN")
    try:
        import_id = int(con.execute("SELECT nextval('import_ids')").fetchone()[0])  # type: ignore[index]
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE incoming_ranked AS
            SELECT i.*,
                   row_number() OVER (PARTITION BY i.natural_key ORDER BY i.line_no) AS nth,
                   first(i.line_no) OVER (PARTITION BY i.natural_key ORDER BY i.line_no) AS first_line,
                   held.held_at
            FROM incoming i
            LEFT JOIN (
                SELECT t.natural_key, m.file_name || ':' || coalesce(t.line_no::VARCHAR, '?') AS held_at
                FROM channel_txn t JOIN imports m USING (import_id)
                WHERE t.channel = $channel
            ) held USING (natural_key)
            """,
            {"channel": channel_id},
        )
        con.execute(
            """
            INSERT INTO channel_txn
            SELECT nextval('txn_ids'), $channel, kind, order_no, channel_txn_id, refund_id, amount, currency, fee,
                   status, occurred_at, business_date, counterparty, $sha, line_no, $import_id, natural_key,
                   upstream_txn_id
            FROM incoming_ranked WHERE nth = 1 AND held_at IS NULL ORDER BY line_no
            """,
            {"channel": channel_id, "sha": digest, "import_id": import_id},
        )
        con.execute(
            """
            INSERT INTO import_duplicates
            SELECT $import_id, line_no, $channel, natural_key,
                   coalesce(held_at, $name || ':' || coalesce(first_line::VARCHAR, '?'))
            FROM incoming_ranked WHERE nth > 1 OR held_at IS NOT NULL
            """,
            {"channel": channel_id, "import_id": import_id, "name": path.name},
        )
        # Rows written, the imports ledger row not yet: a crash here must roll all of it back.
        crash_point("import_mid_store")
        pause_point("import_mid_store")
        dupes = con.execute(
            "SELECT line_no, duplicate_of FROM import_duplicates WHERE import_id = ? ORDER BY line_no", [import_id]
        ).fetchall()
        total = parsed.rows.height
        con.execute(
            "INSERT INTO imports VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [import_id, channel_id, digest, path.name, str(stored), size, source, total, total - len(dupes),
             len(dupes), period[0] if period else None, period[1] if period else None, parsed.merchant_id,
             datetime.now(UTC)],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("incoming")
    crash_point("import_after_commit")  # stored, but the caller has not reported it (nor moved an inbox file)
    return ImportOutcome(str(path), channel_id, digest, import_id, already_imported=False, rows_total=total,
                         rows_new=total - len(dupes), rows_duplicate=len(dupes),
                         duplicates=[(None if line is None else int(line), str(of)) for line, of in dupes],
                         period=period)
