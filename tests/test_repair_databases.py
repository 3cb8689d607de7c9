"""Safe repair of lost payments (掉单) against real shop databases (DESIGN §6).

dujiaoka's real DDL on the live MariaDB (and translated onto the live PostgreSQL), seeded with 掉单
orders, delivered orders and orders recon must never touch; recon run / repair / redeliver are run
in-process and as real processes, with crashes, a second writer and a genuine late notify.
"""

from __future__ import annotations

import email
import json
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import pytest

from tests.alert_servers import smtp_server
from tests.dujiaoka_db import ShopDb as DjDb
from tests.dujiaoka_db import dujiaoka_unlocked
from tests.repair_world import (
    BY_SN,
    DAY,
    REPAIRED,
    UNTOUCHED,
    World,
    assert_no_card_twice,
    create_pg_tables,
    delivered_cards,
)
from tests.shopdb import ShopDb, mariadb_dujiaoka, postgres_database  # noqa: F401 (fixtures)


@pytest.fixture
def maria_world(tmp_path: Path, mariadb_dujiaoka: ShopDb) -> World:  # noqa: F811
    db = DjDb("mysql", mariadb_dujiaoka.connect, mariadb_dujiaoka.name)
    return World(tmp_path, db, f'kind = "dujiaoka"\ndsn = "{mariadb_dujiaoka.dsn}"')


@pytest.fixture
def pg_world(tmp_path: Path, postgres_database: ShopDb) -> World:  # noqa: F811
    create_pg_tables(postgres_database.connect)
    db = DjDb("postgresql", postgres_database.connect, postgres_database.name)
    return World(tmp_path, db, f'kind = "sql"\ndsn = "{postgres_database.dsn}"\nschema = "dujiaoka"')


def assert_repaired(world: World, before_goods: dict[int, tuple[int, int]]) -> None:
    """The five 掉单 are completed and delivered exactly as dujiaoka's completedOrder would."""
    orders, cards = world.orders(), world.cards()
    for sn in ("DJ-PEND-1", "DJ-PEND-2", "DJ-LOOP-1", "DJ-RESTOCK"):
        o = orders[sn]
        assert o["status"] == 4, (sn, o)
        assert o["trade_no"] == BY_SN[sn].txn
        assert o["actual_price"] == Decimal(BY_SN[sn].price) * BY_SN[sn].quantity
        got = delivered_cards(o)
        assert len(got) == o["buy_amount"]
        assert all(cards[c]["goods_id"] == o["goods_id"] for c in got)
    assert delivered_cards(orders["DJ-LOOP-1"]) == ["NETFLIX-LOOP-1"]
    assert cards["NETFLIX-LOOP-1"]["status"] == 1  # a loop card stays available
    assert all(c.startswith("STEAM-0") for sn in ("DJ-PEND-1", "DJ-PEND-2", "DJ-RESTOCK")
               for c in delivered_cards(orders[sn]))
    manual = orders["DJ-MANUAL"]
    assert (manual["status"], manual["trade_no"], manual["info"]) == (2, "T-MANUAL", "")
    after = world.goods()
    # sales_volume: +1 PEND-1, +2 PEND-2, +0 RESTOCK (counted when it went to 6); loop +1; manual +1 and stock −1
    assert after[1] == (before_goods[1][0] + 3, before_goods[1][1])
    assert after[2] == (before_goods[2][0] + 1, before_goods[2][1])
    assert after[3] == (before_goods[3][0] + 1, before_goods[3][1] - 1)
    assert after[4] == before_goods[4]
    steam_sold = sorted(c for c, v in cards.items() if v["goods_id"] == 1 and v["status"] == 2)
    assert len(steam_sold) == 1 + 4  # the old one plus 1 + 2 + 1 delivered now
    assert_no_card_twice(world)


