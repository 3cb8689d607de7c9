"""A run reads only the shop orders its date can be asked about, yet still finds an order an earlier run read
when today's channel rows need it and the shop no longer hands it over (a shop exported a day at a time)."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from fetchers.sandbox import Payment, Sandbox
from fetchers.sandbox.trongrid import TronGridSandbox
from jobs.reconcile import reconcile
from recon.config import load_config
from tests.scenario import DAY, SAMPLES, Scenario
from tests.test_classification import check, day_with
from tests.test_usdt_matching import CONFIG, SH, WALLET, order


def forget(shop: Path, order_no: str) -> None:
    """The shop no longer hands the order over (as a bulk export of later days does not hold it)."""
    con = sqlite3.connect(shop)
    con.execute("DELETE FROM orders WHERE order_sn = ?", [order_no])
    con.commit()
    con.close()


def test_a_refund_a_month_later_is_held_against_the_order_an_earlier_run_read(scenario: Scenario) -> None:
    scenario.order("O1", "10.00", trade_no="T1")
    assert day_with(scenario, [{"txn": "T1", "order": "O1", "amount": "10.00"}])["O1"]["code"] == "matched"
    forget(scenario.shop_path, "O1")
    later = DAY + timedelta(days=30)
    scenario.order("FILL2", "1.00", created=f"{later} 10:00:00")
    scenario.import_(scenario.statement([
        {"txn": "R1", "order": "O1", "kind": "refund", "amount": "-10.00", "time": f"{later} 09:00:00"},
        {"txn": "TF2", "order": "FILL2", "amount": "1.00", "time": f"{later} 10:00:30"}]))
    run = scenario.run(later)
    refund = scenario.result(run.run_id, "O1")
    check(refund, "refund_not_reflected", "0", "-10.00", 2)
    assert refund["shop_status"] == "4" and refund["created_at"] is not None  # the order as first read
    assert run.counts == {"refund_not_reflected": 1, "matched": 1}


def test_a_transfer_after_midnight_matches_an_order_only_the_day_before_read(tmp_path: Path) -> None:
    """USDT transfers carry no order number: the order is found by amount among those created shortly before,
    here an order of the evening before that only the previous day's read of the shop held."""
    evening = datetime(2026, 11, 20, 23, 58, tzinfo=SH)
    shop = tmp_path / "shop.sqlite"
    con = sqlite3.connect(shop)
    con.executescript((SAMPLES / "dujiaoka_sqlite.sql").read_text(encoding="utf-8"))
    order(con, "LATE1", "10.07", evening, 1)
    con.commit()
    con.close()
    transfer = Payment("", Decimal("10.07"), "e" * 64, evening + timedelta(minutes=4), currency="USDT")
    with Sandbox(TronGridSandbox(WALLET, [transfer])) as sandbox:
        (tmp_path / "recon.toml").write_text(CONFIG.format(wallet=WALLET, base=sandbox.url("/trongrid")),
                                             encoding="utf-8")
        config = load_config(tmp_path / "recon.toml")
        first, _ = reconcile(config, DAY, None, "test", formats=[])
        assert first.counts == {"unpaid": 1}
        forget(shop, "LATE1")
        second, data = reconcile(config, DAY + timedelta(days=1), None, "test", formats=[])
    assert second.fetch_failed == []
    assert second.counts == {"missing_callback": 1}
    [exception] = data.exceptions.iter_rows(named=True)
    assert (exception["order_no"], exception["channel_txn_id"]) == ("LATE1", "e" * 64)


def test_a_rerun_of_a_date_leaves_out_an_order_whose_money_a_later_bill_booked(scenario: Scenario) -> None:
    """Rows of dates far from the run's are looked at only for the run's own orders, but they are looked at: an
    order of the day paid on a bill five days later belongs to that later date, also when the day is rerun."""
    scenario.order("O1", "10.00", trade_no="T1")
    assert day_with(scenario, [])["O1"]["code"] == "shop_only"
    later = DAY + timedelta(days=5)
    scenario.order("FILL2", "1.00", created=f"{later} 10:00:00")
    scenario.import_(scenario.statement([
        {"txn": "T1", "order": "O1", "amount": "10.00", "time": f"{later} 09:00:00"},
        {"txn": "TF2", "order": "FILL2", "amount": "1.00", "time": f"{later} 10:00:30"}]))
    assert scenario.result(scenario.run(later).run_id, "O1")["code"] == "matched"
    rerun = scenario.run(DAY)
    assert rerun.counts == {"matched": 1}
    assert [r["unit_key"] for r in scenario.results(rerun.run_id)] == ["FILL"]


def test_a_rerun_keeps_one_row_per_order_as_the_shop_shows_it_now(scenario: Scenario) -> None:
    """The store keeps each order once, as last read: a rerun's read of the window's orders and of an older order
    its bill names takes the place of the earlier run's rows (looked for by creation day, and by number)."""
    scenario.order("W1", "10.00", status=1)
    scenario.order("OLD", "20.00", status=1, created=f"{DAY - timedelta(days=10)} 10:00:00")
    scenario.import_(scenario.statement([{"txn": "T1", "order": "W1", "amount": "10.00"},
                                         {"txn": "T2", "order": "OLD", "amount": "20.00"}]))
    scenario.run()
    con = sqlite3.connect(scenario.shop_path)
    con.execute("UPDATE orders SET status = 4")  # both completed meanwhile
    con.commit()
    con.close()
    scenario.run()
    stored = scenario.query("SELECT order_no, shop_status FROM shop_orders ORDER BY order_no")
    assert [(r["order_no"], r["shop_status"]) for r in stored] == [("OLD", "4"), ("W1", "4")]
