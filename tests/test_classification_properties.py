"""Properties of one classification run over random small days: partition, money, codes, repair safety."""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from unittest.mock import patch

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from recon import classify
from recon.taxonomy import AUTO_REPAIR_CODES, CODES
from tests.scenario import DAY, Scenario

# The first choice of each list is the one hypothesis prefers (and shrinks to): the ordinary case.
PRICES = ["10.00", "0.01", "1.00", "9.99", "500.00", "600.00"]
SHOP_STATUSES = [4, 1, -1, 2, 3, 5, 6]
CREATED = ["2026-11-20 10:00:00", "2026-11-19 12:00:00", "2026-11-19 23:59:59", "2026-11-20 00:00:00",
           "2026-11-20 23:30:00", "2026-11-20 23:59:59", "2026-11-21 01:00:00"]
TIMES = ["2026-11-20 12:00:00", "2026-11-19 23:00:00", "2026-11-20 00:00:00", "2026-11-20 16:00:00",
         "2026-11-20 23:59:59", "2026-11-21 00:30:00"]
ROW_STATUSES = ["success"] * 10 + ["refunded", "pending", "failed", "closed"]
REPAIRABLE_FROM = {"missing_callback": {"1", "-1"}, "paid_not_delivered": {"6"}}
AUTO_REPAIR_MAX = Decimal(500)


@dataclass(frozen=True)
class Order:
    sn: str
    price: str
    status: int
    pay_id: int
    created: str


@st.composite
def orders(draw: st.DrawFn) -> list[Order]:
    names = draw(st.lists(st.integers(1, 12), unique=True, max_size=12))
    return [Order(f"Ord{n}", draw(st.sampled_from(PRICES)), draw(st.sampled_from(SHOP_STATUSES)),
                  draw(st.sampled_from([1, 1, 2])), draw(st.sampled_from(CREATED))) for n in names]


def channel_row(draw: st.DrawFn, order: str, price: str) -> dict[str, str]:
    kind = draw(st.sampled_from(["payment", "payment", "payment", "refund"]))
    amount = draw(st.sampled_from([price] * 6 + PRICES))  # mostly what the order asks
    return {
        "txn": f"T{draw(st.integers(1, 12))}",  # shared ids: a payment and its refund, or a repeated line
        "order": draw(st.sampled_from([order, order, order.upper(), order.lower()])),
        "kind": kind,
        "time": draw(st.sampled_from(TIMES)),
        "amount": f"-{amount}" if kind == "refund" else amount,
        "currency": draw(st.sampled_from(["CNY"] * 7 + ["USD"])),
        "status": draw(st.sampled_from(ROW_STATUSES)),
    }


@st.composite
def statement(draw: st.DrawFn, shop: list[Order]) -> list[dict[str, str]]:
    """0-2 rows per shop order, then rows for unknown orders and without an order no; at most 15."""
    rows = [channel_row(draw, o.sn, o.price) for o in shop for _ in range(draw(st.sampled_from([1, 0, 1, 2])))]
    for _ in range(draw(st.integers(0, 4))):
        rows.append(channel_row(draw, draw(st.sampled_from(["", "GHOST1", "ghost2"])), "7.00"))
    return draw(st.permutations(rows))[:15]


@st.composite
def days(draw: st.DrawFn) -> tuple[list[Order], list[dict[str, str]], bool]:
    shop = draw(orders())
    return shop, draw(statement(shop)), draw(st.sampled_from([True, True, True, False]))  # mostly a bill


def created_date(order: Order) -> date:
    return datetime.strptime(order.created, "%Y-%m-%d %H:%M:%S").date()  # noqa: DTZ007 shop wall clock


def _rows(results: list[dict[str, object]]) -> list[tuple[object, ...]]:
    """A run's results without the run's own id, in a fixed order."""
    return sorted(tuple(str(v) for k, v in r.items() if k != "run_id") for r in results)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(days())
