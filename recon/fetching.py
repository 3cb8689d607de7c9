"""Pulling a business date from each channel into the store: its API, or files dropped in its inbox.

Fetched bills are stored exactly like imported files (archived by sha256, deduplicated, provenance
``api:<endpoint>``); a bill that fails to parse or verify is quarantined and nothing of it is stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl

from fetchers import FETCHERS, PARSERS, ChannelFetcher, FetchedStatement, ParsedStatement
from fetchers.http import ChannelSession
from fetchers.tabular import canonical
from recon.config import ChannelConfig, Config
from recon.errors import ConfigError, InputError, ReconError
from recon.filecopy import copy_file
from recon.importer import (
    ImportOutcome,
    PreparedImport,
    archive,
    check_merchant,
    prepare_import,
    read_statements,
    store_import,
    store_parsed,
)


@dataclass
class FetchOutcome:
    """What pulling one channel's date did."""

    channel: str
    mode: str  # api | inbox | none
    imports: list[ImportOutcome] = field(default_factory=list)
    error: ReconError | None = None


def make_fetcher(channel: ChannelConfig) -> ChannelFetcher:
    """The channel's API client, talking through one ChannelSession that knows its secrets."""
    if channel.kind not in FETCHERS:
        raise ConfigError(f"channels.{channel.id}.credentials",
                          f"kind {channel.kind} has no API client; drop its statements in an inbox instead")
    session = ChannelSession(channel.id, secrets=channel.secret_values())
    return FETCHERS[channel.kind](channel, session)


def quarantine_dir(config: Config) -> Path:
    return config.store_path.parent / "quarantine"


def quarantine(config: Config, name: str, raw: bytes | None, source: Path | None, reason: str,
               keep_source: bool = False) -> Path:
    """Keep a refused statement for a person to look at, with the reason beside it: ``raw``, or the file
    ``source``, moved there (copied with ``keep_source``: a file a person named on the command line stays)."""
    folder = quarantine_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = folder / f"{stamp}_{Path(name).name}"
    copy = 1
    while target.exists():  # two refused files of one name in one second (e.g. a/bill.csv and b/bill.csv)
        copy += 1
        target = folder / f"{stamp}-{copy}_{Path(name).name}"
    if source is not None and keep_source:
        copy_file(source, target)  # by the kernel, never the file's bytes in memory
    elif source is not None:
        shutil.move(source, target)
    elif raw is not None:
        target.write_bytes(raw)
    target.with_name(target.name + ".reason.txt").write_text(reason + "\n", encoding="utf-8")
    return target


def store_fetched(con: duckdb.DuckDBPyConnection, config: Config, channel: ChannelConfig,
                  fetched: FetchedStatement) -> ImportOutcome:
    """Store one pull; the same bill fetched twice is a no-op like a re-imported file."""
    if fetched.raw is not None:
        raw = fetched.raw
        try:
            parsed = PARSERS[channel.kind](Path(fetched.name), raw, channel)
            check_merchant(Path(fetched.name), channel, parsed)
        except InputError as exc:
            quarantine(config, f"{channel.id}_{fetched.name}", raw, None, str(exc))
            raise
        parsed = replace(parsed, period=fetched.period)
    else:
        rows = canonical(fetched.rows if fetched.rows is not None else pl.DataFrame())
        raw = rows.sort("natural_key").write_ndjson().encode("utf-8")
        parsed = ParsedStatement(rows=rows, period=fetched.period)
    digest = hashlib.sha256(raw).hexdigest()
    seen = con.execute("SELECT import_id FROM imports WHERE sha256 = ?", [digest]).fetchone()
    if seen:
        return ImportOutcome(fetched.name, channel.id, digest, int(seen[0]), already_imported=True)
    stored = archive(raw, digest, config.archive_dir)
    return store_parsed(con, channel.id, Path(fetched.name), digest, stored, len(raw), fetched.source, parsed)


def fetch_channel(con: duckdb.DuckDBPyConnection, config: Config, channel: ChannelConfig, day: date) -> FetchOutcome:
    """Pull ``day`` for one channel; errors are returned, not raised, so other channels go on."""
    if channel.fetches:
        outcome = FetchOutcome(channel.id, "api")
        try:
            for fetched in make_fetcher(channel).fetch(day):
                outcome.imports.append(store_fetched(con, config, channel, fetched))
        except ReconError as exc:
            outcome.error = exc
        return outcome
    if channel.inbox is not None:
        return _drain_inbox(con, config, channel)
    return FetchOutcome(channel.id, "none")


def _drain_inbox(con: duckdb.DuckDBPyConnection, config: Config, channel: ChannelConfig) -> FetchOutcome:
    """Import every file in the inbox; imported files move to <inbox>/done, refused ones to quarantine."""
    assert channel.inbox is not None
    inbox = config.resolve(channel.inbox)
    outcome = FetchOutcome(channel.id, "inbox")
    if not inbox.is_dir():
        outcome.error = InputError(inbox, "the channel's inbox folder does not exist")
        return outcome
    done = inbox / "done"
    files = sorted(p for p in inbox.iterdir() if p.is_file() and not p.name.startswith("."))
    # Read and hashed ahead, as `recon import` reads its files; each is still checked against the store and
    # stored in turn, so a second copy of a file finds the first one imported.
    for path, read in zip(files, read_statements([(path, channel.kind) for path in files]), strict=True):
        try:
            prepared = prepare_import(con, config, channel.id, path, read.result())
        except InputError as exc:
            del read  # a refused file's bytes are not held while it is moved
            if path.exists():  # else a person or a sync tool took it away since the listing: nothing to keep
                quarantine(config, f"{channel.id}_{path.name}", None, path, str(exc))
            outcome.error = exc
            continue
        result = prepared if isinstance(prepared, ImportOutcome) else store_import(con, config, prepared)
        outcome.imports.append(result)
        done.mkdir(exist_ok=True)
        with contextlib.suppress(FileNotFoundError):  # stored and archived; taken away since it was read
            os.replace(path, done / path.name)
    return outcome


__all__ = ["FetchOutcome", "PreparedImport", "fetch_channel", "make_fetcher", "quarantine", "store_fetched"]
