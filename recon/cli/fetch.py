"""``recon fetch`` and ``recon query``: the channels' APIs (and inbox folders)."""

from __future__ import annotations

from typing import Annotated

import typer

from recon.cli.common import EXIT_FAILED, handled, load, out, parse_date, print_json
from recon.errors import ConfigError, UsageError
from recon.fetching import FetchOutcome, fetch_channel, make_fetcher
from recon.lock import store_lock
from recon.money import money_str
from recon.store import open_store


def print_fetch(outcomes: list[FetchOutcome]) -> None:
    for f in outcomes:
        if f.mode == "none":
            out.print(f"{f.channel}: import-only (no credentials or inbox): nothing fetched")
            continue
        new = sum(i.rows_new for i in f.imports)
        again = sum(1 for i in f.imports if i.already_imported)
        line = f"{f.channel}: {f.mode}: {len(f.imports)} statement(s), {new} new rows"
        out.print(line + (f", {again} already held" if again else ""))
        if f.error is not None:
            out.print(f"{f.channel}: failed: {f.error}" + (" (retry later)" if f.error.retryable else ""))


@handled
def fetch_command(
    ctx: typer.Context,
    date_: Annotated[str, typer.Option("--date", help="business date, e.g. 2026-11-20")],
    channel: Annotated[list[str] | None, typer.Option("--channel", "-c", help="only these channel ids")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Pull a business date's records from each channel's API (or inbox) into the store."""
    config = load(ctx)
    day = parse_date(date_)
    assert day is not None
    chosen = [config.channel(c) for c in channel] if channel else list(config.channels)
    with store_lock(config.store_path), open_store(config, write=True) as con:
        outcomes = [fetch_channel(con, config, ch, day) for ch in chosen]
    if json_out:
        print_json([{"channel": f.channel, "mode": f.mode, "statements": len(f.imports),
                     "rows_new": sum(i.rows_new for i in f.imports),
                     "error": str(f.error) if f.error else None,
                     "retryable": bool(f.error and f.error.retryable)} for f in outcomes])
    else:
        print_fetch(outcomes)
    if any(f.error for f in outcomes):
        raise typer.Exit(EXIT_FAILED)


@handled
def query_command(
    ctx: typer.Context,
    order_no: Annotated[str, typer.Argument(help="the shop's order number")],
    channel: Annotated[str | None, typer.Option("--channel", "-c", help="channel id (default: every API channel)")]
    = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Ask the channel's order-query API now whether an order was paid."""
    config = load(ctx)
    chosen = [config.channel(channel)] if channel else [c for c in config.channels if c.fetches]
    if not chosen:
        raise UsageError("no channel has API credentials to query with")
    answers = []
    for ch in chosen:
        if not ch.fetches:
            raise ConfigError(f"channels.{ch.id}.credentials", "this channel has no API credentials to query with")
        answers.append(make_fetcher(ch).query(order_no))
    if json_out:
        print_json([{"channel": a.channel, "order_no": a.order_no, "state": a.state, "raw_status": a.raw_status,
                     "amount": money_str(a.amount) if a.amount is not None else None, "currency": a.currency,
                     "channel_txn_id": a.channel_txn_id, "paid_at": a.paid_at, "note": a.note} for a in answers])
        return
    for a in answers:
        amount = f" {money_str(a.amount)} {a.currency or ''}" if a.amount is not None else ""
        txn = f" txn {a.channel_txn_id}" if a.channel_txn_id else ""
        note = f" — {a.note}" if a.note else ""
        out.print(f"{a.channel}: {a.order_no}: {a.state} ({a.raw_status}){amount}{txn}{note}")