def test_one_run_partitions_and_reconciles(day: tuple[list[Order], list[dict[str, str]], bool]) -> None:
    shop, rows, imported = day
    with tempfile.TemporaryDirectory() as folder:
        sc = Scenario(Path(folder))
        for o in shop:
            sc.order(o.sn, o.price, status=o.status, pay_id=o.pay_id, created=o.created)
        if imported:
            sc.import_(sc.statement(rows))
        summary = sc.run()
        results = sc.results(summary.run_id)
        txns = sc.query("SELECT txn_id, upper(order_no) AS key, amount, status, business_date FROM channel_txn "
                        "WHERE channel = 'pay'")
        rerun = sc.run()
        opened = sorted((e["key"], e["code"]) for e in sc.exceptions())
        # A run of millions cuts its units into parts by a hash of their key; cut this one into parts of
        # two units (several parts, some empty): the same results, row for row.
        with patch.object(classify, "UNITS_PER_PART", 2):
            in_parts = sc.run()
        assert _rows(sc.results(in_parts.run_id)) == _rows(sc.results(rerun.run_id))

    by_key = {o.sn.upper(): o for o in shop}
    day_txns = [t for t in txns if t["business_date"] == DAY]

    # (1) partition: every channel row of the date in exactly one result; every unit once
    explained = Counter(i for r in results for i in r["txn_ids"])
    assert explained == Counter(t["txn_id"] for t in day_txns)
    keys = [r["unit_key"] for r in results]
    assert len(keys) == len(set(keys))
    elsewhere = {t["key"] for t in txns if t["business_date"] != DAY and t["key"]}
    in_scope = {t["key"] for t in day_txns if t["key"] in by_key} | {
        k for k, o in by_key.items() if o.pay_id == 1 and created_date(o) == DAY and k not in elsewhere}
    assert {r["unit_key"] for r in results if r["shop_status"] is not None} == in_scope
    # rows without a shop order: money is channel_only, an unfinished try pending, a lone failed try unpaid
    assert all(r["unit_key"] not in by_key and r["code"] in ("channel_only", "pending", "unpaid")
               for r in results if r["shop_status"] is None)
    assert all(r["channel_amount"] == 0 for r in results if r["shop_status"] is None and r["code"] == "unpaid")

    # (2) money: channel side is exactly the settled rows; each diff is channel - shop; matched means equal
    settled = sum((t["amount"] for t in day_txns if t["status"] in ("success", "refunded")), Decimal(0))
    assert sum((r["channel_amount"] for r in results), Decimal(0)) == settled
    assert all(r["diff"] == r["channel_amount"] - r["shop_amount"] for r in results)
    assert all(r["diff"] == 0 for r in results if r["code"] == "matched")
    total = sum((r["channel_amount"] - r["shop_amount"] for r in results), Decimal(0))
    assert total == sum((r["diff"] for r in results if r["code"] != "matched"), Decimal(0))
    assert all(r["shop_amount"] == 0 for r in results if r["code"] in ("unpaid", "channel_only", "missing_callback"))

    # (3) known codes only, with their priorities; unpaid and matched are never exceptions
    priorities = {c.code: c.priority for c in CODES} | {"unpaid": None}
    assert all(r["code"] in priorities and r["priority"] == priorities[r["code"]] for r in results)
    assert summary.counts == dict(Counter(r["code"] for r in results))
    assert opened == sorted((r["unit_key"], r["code"]) for r in results if r["priority"] is not None)
    if not imported:
        assert all(r["code"] in ("unpaid", "pending") for r in results)

    # (4) auto-repair only where DESIGN §6 allows it
    for r in results:
        if not r["auto_repairable"]:
            continue
        order = by_key[r["unit_key"]]
        assert r["code"] in AUTO_REPAIR_CODES
        assert r["shop_status"] in REPAIRABLE_FROM[r["code"]]
        assert r["channel_amount"] == Decimal(order.price) <= AUTO_REPAIR_MAX
        assert r["currency"] == r["shop_currency"]

    # rerunning the same date classifies the same way
    assert rerun.counts == summary.counts
    for code in summary.counts:
        event(code)  # pytest --hypothesis-show-statistics shows what the examples covered