def test_run_apply_repairs_the_lost_orders_on_mariadb_and_a_second_run_changes_nothing(maria_world: World) -> None:
    w = maria_world
    assert w.cli("import", "--channel", "pay", str(w.statement)).exit_code == 0
    untouched_before = w.raw_orders(UNTOUCHED)
    gift_cards_before = {c: v for c, v in w.cards().items() if v["goods_id"] == 4}
    goods_before = w.goods()
    pays_before = w.raw("pays")

    first = w.cli("run", "--date", DAY, "--apply", "--json")
    # DJ-BIG, DJ-DIFF and DJ-S5 still need a person
    assert first.exit_code == 3, first.output
    summary = json.loads(first.output)
    # DJ-BIG (above auto_repair_max) and DJ-S5 (status 5) are skipped as not auto-repairable
    assert summary["repairs"] == {"planned": 5, "applied": 5, "skipped": 2, "failed": 0}, summary

    assert_repaired(w, goods_before)
    assert w.raw_orders(UNTOUCHED) == untouched_before
    assert {c: v for c, v in w.cards().items() if v["goods_id"] == 4} == gift_cards_before
    assert w.raw("pays") == pays_before

    journal = w.journal()
    assert sorted(r["order_no"] for r in journal) == sorted(REPAIRED)
    assert {r["state"] for r in journal} == {"applied"}
    assert all(json.loads(r["detail"])["cards_delivered"] == (0 if r["order_no"] == "DJ-MANUAL"
                                                              else BY_SN[r["order_no"]].quantity) for r in journal)
    exc = {r["order_no"]: r for r in w.store("SELECT * FROM exceptions")}
    assert {sn: exc[sn]["status"] for sn in REPAIRED} == dict.fromkeys(REPAIRED, "repaired")
    for sn in ("DJ-BIG", "DJ-DIFF", "DJ-S5"):
        assert exc[sn]["status"] == "open" and not exc[sn]["auto_repairable"], exc[sn]
    assert exc["DJ-DIFF"]["code"] == "amount_mismatch"
    assert exc["DJ-S5"]["code"] == "paid_not_delivered"

    # once more: nothing is planned, nothing in the shop moves, the journal and the ledger stay as they were
    shop_before = [w.raw(t) for t in ("orders", "carmis", "goods")]
    second = w.cli("run", "--date", DAY, "--apply", "--json")
    assert second.exit_code == 3, second.output
    assert json.loads(second.output)["repairs"] == {"planned": 0, "applied": 0, "skipped": 2, "failed": 0}
    assert [w.raw(t) for t in ("orders", "carmis", "goods")] == shop_before
    assert w.journal() == journal
    exc_after = {r["order_no"]: r for r in w.store("SELECT * FROM exceptions")}
    for sn in REPAIRED:
        assert exc_after[sn]["status"] == "repaired", exc_after[sn]
        events = w.store("SELECT action FROM exception_events WHERE exception_id = ? ORDER BY event_id",
                         [exc_after[sn]["id"]])
        assert [e["action"] for e in events].count("repaired") == 1, (sn, events)


