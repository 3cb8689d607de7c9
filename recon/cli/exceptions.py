"""``recon exceptions list/show/resolve/ignore``: the ledger."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from recon.cli.common import actor, handled, load, out, parse_date, print_json
from recon.errors import UsageError
from recon.ledger import close_by_person
from recon import ledger_views
from recon.ledger_views import STATUSES, ExceptionFilter
from recon.lock import store_lock
from recon.store import open_store
from recon.taxonomy import BY_CODE

app = typer.Typer(help="The exception ledger: list, show, resolve, ignore.", no_args_is_help=True)

# The keys of `recon exceptions list --json` (DESIGN §7): stable, whatever else the ledger views add.
JSON_KEYS = ("id", "code", "channel", "order_no", "channel_txn_id", "shop_amount", "channel_amount", "currency",
             "status", "priority", "first_seen", "last_seen", "auto_repairable", "detail")


@app.command("list")
@handled
def list_exceptions(
    ctx: typer.Context,
    date_: Annotated[str | None, typer.Option("--date", help="business date")] = None,
    status: Annotated[str | None, typer.Option("--status", help="open, repaired, resolved or ignored")] = None,
    code: Annotated[str | None, typer.Option("--code", help="difference code, e.g. missing_callback")] = None,
    channel: Annotated[str | None, typer.Option("--channel", help="channel id")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """List exceptions, open ones first, most urgent first."""
    if status is not None and status not in STATUSES:
        raise UsageError(f"--status: {status!r} (expected one of {', '.join(STATUSES)})")
    if code is not None and code not in BY_CODE:
        raise UsageError(f"--code: {code!r} is not a difference code")
    day = parse_date(date_)
    flt = ExceptionFilter(date_from=day, date_to=day, status=status, code=code, channel=channel)
    config = load(ctx)
    with open_store(config, write=False) as con:
        rows = ledger_views.list_exceptions(con, flt)
    if json_out:
        print_json([{k: r[k] for k in JSON_KEYS} for r in rows])
        return
    table = Table(show_lines=False)
    for heading in ("id", "code", "channel", "order_no", "shop", "channel", "status", "p", "detail"):
        table.add_column(heading)
    for r in rows:
        table.add_row(str(r["id"]), r["code"], r["channel"], r["order_no"] or "", _amount(r["shop_amount"]),
                      _amount(r["channel_amount"]), r["status"], str(r["priority"]), r["detail"] or "")
    out.print(table)
    out.print(f"{len(rows)} exception(s)")


def _amount(value: Any) -> str:
    return "" if value is None else f"{value:.2f}"


@app.command("show")
@handled
def show_exception(
    ctx: typer.Context,
    exception_id: Annotated[int, typer.Argument(help="exception id")],
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """One exception with both sides, where each channel row came from, and its history."""
    config = load(ctx)
    with open_store(config, write=False) as con:
        detail = ledger_views.exception_detail(con, exception_id)
    if json_out:
        print_json(detail.to_json())
        return
    exc, shop, rows, events = detail.exception, detail.shop_order, detail.channel_rows, detail.events
    out.print(f"#{exc['id']} {exc['code']} ({exc['status']}, priority {exc['priority']}) "
              f"channel {exc['channel']} · key {exc['key']}")
    out.print(f"  {exc['detail']}")
    out.print(f"  suggested: {exc['suggested_action']}")
    if shop:
        out.print(f"  shop: {shop['order_no']} {shop['amount']:.2f} {shop['currency']} status {shop['shop_status']} "
                  f"({shop['status']}), trade_no {shop['channel_txn_id'] or '-'}, created {shop['created_at']}")
    for r in rows:
        out.print(f"  channel: {r['kind']} {r['amount']:.2f} {r['currency']} {r['status']} txn {r['channel_txn_id']} "
                  f"at {r['occurred_at']} ← {r['provenance']}")
    for e in events:
        note = f": {e['note']}" if e["note"] else ""
        out.print(f"  {e['event_at']} {e['actor']} {e['action']}{note}")


def _close(ctx: typer.Context, exception_id: int, status: str, note: str | None) -> None:
    if not note or not note.strip():
        raise UsageError(f"--note is required: say why the exception is {status}")
    config = load(ctx)
    with store_lock(config.store_path), open_store(config, write=True) as con:
        close_by_person(con, exception_id, status, actor(), note)
    out.print(f"exception #{exception_id} {status}")


@app.command("resolve")
@handled
def resolve(
    ctx: typer.Context,
    exception_id: Annotated[int, typer.Argument(help="exception id")],
    note: Annotated[str | None, typer.Option("--note", help="what was done (required)")] = None,
) -> None:
    """Mark an exception handled; the note is kept in its history."""
    _close(ctx, exception_id, "resolved", note)


@app.command("ignore")
@handled
def ignore(
    ctx: typer.Context,
    exception_id: Annotated[int, typer.Argument(help="exception id")],
    note: Annotated[str | None, typer.Option("--note", help="why it needs no action (required)")] = None,
) -> None:
    """Mark an exception as needing no action; the note is kept in its history."""
    _close(ctx, exception_id, "ignored", note)
