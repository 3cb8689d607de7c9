"""Classification: one SQL pass per (channel, business date) over the store (recon/sql/classify.sql)."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from importlib import resources
from zoneinfo import ZoneInfo

import duckdb

from recon.config import ChannelConfig
from recon.shops.base import MONEY_IN, ShopAdapter
from recon.store import unordered_inserts
from recon.taxonomy import CODES

CLASSIFY_SQL = resources.files("recon").joinpath("sql/classify.sql").read_text(encoding="utf-8")


def day_bounds(day: date, zone: str) -> tuple[datetime, datetime]:
    """[start, end) of a business date in ``zone``, as aware datetimes."""
    tz = ZoneInfo(zone)
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return start, end


def prepare(con: duckdb.DuckDBPyConnection) -> None:
    """Session helpers the classification SQL uses."""
    con.execute("CREATE OR REPLACE TEMP MACRO money(x) AS CAST(CAST(x AS DECIMAL(20,2)) AS VARCHAR)")
    # An amount that may hold fractions of a cent (WeChat writes fees to five places): to the cent where it is
    # whole cents, else every place it has. DuckDB's format() would print a DECIMAL as a DOUBLE.
    con.execute("CREATE OR REPLACE TEMP MACRO exact_money(x) AS CASE WHEN x = round(x, 2) THEN money(x) "
                "ELSE rtrim(CAST(x AS VARCHAR), '0') END")
    con.execute("CREATE OR REPLACE TEMP TABLE code_priority (code VARCHAR, priority INTEGER)")
    con.executemany("INSERT INTO code_priority VALUES (?, ?)", [(c.code, c.priority) for c in CODES])


# Per run, not per channel: every channel's pass reads the same shop orders and the same places where
# each order's money was booked, so their keys and places are joined once (a scan of every shop order
# against every booked order number per channel cost more than the channel's own classification).
#
# The orders are those a run of this date can be asked about, not every order the store has kept: the ones read
# by this run and those created in the shop window (read earlier, absent now: an export that no longer holds
# them), and, of the orders read earlier still, those the date's channel rows name (``named_orders``: what the
# load asked the shop for by number) and the pending ones carried to this date. Their places are every row of
# the window's dates and, of the earlier dates, only the rows naming them. So a run's joins and aggregates grow
# with its day, not with the days the store holds; only key columns of older orders and rows are scanned, and
# only when the store holds any (``run_orders_sql``): a first day runs the plain join.
KEY = "CASE WHEN $ci THEN upper(order_no) ELSE order_no END"  # an order number as a unit key
# Only the columns classification reads: a copy of every order's title and contact took twice the time.
ORDER_COLUMNS = ("order_no, amount, currency, status, shop_status, pay_method, channel_txn_id, created_at, "
                 f"{KEY} AS unit_key")
# The run's own orders: read by this run, or created in its shop window; and the run's own channel rows: those of
# the window's dates. The earlier ones are the rest (both columns are NOT NULL).
IN_WINDOW = "(loaded_at = $at OR (created_at >= $since AND created_at < $until))"
ON_WINDOW_DATES = "(business_date BETWEEN $first_date AND $last_date)"
RUN_ORDERS = f"SELECT {ORDER_COLUMNS} FROM shop_orders WHERE {IN_WINDOW}"
EARLIER_ORDERS = f"""SELECT {ORDER_COLUMNS} FROM shop_orders
    WHERE NOT {IN_WINDOW}
      AND {KEY} IN (
          SELECT {KEY} FROM named_orders WHERE on_rows
          UNION ALL
          -- the pending orders of earlier dates that classify.sql carries (its ``carried``)
          SELECT e.key FROM exceptions e
          WHERE list_contains($channels, e.channel) AND e.code = 'pending' AND e.business_date < $d
            AND (e.status = 'open' OR e.id IN (
                  SELECT v.exception_id FROM exception_events v JOIN runs r USING (run_id)
                  WHERE v.action = 'auto_closed' AND r.business_date = $d)))"""
BOOKED_ROWS = f"""SELECT channel, business_date, {KEY} AS unit_key
    FROM channel_txn WHERE order_no IS NOT NULL AND {ON_WINDOW_DATES}"""
# Money is not booked before its order was made: earlier rows are passed over by date (two days' margin for
# the zones) before their order numbers are read.
EARLIER_BOOKED_ROWS = f"""SELECT channel, business_date, {KEY} AS unit_key
    FROM channel_txn
    WHERE order_no IS NOT NULL AND NOT {ON_WINDOW_DATES}
      AND business_date >= (SELECT min(created_at)::DATE - 2 FROM keyed)
      AND {KEY} IN (SELECT unit_key FROM keyed)"""
# An order's number is kept only where it is not its unit key (``other_order_no``; the key is the number itself,
# or upper-cased for a shop that ignores case): the table is spilled and read back by every channel's pass, and
# a second copy of ten million numbers was a seventh of it. ``coalesce(other_order_no, unit_key)`` is the number.
# ``booked``: the order's money is on some channel's rows; ``booked_channel``/``booked_date``: the one
# (channel, date) it is booked on, NULL when booked on several. The places are joined as they are
# aggregated, not kept as a table of every order number of every bill held.
RUN_ORDERS_SQL = """
    CREATE OR REPLACE TEMP TABLE run_orders AS
    WITH keyed AS NOT MATERIALIZED (SELECT *, hash(unit_key) % $parts AS part FROM ({orders})),
    places AS (
        SELECT unit_key,
               CASE WHEN min(channel) = max(channel) AND min(business_date) = max(business_date)
                    THEN min(channel) END AS booked_channel,
               CASE WHEN min(channel) = max(channel) AND min(business_date) = max(business_date)
                    THEN min(business_date) END AS booked_date
        FROM ({booked_rows}) GROUP BY unit_key)
    SELECT k.* EXCLUDE (order_no), nullif(k.order_no, k.unit_key) AS other_order_no,
           p.unit_key IS NOT NULL AS booked, p.booked_channel, p.booked_date
    FROM keyed k LEFT JOIN places p USING (unit_key)
