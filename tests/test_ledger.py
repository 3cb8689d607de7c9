"""The exception ledger across runs (DESIGN §5): idempotent reruns, people's notes, auto close/reopen."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from typing import Any

import pytest

from recon.errors import UsageError
from recon.ledger import close_by_person
from recon.lock import store_lock
from tests.scenario import DAY, Scenario

DAY2 = DAY + timedelta(days=1)


def set_status(sc: Scenario, sn: str, status: int) -> None:
    """The shop changes an order (a late callback, an operator, a refund)."""
    con = sqlite3.connect(sc.shop_path)
    con.execute("UPDATE orders SET status = ? WHERE order_sn = ?", [status, sn])
    con.commit()
    con.close()


def resolve(sc: Scenario, exception_id: int, note: str, actor: str = "alice", status: str = "resolved") -> None:
    with store_lock(sc.config.store_path), sc.store() as con:
        close_by_person(con, exception_id, status, actor, note)


def events(sc: Scenario, exception_id: int | None = None) -> list[dict[str, Any]]:
    where = "" if exception_id is None else f"WHERE exception_id = {int(exception_id)}"
    return sc.query(f"SELECT * FROM exception_events {where} ORDER BY event_id")


def busy_day(sc: Scenario) -> None:
    """One day with several kinds of difference, a near-midnight pending and a matched order."""
    sc.order("OK", "10.00", trade_no="T1")
    sc.order("MC", "20.00", status=1)
    sc.order("SO", "30.00", created="2026-11-20 09:00:00")
    sc.order("LATE", "40.00", created="2026-11-20 23:40:00")
    sc.order("DUP", "5.00")
    sc.import_(sc.statement([
        {"txn": "T1", "order": "OK", "amount": "10.00"},
        {"txn": "T2", "order": "MC", "amount": "20.00"},
        {"txn": "T3", "order": "DUP", "amount": "5.00"},
        {"txn": "T4", "order": "DUP", "amount": "5.00", "time": "2026-11-20 11:00:00"},
        {"txn": "T5", "order": "", "amount": "3.00"},
    ]))


def test_rerunning_a_date_is_idempotent(scenario: Scenario) -> None:
    busy_day(scenario)
    first = scenario.run()
    before = scenario.exceptions()
    second = scenario.run()
    assert first.counts == second.counts == {"matched": 1, "missing_callback": 1, "shop_only": 1, "pending": 1,
                                             "duplicate_payment": 1, "channel_only": 1}
    after = scenario.exceptions()
    assert [(e["id"], e["key"], e["code"], e["status"]) for e in after] == \
        [(e["id"], e["key"], e["code"], e["status"]) for e in before]
    assert len({(e["channel"], e["key"], e["code"]) for e in after}) == len(after) == 5
    assert all(e["first_seen_run"] == first.run_id and e["last_seen_run"] == second.run_id for e in after)
    opened = scenario.query("SELECT exception_id, count(*) AS n FROM exception_events WHERE action = 'opened' "
                            "GROUP BY exception_id")
    assert sorted(o["exception_id"] for o in opened) == sorted(e["id"] for e in after)
    assert all(o["n"] == 1 for o in opened)
    assert [e["action"] for e in events(scenario)] == ["opened"] * 5


def carry_late_order(scenario: Scenario) -> None:
    """Day 1 leaves a near-midnight paid order pending; day 2's complete statement does not have it."""
    scenario.order("LATE", "40.00", created="2026-11-20 23:40:00")
    scenario.order("FILL", "1.00")
    scenario.import_(scenario.statement([{"txn": "TF", "order": "FILL", "amount": "1.00"}]))
    scenario.run()
    scenario.import_(scenario.statement([{"txn": "TG", "order": "", "amount": "2.00",
                                          "time": "2026-11-21 09:00:00"}]))


def test_rerunning_the_next_date_keeps_the_carried_order(scenario: Scenario) -> None:
    """A pending order carried into the next date stays in that date's scope on a rerun."""
    carry_late_order(scenario)
    first = scenario.run(DAY2)
    second = scenario.run(DAY2)
    assert first.counts == second.counts == {"shop_only": 1, "channel_only": 1}
    assert scenario.result(second.run_id, "LATE")["code"] == "shop_only"
    shop_only = [e for e in scenario.exceptions() if e["code"] == "shop_only"]
    assert [(e["key"], e["status"], e["last_seen_run"]) for e in shop_only] == [("LATE", "open", second.run_id)]


def test_rerunning_an_older_date_does_not_overturn_a_later_verdict(scenario: Scenario) -> None:
    """Day 2 found the near-midnight order shop_only; a rerun of day 1 must not close that alarm."""
    carry_late_order(scenario)
    scenario.run(DAY2)
    before = {(e["key"], e["code"]): (e["id"], e["status"]) for e in scenario.exceptions()}
    n_events = len(events(scenario))
    scenario.run()
    after = {(e["key"], e["code"]): (e["id"], e["status"]) for e in scenario.exceptions()}
    assert after == before
    assert after[("LATE", "shop_only")][1] == "open" and after[("LATE", "pending")][1] == "resolved"
    assert len(events(scenario)) == n_events