def _wait_for_lock_wait(world: World, procs: list[subprocess.Popen[str]], timeout: float = 40.0) -> None:
    """Until some transaction waits for a row lock in this database (a repair blocked by the notify)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(p.poll() is not None for p in procs):
            raise AssertionError(f"both repairs ended without waiting: {[p.communicate() for p in procs]}")
        blocked = world.db.run(
            "SELECT count(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE() AND COMMAND = 'Query'"
            " AND TIME_MS > 200 AND (INFO LIKE ? OR INFO LIKE ?)", ("%FOR UPDATE%", "UPDATE goods%"))
        if int(blocked[0][0]):
            return
        time.sleep(0.05)
    raise AssertionError(f"no repair process ever waited for the notify's row locks: "
                         f"{world.db.run('SHOW FULL PROCESSLIST')} {world.db.run('SELECT * FROM information_schema.INNODB_TRX')}")


def test_two_repair_processes_and_a_genuine_late_notify_deliver_each_order_once(maria_world: World) -> None:
    w = maria_world
    w.import_and_reconcile()
    goods_before = w.goods()
    procs = []

    def start_repairs_while_the_notify_holds_its_locks() -> None:
        procs.extend([w.process("repair", "--apply", "--json"), w.process("repair", "--apply", "--json")])
        _wait_for_lock_wait(w, procs)

    notify = dujiaoka_unlocked(w.db, "DJ-PEND-1", Decimal("50.00"), "T-PEND-1",
                               holding=start_repairs_while_the_notify_holds_its_locks)
    assert notify == "completed"
    outputs = [p.communicate(timeout=120) for p in procs]
    results = [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs, strict=True)]
    codes = sorted(rc for rc, _, _ in results)
    for rc, out, err in results:
        if rc == 75:
            assert "locked by PID" in err and "repair --apply" in err, err
        else:
            assert rc in (0, 1, 3), (rc, out, err)
    assert codes != [75, 75], results

    orders = w.orders()
    # the notify delivered DJ-PEND-1 (its first card); recon refused to deliver it again
    assert orders["DJ-PEND-1"]["status"] == 4 and orders["DJ-PEND-1"]["trade_no"] == "T-PEND-1"
    assert len(delivered_cards(orders["DJ-PEND-1"])) == 1
    for sn in REPAIRED:
        assert orders[sn]["status"] in (2, 4), (sn, orders[sn])
    assert_no_card_twice(w)
    # every sale counted once: the notify's 1 + PEND-2's 2 (+0 for the restocked order)
    assert w.goods()[1][0] == goods_before[1][0] + 3
    journal = {r["order_no"]: r for r in w.journal()}
    assert {r["state"] for r in journal.values()} <= {"applied", "failed"}
    assert all(journal[sn]["state"] == "applied" for sn in REPAIRED if sn != "DJ-PEND-1"), journal
    # a rerun after the race changes nothing in the shop
    shop_before = [w.raw(t) for t in ("orders", "carmis", "goods")]
    rc, out, err = w.run_process("repair", "--apply", "--json")
    assert rc in (0, 1, 3), (rc, out, err)
    assert [w.raw(t) for t in ("orders", "carmis", "goods")] == shop_before


@pytest.mark.parametrize("point", ["after_intent", "after_shop_update", "before_verify"])
def test_a_crash_at_any_point_then_a_rerun_delivers_every_order_exactly_once(maria_world: World,
                                                                             point: str) -> None:
    w = maria_world
    w.import_and_reconcile()
    goods_before = w.goods()
    before = w.orders()

    rc, out, err = w.run_process("repair", "--apply", crash_at=point)
    assert rc == -9, (rc, out, err)
    at_crash = w.orders()
    changed = [sn for sn in before if at_crash[sn] != before[sn]]
    journal = w.journal()
    assert [r["state"] for r in journal] == ["started"]  # the intent was committed before acting
    assert changed == ([] if point == "after_intent" else [journal[0]["order_no"]]), changed

    rc, out, err = w.run_process("repair", "--apply", "--json")
    assert rc in (0, 3), (rc, out, err)
    for sn in changed:  # the order completed before the crash kept its cards: no second delivery
        assert w.orders()[sn] == at_crash[sn]
    assert_repaired(w, goods_before)
    states = {r["order_no"]: r["state"] for r in w.journal()}
    assert states == dict.fromkeys(REPAIRED, "applied"), states
    exc = {r["order_no"]: r["status"] for r in w.store("SELECT order_no, status FROM exceptions")}
    assert {sn: exc[sn] for sn in REPAIRED} == dict.fromkeys(REPAIRED, "repaired")

    # and a third run has nothing left to do
    shop_before = [w.raw(t) for t in ("orders", "carmis", "goods")]
    rc, out, err = w.run_process("repair", "--apply", "--json")
    assert rc == 3, (rc, out, err)  # DJ-BIG and DJ-S5 still wait for a person
    third = json.loads(out)
    assert third["counts"] == {"planned": 0, "applied": 0, "skipped": 2, "failed": 0}
    assert sorted(s["order_no"] for s in third["skipped"]) == ["DJ-BIG", "DJ-S5"]
    assert [w.raw(t) for t in ("orders", "carmis", "goods")] == shop_before


@pytest.fixture
def mailbox_world(tmp_path: Path, mariadb_dujiaoka: ShopDb) -> Iterator[tuple[World, object]]:  # noqa: F811
    with smtp_server() as (box, port):
        db = DjDb("mysql", mariadb_dujiaoka.connect, mariadb_dujiaoka.name)
        repair = (f'[repair]\nshop_name = "测试小店"\nshop_url = "https://shop.example"\n'
                  f'[repair.mail]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
                  f'sender = "shop@shop.example"\n')
        yield World(tmp_path, db, f'kind = "dujiaoka"\ndsn = "{mariadb_dujiaoka.dsn}"', repair), box


def _message(raw: bytes) -> tuple[EmailMessage, str]:
    msg = email.message_from_bytes(raw, policy=default_policy)
    assert isinstance(msg, EmailMessage)
    text = "\n".join(part.get_content() for part in msg.walk() if part.get_content_maintype() == "text")
    return msg, text


def test_redeliver_resends_the_same_cards_and_force_needs_a_reason(mailbox_world: tuple[World, object]) -> None:
    w, box = mailbox_world
    shop_before = [w.raw(t) for t in ("orders", "carmis", "goods")]

    done = w.cli("redeliver", "DJ-DONE-1", "--yes", "--json")
    assert done.exit_code == 0, done.output
    answer = json.loads(done.output)
    assert (answer["action"], answer["state"], answer["cards_delivered"]) == ("resend", "applied", 1), answer

    envelopes = box.envelopes  # type: ignore[attr-defined]
    assert len(envelopes) == 1
    assert envelopes[0].rcpt_tos == ["dj-done-1@example.com"]
    msg, text = _message(envelopes[0].content)
    assert msg["To"] == "dj-done-1@example.com"
    assert "STEAM-OLD-1" in text
    others = [c for c in w.cards() if c != "STEAM-OLD-1" and c in text]
    assert others == [], others  # exactly its own cards, no new one
    assert [w.raw(t) for t in ("orders", "carmis", "goods")] == shop_before  # nothing sold, nothing changed
    journal = w.journal()
    assert [(r["order_no"], r["action"], r["state"]) for r in journal] == [("DJ-DONE-1", "resend", "applied")]

    # a resend is repeatable: the same cards again
    again = w.cli("redeliver", "DJ-DONE-1", "--yes")
    assert again.exit_code == 0, again.output
    assert len(envelopes) == 2 and "STEAM-OLD-1" in _message(envelopes[1].content)[1]
    assert [w.raw(t) for t in ("orders", "carmis", "goods")] == shop_before

    refused = w.cli("redeliver", "DJ-PEND-1", "--yes", "--force")
    assert refused.exit_code == 2, refused.output
    assert "--reason" in refused.output
    assert [w.raw(t) for t in ("orders", "carmis", "goods")] == shop_before
    assert len(envelopes) == 2


def test_the_buyer_of_an_order_completed_just_before_a_crash_still_gets_the_cards(
        mailbox_world: tuple[World, object]) -> None:
    w, box = mailbox_world
    w.import_and_reconcile()
    rc, out, err = w.run_process("repair", "--apply", crash_at="after_shop_update")
    assert rc == -9, (rc, out, err)
    crashed = w.journal()[0]["order_no"]
    rc, out, err = w.run_process("repair", "--apply", "--json")
    assert rc in (0, 3), (rc, out, err)
    orders = w.orders()
    mailed: dict[str, list[str]] = {}
    for envelope in box.envelopes:  # type: ignore[attr-defined]
        mailed.setdefault(envelope.rcpt_tos[0], []).append(_message(envelope.content)[1])
    for sn in ("DJ-PEND-1", "DJ-PEND-2", "DJ-LOOP-1", "DJ-RESTOCK"):
        texts = mailed.get(f"{sn.lower()}@example.com", [])
        assert len(texts) == 1, f"{sn} (crashed on: {crashed}) was mailed {len(texts)} times"
        assert all(card in texts[0] for card in delivered_cards(orders[sn]))


def test_run_apply_repairs_the_lost_orders_on_postgresql_through_the_sql_adapter(pg_world: World) -> None:
    w = pg_world
    assert w.cli("import", "--channel", "pay", str(w.statement)).exit_code == 0
    untouched_before = w.raw_orders(UNTOUCHED)
    goods_before = w.goods()

    first = w.run_process("run", "--date", DAY, "--apply", "--json")
    assert first[0] == 3, first
    assert json.loads(first[1])["repairs"]["applied"] == 5
    assert_repaired(w, goods_before)
    assert w.raw_orders(UNTOUCHED) == untouched_before
    assert {r["state"] for r in w.journal()} == {"applied"}

    shop_before = [w.raw(t) for t in ("orders", "carmis", "goods")]
    second = w.cli("run", "--date", DAY, "--apply", "--json")
    assert second.exit_code == 3, second.output
    assert json.loads(second.output)["repairs"]["planned"] == 0
    assert [w.raw(t) for t in ("orders", "carmis", "goods")] == shop_before
    assert {r["state"] for r in w.journal()} == {"applied"} and len(w.journal()) == len(REPAIRED)
