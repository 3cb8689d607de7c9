"""Golden cases: one small hand-built day per difference code (DESIGN §4), checked end to end."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.scenario import DAY, Scenario

DAY2 = DAY + timedelta(days=1)
FILLER = {"txn": "TF", "order": "FILL", "amount": "1.00"}  # makes the day's bill present (complete)

OTHER_CHANNEL = """
[[channels]]
id = "other"
kind = "csv"
shop_pay_ids = [2]
[channels.mapping]
columns = { channel_txn_id = "txn", order_no = "order", kind = "kind", occurred_at = "time", amount = "amount", currency = "currency", fee = "fee", status = "status" }
"""


def day_with(sc: Scenario, rows: list[dict[str, str]], filler: bool = True) -> dict[str, Any]:
    """Import ``rows`` (plus a matched filler order so the bill is complete), run DAY, return results by key."""
    if filler:
        sc.order("FILL", "1.00")
        rows = [*rows, FILLER]
    sc.import_(sc.statement(rows))
    summary = sc.run()
    results = {r["unit_key"]: r for r in sc.results(summary.run_id)}
    if filler:
        assert results.pop("FILL")["code"] == "matched"
    return results


def check(r: dict[str, Any], code: str, shop: str, channel: str, priority: int | None,
          auto: bool | None = None) -> None:
    assert r["code"] == code, r["detail"]
    assert r["shop_amount"] == Decimal(shop)
    assert r["channel_amount"] == Decimal(channel)
    assert r["diff"] == Decimal(channel) - Decimal(shop)
    assert r["priority"] == priority
    if auto is not None:
        assert r["auto_repairable"] is auto


def test_matched(scenario: Scenario) -> None:
    scenario.order("O1", "10.00", trade_no="T1")
    res = day_with(scenario, [{"txn": "T1", "order": "O1", "amount": "10.00"}])
    check(res["O1"], "matched", "10.00", "10.00", None, auto=False)
    assert scenario.exceptions() == []


@pytest.mark.parametrize("status", [1, -1])
def test_missing_callback_is_auto_repairable(scenario: Scenario, status: int) -> None:
    scenario.order("O1", "10.00", status=status)
    res = day_with(scenario, [{"txn": "T1", "order": "O1", "amount": "10.00"}])
    check(res["O1"], "missing_callback", "0", "10.00", 2, auto=True)
    (exc,) = scenario.exceptions()
    assert (exc["code"], exc["status"], exc["auto_repairable"]) == ("missing_callback", "open", True)


def test_missing_callback_above_auto_repair_max_needs_a_person(scenario: Scenario) -> None:
    scenario.order("O1", "500.01", status=1)
    scenario.order("O2", "500.00", status=1)
    res = day_with(scenario, [{"txn": "T1", "order": "O1", "amount": "500.01"},
                              {"txn": "T2", "order": "O2", "amount": "500.00"}])
    check(res["O1"], "missing_callback", "0", "500.01", 2, auto=False)
    check(res["O2"], "missing_callback", "0", "500.00", 2, auto=True)  # at the cap is still allowed


def test_missing_callback_with_other_amount_is_not_auto_repairable(tmp_path: Path) -> None:
    sc = Scenario(tmp_path, channel_extra="tolerance = 0.05\n")
    sc.order("O1", "10.00", status=1)
    res = day_with(sc, [{"txn": "T1", "order": "O1", "amount": "9.99"}])
    check(res["O1"], "missing_callback", "0", "9.99", 2, auto=False)


@pytest.mark.parametrize(("status", "code"), [(2, "matched"), (3, "matched"), (4, "matched"),
                                              (5, "paid_not_delivered")])
def test_shop_states_never_repaired_automatically(scenario: Scenario, status: int, code: str) -> None:
    scenario.order("O1", "10.00", status=status)
    res = day_with(scenario, [{"txn": "T1", "order": "O1", "amount": "10.00"}])
    check(res["O1"], code, "10.00", "10.00", 2 if code == "paid_not_delivered" else None, auto=False)


def test_paid_not_delivered_out_of_stock_is_auto_redeliverable(scenario: Scenario) -> None:
    scenario.order("O1", "10.00", status=6)
    res = day_with(scenario, [{"txn": "T1", "order": "O1", "amount": "10.00"}])
    check(res["O1"], "paid_not_delivered", "10.00", "10.00", 2, auto=True)
    assert "not delivered" in res["O1"]["detail"]


def test_amount_mismatch_and_tolerance(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    strict = Scenario(tmp_path / "a")
    strict.order("O1", "10.00")
    res = day_with(strict, [{"txn": "T1", "order": "O1", "amount": "9.90"}])
    check(res["O1"], "amount_mismatch", "10.00", "9.90", 2)
    (tmp_path / "b").mkdir()
    lenient = Scenario(tmp_path / "b", channel_extra="tolerance = 0.10\n")
    lenient.order("O1", "10.00")
    lenient.order("O2", "10.00")
    res = day_with(lenient, [{"txn": "T1", "order": "O1", "amount": "9.90"},
                             {"txn": "T2", "order": "O2", "amount": "9.89"}])
    assert res["O1"]["code"] == "matched"
    assert res["O1"]["diff"] == Decimal("-0.10")  # the tolerated cent difference is still reported
    check(res["O2"], "amount_mismatch", "10.00", "9.89", 2)


def test_currency_mismatch(scenario: Scenario) -> None:
    scenario.order("O1", "10.00")
    res = day_with(scenario, [{"txn": "T1", "order": "O1", "amount": "10.00", "currency": "USD"}])
    check(res["O1"], "currency_mismatch", "10.00", "10.00", 2)
    assert (res["O1"]["currency"], res["O1"]["shop_currency"]) == ("USD", "CNY")


def test_duplicate_payment(scenario: Scenario) -> None:
    scenario.order("O1", "10.00")
    res = day_with(scenario, [{"txn": "T1", "order": "O1", "amount": "10.00"},
                              {"txn": "T2", "order": "O1", "amount": "10.00", "time": "2026-11-20 10:05:00"}])
    check(res["O1"], "duplicate_payment", "10.00", "20.00", 2)
    assert len(res["O1"]["txn_ids"]) == 2


def test_shop_only_on_complete_bill(scenario: Scenario) -> None:
    scenario.order("O1", "10.00", created="2026-11-20 08:00:00")
    res = day_with(scenario, [])
    check(res["O1"], "shop_only", "10.00", "0", 1)
    (exc,) = scenario.exceptions()
    assert (exc["key"], exc["code"], exc["priority"]) == ("O1", "shop_only", 1)


def test_channel_only_unknown_order_and_no_order_no(scenario: Scenario) -> None:
    res = day_with(scenario, [{"txn": "T1", "order": "NOPE", "amount": "10.00"},
                              {"txn": "T2", "order": "", "amount": "7.50"}])
    check(res["NOPE"], "channel_only", "0", "10.00", 3)
    check(res["txn:T2"], "channel_only", "0", "7.50", 3)
    assert res["txn:T2"]["order_no"] is None
    assert res["txn:T2"]["channel_txn_id"] == "T2"


def test_a_lone_failed_try_with_no_shop_order_moves_no_money(scenario: Scenario) -> None:
    res = day_with(scenario, [{"txn": "T9", "order": "NOPE", "amount": "10.00", "status": "failed"}])
    check(res["NOPE"], "unpaid", "0", "0", None)
    assert scenario.exceptions() == []


@pytest.mark.parametrize(("refund", "channel"), [("-10.00", "0.00"), ("-3.00", "7.00")])
def test_refund_not_reflected(scenario: Scenario, refund: str, channel: str) -> None:
    scenario.order("O1", "10.00", trade_no="T1")
    res = day_with(scenario, [{"txn": "T1", "order": "O1", "amount": "10.00"},
                              {"txn": "T1", "order": "O1", "kind": "refund", "amount": refund,
                               "time": "2026-11-20 12:00:00"}])
    check(res["O1"], "refund_not_reflected", "10.00", channel, 2)
    assert Decimal(refund[1:]).to_eng_string() in res["O1"]["detail"]


def test_a_payment_reported_refunded_without_a_refund_row(scenario: Scenario) -> None:
    scenario.order("O1", "10.00", trade_no="T1")
    scenario.order("O2", "20.00", status=1)
    res = day_with(scenario, [{"txn": "T1", "order": "O1", "amount": "10.00", "status": "refunded"},
                              {"txn": "T2", "order": "O2", "amount": "20.00", "status": "refunded"}])
    check(res["O1"], "refund_not_reflected", "10.00", "10.00", 2)
    assert "refunded the payment" in res["O1"]["detail"]
    check(res["O2"], "missing_callback", "0", "20.00", 2, auto=False)


def test_trade_no_mismatch(scenario: Scenario) -> None:
    scenario.order("O1", "10.00", trade_no="T-FORGED")
    res = day_with(scenario, [{"txn": "T1", "order": "O1", "amount": "10.00"}])
    check(res["O1"], "trade_no_mismatch", "10.00", "10.00", 1)
    assert res["O1"]["shop_channel_txn_id"] == "T-FORGED"


def test_fee_mismatch_and_fee_tolerance(tmp_path: Path) -> None:
    sc = Scenario(tmp_path, channel_extra="fee_rate = 0.006\n")
    sc.order("O1", "100.00")
    sc.order("O2", "100.00")
    sc.order("O3", "100.00")
    res = day_with(sc, [{"txn": "T1", "order": "O1", "amount": "100.00", "fee": "0.80"},
                        {"txn": "T2", "order": "O2", "amount": "100.00", "fee": "0.61"},
                        {"txn": "T3", "order": "O3", "amount": "100.00", "fee": "0.62500"}])
    check(res["O1"], "fee_mismatch", "100.00", "100.00", 3)
    assert (res["O1"]["fee"], res["O1"]["expected_fee"]) == (Decimal("0.80"), Decimal("0.60"))
    # money as the cent, or finer where the channel charged a fraction of one; never a float's digits
    assert res["O1"]["detail"] == "fee 0.80 where the configured rate gives 0.60"
    assert res["O3"]["detail"] == "fee 0.625 where the configured rate gives 0.60"
    assert res["O2"]["code"] == "matched"  # 0.01 off is within the default fee_tolerance


def test_pending_inside_grace_window_then_shop_only(scenario: Scenario) -> None:
    scenario.order("LATE", "10.00", created="2026-11-20 23:30:00")
    scenario.order("EARLY", "10.00", created="2026-11-20 22:59:59")
    res = day_with(scenario, [])
    check(res["LATE"], "pending", "10.00", "0", 4)
    check(res["EARLY"], "shop_only", "10.00", "0", 1)
    assert "day boundary" in res["LATE"]["detail"]
    # the next day's complete bill does not have it either: now it is shop_only
    scenario.import_(scenario.statement([{**FILLER, "txn": "TF2", "time": "2026-11-21 09:00:00"}]))
    run2 = scenario.run(DAY2)
    check(scenario.result(run2.run_id, "LATE"), "shop_only", "10.00", "0", 1)
    by_code = {(e["key"], e["code"]): e for e in scenario.exceptions()}
    assert by_code[("LATE", "pending")]["status"] == "resolved"
    assert by_code[("LATE", "shop_only")]["status"] == "open"
    assert by_code[("LATE", "shop_only")]["business_date"] == DAY2


def test_pending_while_the_bill_is_not_imported(scenario: Scenario) -> None:
    scenario.order("O1", "10.00", created="2026-11-20 08:00:00")
    summary = scenario.run()
    assert summary.incomplete_channels == ["pay"]
    r = scenario.result(summary.run_id, "O1")
    check(r, "pending", "10.00", "0", 4)
    assert "not all in" in r["detail"]


def test_pending_matched_next_day_is_auto_closed(scenario: Scenario) -> None:
    scenario.order("O1", "10.00", created="2026-11-20 23:59:00", trade_no="T1")
    day_with(scenario, [])
    (pending,) = scenario.exceptions()
    assert (pending["key"], pending["code"], pending["status"]) == ("O1", "pending", "open")
    scenario.import_(scenario.statement([{"txn": "T1", "order": "O1", "amount": "10.00",
                                          "time": "2026-11-21 00:00:20"}]))
    run2 = scenario.run(DAY2)
    check(scenario.result(run2.run_id, "O1"), "matched", "10.00", "10.00", None)
    (after,) = scenario.exceptions()
    assert (after["id"], after["status"], after["closed_by"]) == (pending["id"], "resolved", "recon")
    events = scenario.query("SELECT action, actor, run_id, note FROM exception_events WHERE exception_id = ? "
                            "ORDER BY event_id", [pending["id"]])
    assert [e["action"] for e in events] == ["opened", "auto_closed"]
    assert events[1]["run_id"] == run2.run_id and "matched" in events[1]["note"]


def test_unpaid_is_counted_but_never_an_exception(scenario: Scenario) -> None:
    scenario.order("O1", "10.00", status=1)
    scenario.order("O2", "10.00", status=-1)
    res = day_with(scenario, [])
    check(res["O1"], "unpaid", "0", "0", None, auto=False)
    check(res["O2"], "unpaid", "0", "0", None, auto=False)
    assert scenario.exceptions() == []


def test_order_numbers_match_case_insensitively(scenario: Scenario) -> None:
    scenario.order("abcDEF1", "10.00", trade_no="T1")
    res = day_with(scenario, [{"txn": "T1", "order": "ABCdef1", "amount": "10.00"}])
    assert set(res) == {"ABCDEF1"}
    check(res["ABCDEF1"], "matched", "10.00", "10.00", None)
    assert res["ABCDEF1"]["order_no"] == "abcDEF1"  # the shop's own number, not the key it is matched by


def test_order_paid_on_another_channel_is_not_shop_only(tmp_path: Path) -> None:
    sc = Scenario(tmp_path, more_channels=OTHER_CHANNEL)
    sc.order("FILL", "1.00")
    sc.order("O1", "10.00", pay_id=1, created="2026-11-20 08:00:00")  # chose pay, paid through other
    sc.import_(sc.statement([FILLER]))
    sc.import_(sc.statement([{"txn": "X1", "order": "O1", "amount": "10.00"}]), channel="other")
    summary = sc.run()
    assert summary.counts == {"matched": 2}
    rows = sc.query("SELECT channel, unit_key, code FROM results WHERE run_id = ? ORDER BY channel, unit_key",
                    [summary.run_id])
    assert rows == [{"channel": "other", "unit_key": "O1", "code": "matched"},
                    {"channel": "pay", "unit_key": "FILL", "code": "matched"}]
    assert sc.exceptions() == []


def test_failed_attempt_near_midnight_waits_like_no_record(scenario: Scenario) -> None:
    """A failed try at 23:51 and the real payment after midnight: not a forged order (shop_only) yet."""
    scenario.order("O1", "10.00", created="2026-11-20 23:50:00", trade_no="T2")
    res = day_with(scenario, [{"txn": "T1", "order": "O1", "amount": "10.00", "status": "failed",
                               "time": "2026-11-20 23:51:00"}])
    check(res["O1"], "pending", "10.00", "0", 4)
    assert len(res["O1"]["txn_ids"]) == 1
    scenario.import_(scenario.statement([{"txn": "T2", "order": "O1", "amount": "10.00",
                                          "time": "2026-11-21 00:00:05"}]))
    run2 = scenario.run(DAY2)
    check(scenario.result(run2.run_id, "O1"), "matched", "10.00", "10.00", None)
    assert [(e["code"], e["status"]) for e in scenario.exceptions()] == [("pending", "resolved")]


def test_a_channel_named_twice_is_reconciled_once(scenario: Scenario) -> None:
    """`recon run --channel pay --channel pay`: every row still ends in one result, counted once."""
    scenario.order("B1", "10.00")
    scenario.import_(scenario.statement([{"txn": "T1", "order": "B1", "amount": "10.00"},
                                         {"txn": "T2", "order": "NOPE", "amount": "3.00"}]))
    summary = scenario.run(channels=["pay", "pay"])
    assert summary.channels == ["pay"] and summary.counts == {"matched": 1, "channel_only": 1}
    assert [r["unit_key"] for r in scenario.results(summary.run_id)] == ["B1", "NOPE"]
    assert scenario.query("SELECT sum(results)::INTEGER AS n FROM run_counts WHERE run_id = ?",
                          [summary.run_id]) == [{"n": 2}]