"""
# The few orders whose money is booked in several places (channels or dates).
BOOKED_IN_SEVERAL_SQL = """
    CREATE OR REPLACE TEMP TABLE run_booked_in_several AS
    SELECT unit_key FROM run_orders WHERE booked AND booked_channel IS NULL
"""


def run_orders_sql(earlier_orders: bool, earlier_rows: bool) -> str:
    """run_orders' statement, with the branches for orders read by earlier runs and channel rows of earlier
    dates only when the store holds any."""
    orders = "\n    UNION ALL\n    ".join([RUN_ORDERS, *([EARLIER_ORDERS] if earlier_orders else [])])
    rows = "\n    UNION ALL\n    ".join([BOOKED_ROWS, *([EARLIER_BOOKED_ROWS] if earlier_rows else [])])
    return RUN_ORDERS_SQL.format(orders=orders, booked_rows=rows)


# One channel's counts of a run, kept beside its results: what reports and the console's runs page count.
RUN_COUNTS_SQL = """
    INSERT INTO run_counts
    SELECT run_id, channel, code, coalesce(currency, shop_currency), count(*),
           sum(CASE WHEN channel_amount <> 0 THEN channel_amount ELSE shop_amount END), sum(diff)
    FROM results WHERE run_id = $run AND channel = $channel GROUP BY ALL
