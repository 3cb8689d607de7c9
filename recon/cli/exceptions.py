"""``recon exceptions list/show/resolve/ignore``: the ledger."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from recon.cli.common import actor, handled, load, out, parse_date, print_json
from recon.errors import NotFound, UsageError
from recon.ledger import close_by_person
from recon.lock import store_lock
from recon.store import open_store
from recon.taxonomy import BY_CODE

app = typer.Typer(help="The exception ledger: list, show, resolve, ignore.", no_args_is_help=True)

LIST_SQL = """
SELECT id, code, channel, order_no, channel_txn_id, shop_amount, channel_amount, currency, status, priority,
       first_seen, last_seen, auto_repairable, detail, business_date
FROM exceptions
WHERE ($date IS NULL OR business_date = $date) AND ($status IS NULL OR status = $status)
  AND ($code IS NULL OR code = $code) AND ($channel IS NULL OR channel = $channel)
ORDER BY status <> 'open', priority, business_date, id
"""
STATUSES = ("open", "repaired", "resolved", "ignored")


def _rows(cursor: Any) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


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
    config = load(ctx)
    with open_store(config, write=False) as con:
        rows = _rows(con.execute(LIST_SQL, {"date": parse_date(date_), "status": status, "code": code,
                                            "channel": channel}))
    if json_out:
        print_json([{k: v for k, v in r.items() if k != "business_date"} for r in rows])
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
        found = _rows(con.execute("SELECT * FROM exceptions WHERE id = ?", [exception_id]))
        if not found:
            raise NotFound(f"no exception with id {exception_id}")
        exc = found[0]
        events = _rows(con.execute(
            "SELECT event_at, actor, action, run_id, note FROM exception_events WHERE exception_id = ? ORDER BY event_id",
            [exception_id]))
        rows = _rows(con.execute(
            """
            SELECT t.txn_id, t.kind, t.order_no, t.channel_txn_id, t.refund_id, t.amount, t.currency, t.fee,
                   t.status, t.occurred_at, m.file_name || ':' || t.line_no AS provenance, t.source
            FROM results r, unnest(r.txn_ids) u(txn_id) JOIN channel_txn t USING (txn_id)
            JOIN imports m ON m.import_id = t.import_id
            WHERE r.run_id = ? AND r.channel = ? AND r.unit_key = ?
            ORDER BY t.txn_id
            """,
            [exc["last_seen_run"], exc["channel"], exc["key"]]))
        shop = _rows(con.execute(
            "SELECT order_no, amount, currency, status, shop_status, channel_txn_id, created_at, paid_at, "
            "buyer_contact, goods_kind, quantity, title FROM shop_orders WHERE order_no = ?",
            [exc["order_no"]])) if exc["order_no"] else []
    if json_out:
        print_json({**exc, "channel_rows": rows, "shop_order": shop[0] if shop else None, "events": events})
        return
    out.print(f"#{exc['id']} {exc['code']} ({exc['status']}, priority {exc['priority']}) "
              f"channel {exc['channel']} · key {exc['key']}")
    out.print(f"  {exc['detail']}")
    out.print(f"  suggested: {exc['suggested_action']}")
    if shop:
        s = shop[0]
        out.print(f"  shop: {s['order_no']} {s['amount']:.2f} {s['currency']} status {s['shop_status']} "
                  f"({s['status']}), trade_no {s['channel_txn_id'] or '-'}, created {s['created_at']}")
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