def test_resolve_needs_a_note_and_records_who_and_why(scenario: Scenario) -> None:
    busy_day(scenario)
    scenario.run()
    target = next(e for e in scenario.exceptions() if e["code"] == "shop_only")
    for note in ("", "   "):
        with pytest.raises(UsageError, match="note"):
            resolve(scenario, target["id"], note)
    assert next(e for e in scenario.exceptions() if e["id"] == target["id"])["status"] == "open"
    assert [e["action"] for e in events(scenario, target["id"])] == ["opened"]

    resolve(scenario, target["id"], "  buyer paid in cash at the counter ")
    row = next(e for e in scenario.exceptions() if e["id"] == target["id"])
    assert (row["status"], row["closed_by"]) == ("resolved", "alice")
    last = events(scenario, target["id"])[-1]
    assert (last["action"], last["actor"], last["note"]) == ("resolved", "alice", "buyer paid in cash at the counter")


def test_resolved_by_a_person_stays_resolved_when_seen_again(scenario: Scenario) -> None:
    busy_day(scenario)
    scenario.run()
    exc = {e["code"]: e for e in scenario.exceptions()}
    resolve(scenario, exc["shop_only"]["id"], "checked with the bank: paid offline")
    resolve(scenario, exc["channel_only"]["id"], "test transfer, known", actor="bob", status="ignored")
    rerun = scenario.run()
    assert rerun.counts["shop_only"] == 1  # still a difference in the results ...
    now = {e["code"]: e for e in scenario.exceptions()}
    assert (now["shop_only"]["status"], now["shop_only"]["closed_by"]) == ("resolved", "alice")  # ... not reopened
    assert (now["channel_only"]["status"], now["channel_only"]["closed_by"]) == ("ignored", "bob")
    assert now["shop_only"]["last_seen_run"] == rerun.run_id
    assert [e["action"] for e in events(scenario, exc["shop_only"]["id"])] == ["opened", "resolved"]
    assert rerun.needs_person == 2  # missing_callback and duplicate_payment; pending waits by itself


def test_auto_closed_exception_reopens_when_the_difference_returns(scenario: Scenario) -> None:
    scenario.order("MC", "20.00", status=1)
    scenario.import_(scenario.statement([{"txn": "T2", "order": "MC", "amount": "20.00"}]))
    scenario.run()
    (exc,) = scenario.exceptions()
    assert (exc["code"], exc["status"]) == ("missing_callback", "open")

    set_status(scenario, "MC", 4)  # the late callback arrived
    closing = scenario.run()
    assert closing.counts == {"matched": 1}
    (closed,) = scenario.exceptions()
    assert (closed["id"], closed["status"], closed["closed_by"]) == (exc["id"], "resolved", "recon")

    set_status(scenario, "MC", -1)  # the shop lost it again
    reopening = scenario.run()
    assert reopening.counts == {"missing_callback": 1}
    (again,) = scenario.exceptions()
    assert (again["id"], again["status"], again["closed_by"]) == (exc["id"], "open", None)
    assert again["last_seen_run"] == reopening.run_id
    assert [(e["action"], e["actor"], e["run_id"]) for e in events(scenario, exc["id"])] == [
        ("opened", "recon", exc["first_seen_run"]),
        ("auto_closed", "recon", closing.run_id),
        ("reopened", "recon", reopening.run_id),
    ]


def test_nothing_is_ever_deleted(scenario: Scenario) -> None:
    busy_day(scenario)
    seen_exceptions: set[int] = set()
    seen_events: dict[int, tuple[Any, ...]] = {}

    def snapshot() -> None:
        ids = {e["id"] for e in scenario.exceptions()}
        assert seen_exceptions <= ids
        seen_exceptions.update(ids)
        now = {e["event_id"]: (e["exception_id"], e["action"], e["note"], e["actor"]) for e in events(scenario)}
        assert all(now.get(k) == v for k, v in seen_events.items())
        seen_events.update(now)

    scenario.run()
    snapshot()
    set_status(scenario, "MC", 4)
    resolve(scenario, next(e["id"] for e in scenario.exceptions() if e["code"] == "shop_only"), "known")
    scenario.run()
    snapshot()
    set_status(scenario, "MC", 1)
    scenario.import_(scenario.statement([{"txn": "T9", "order": "LATE", "amount": "40.00",
                                          "time": "2026-11-21 00:00:30"}]))
    scenario.run(DAY2)
    scenario.run()
    snapshot()
    assert len(seen_exceptions) == 5 and len(seen_events) == 9
    statuses = {e["code"]: e["status"] for e in scenario.exceptions()}
    assert statuses == {"missing_callback": "open", "shop_only": "resolved", "pending": "resolved",
                        "duplicate_payment": "open", "channel_only": "open"}