"""
# What a run's classification leaves behind: dropped once every channel is classified (see ``end_run``).
RUN_TABLES = ("run_orders", "run_booked_in_several", "named_orders")
# What one channel's pass leaves behind: dropped at its end, before the next channel's are built.
CHANNEL_TABLES = ("amount_matches", "scope_rows", "multi_row_units")

# Units (order keys) per part of a run. A run of millions of orders cuts its units into parts by a hash of
# their key (the ``part`` of run_orders and scope_rows); a channel's pass then joins its rows and orders a few
# parts at a time, so that each join's hash tables stay within the store's memory limit. Measured under 1 GB
# with ten million orders (5 M on one channel): parts of 1.25 M units 67 s a run, 2.5 M 61 s, 5 M 56 s; once the
# run's temp tables were narrowed and let go early, a pass over five million units no longer spilled much.
UNITS_PER_PART = 5_000_000
PER_GROUP = re.compile(r"\$group\b")  # a statement that runs once per group of parts


def _pieces(units: int) -> int:
    return max(1, -(-units // UNITS_PER_PART))


def shop_window(day: date, channels: list[ChannelConfig]) -> tuple[datetime, datetime]:
    """The shop orders a run of ``day`` reads: created from the day before the channels' business date
    begins to the day after it ends (a payment near midnight is booked on either side of it)."""
    bounds = [day_bounds(day, ch.zone) for ch in channels]
    return min(b[0] for b in bounds) - timedelta(days=1), max(b[1] for b in bounds) + timedelta(days=1)


def prepare_run(con: duckdb.DuckDBPyConnection, case_insensitive: bool, day: date, channels: list[ChannelConfig],
                loaded_at: datetime) -> int:
    """The run's shop orders keyed as units, each with the first and last (channel, date) its money was booked on.

    Call after the shop orders are loaded (at ``loaded_at``, by ``recon.pipeline.load_shop_orders``, which
    leaves ``named_orders`` behind) and before the first ``classify`` of the run;
    returns the number of parts the run's units are cut into (see UNITS_PER_PART), which ``classify`` is given.
    """
    since, until = shop_window(day, channels)
    # Transfers are matched to orders created up to a channel's match window before them.
    since -= max((ch.amount_match_window for ch in channels if ch.amount_match_window), default=timedelta(0))
    # The run's orders: this read's and those of the window an earlier read left (a day's export holds only
    # its own day, so the day before's orders are in the window too: twice the units, and twice the parts).
    [(units,)] = con.execute(
        f"SELECT greatest((SELECT count(*) FROM shop_orders WHERE {IN_WINDOW}), "
        "                (SELECT count(*) FROM channel_txn WHERE business_date = $d))",
        {"at": loaded_at, "since": since, "until": until, "d": day},
    ).fetchall()
    parts = _pieces(int(units))
    # Every row of the window's dates is taken whole (the run's own rows, mostly): a day either side in any zone.
    first_date, last_date = since.date() - timedelta(days=1), until.date() + timedelta(days=1)
    params = {"ci": case_insensitive, "parts": parts, "d": day, "channels": [ch.id for ch in channels],
              "at": loaded_at, "since": since, "until": until, "first_date": first_date, "last_date": last_date}
    [(earlier_orders, earlier_rows)] = con.execute(
        f"SELECT EXISTS (SELECT 1 FROM shop_orders WHERE NOT {IN_WINDOW}), "
        f"       EXISTS (SELECT 1 FROM channel_txn WHERE NOT {ON_WINDOW_DATES})",
        {k: params[k] for k in ("at", "since", "until", "first_date", "last_date")},
    ).fetchall()
    for statement in (run_orders_sql(bool(earlier_orders), bool(earlier_rows)), BOOKED_IN_SEVERAL_SQL):
        con.execute(statement, _used(params, statement))
    return parts


def classify(con: duckdb.DuckDBPyConnection, run_id: int, channel: ChannelConfig, day: date,
             shop: ShopAdapter, complete: bool, parts: int = 1) -> None:
    """Write the results of one (channel, date) for ``run_id``, and their counts (``run_counts``).

    ``parts`` is what ``prepare_run`` returned; the statement that names ``$group`` runs once per group of
    parts (``part % $groups = $group``), as many groups as the channel's units need.
    """
    start, end = day_bounds(day, channel.zone)
    params = {
        "run_id": run_id,
        "channel": channel.id,
        "d": day,
        "day_start": start,
        "day_end": end,
        "grace_start": end - channel.grace,
        "incomplete": not complete,
        "tol": channel.tolerance,
        "fee_rate": channel.fee_rate,
        "fee_tol": channel.fee_tolerance,
        "pay_ids": channel.pay_ids,
        "ci": shop.case_insensitive,
        "auto_repair_max": channel.auto_repair_max,
        "repairable_missing": list(shop.repairable.get("missing_callback", ())),
        "repairable_undelivered": list(shop.repairable.get("paid_not_delivered", ())),
        "match_window": channel.amount_match_window,
        "money_in": list(MONEY_IN),
        "parts": parts,
    }
    with unordered_inserts(con):
        for statement in _statements(CLASSIFY_SQL):
            if not PER_GROUP.search(statement):
                con.execute(statement, _used(params, statement))
                continue
            # The channel's own units (its rows of the date) decide how many groups of the run's parts it takes.
            [(rows,)] = con.execute("SELECT count(*) FROM scope_rows").fetchall()
            groups = min(parts, _pieces(int(rows)))
            for group in range(groups):
                con.execute(statement, _used({**params, "groups": groups, "group": group}, statement))
    for table in CHANNEL_TABLES:
        con.execute(f"DROP TABLE IF EXISTS temp.{table}")
    con.execute(RUN_COUNTS_SQL, {"run": run_id, "channel": channel.id})


def end_run(con: duckdb.DuckDBPyConnection) -> None:
    """Let go of what ``prepare_run`` built, once the run's channels are classified."""
    for table in RUN_TABLES:
        con.execute(f"DROP TABLE IF EXISTS temp.{table}")


def _used(params: dict[str, object], statement: str) -> dict[str, object]:
    """The parameters ``statement`` names (DuckDB refuses unused ones)."""
    return {k: v for k, v in params.items() if re.search(rf"\${k}\b", statement)}


def _statements(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";\n") if s.strip()]
