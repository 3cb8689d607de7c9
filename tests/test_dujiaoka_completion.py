"""Completing a 掉单 in dujiaoka's own tables, on the real servers: MariaDB (verbatim DDL), PostgreSQL
and SQLite (minimal translation), including concurrent completions and injected failures."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from recon.errors import ShopError
from recon.shops.dujiaoka_repair import (SHORTAGE_INFO, Completion, OrderState, RedeliveryRefused, complete_order,
                                         deliver_after_restock, read_order, redeliver_cards)
from tests.dujiaoka_db import ShopDb, dujiaoka_unlocked, mysql_root, shop_db

ZONE = "Asia/Shanghai"
ALL = ["mysql", "postgresql", "sqlite"]
LOCKING = ["mysql", "postgresql"]


@pytest.fixture(params=ALL)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ShopDb]:
    with shop_db(request.param, tmp_path) as shop:
        yield shop


@pytest.fixture(params=LOCKING)
def server_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ShopDb]:
    with shop_db(request.param, tmp_path) as shop:
        yield shop


def complete(db: ShopDb, sn: str, amount: str = "50.00", trade_no: str = "T-1", **kw: Any) -> Completion:
    return complete_order(db.connect, db.dialect, sn, Decimal(amount), trade_no, ZONE, **kw)  # type: ignore[arg-type]


# --- single completions ---------------------------------------------------------------------------

def test_completes_a_waiting_order(db: ShopDb) -> None:
    g = db.add_goods()
    db.add_cards(g, "CARD-1", "CARD-2", "CARD-3")
    sn = db.add_order(g, amount=2, price="25.00")
    result = complete(db, sn.lower(), "50.00", "2024050122001")
    assert (result.outcome, result.status_before, result.status_after) == ("completed", 1, 4)
    assert result.cards == ("CARD-1", "CARD-2")
    row = db.order(sn)
    assert (row["status"], row["info"], row["trade_no"]) == (4, "CARD-1\nCARD-2", "2024050122001")
    assert row["actual_price"] == Decimal("50.00")
    assert str(row["updated_at"])[:4].isdigit() and str(row["updated_at"]) != "None"
    assert db.cards(g) == {"CARD-1": 2, "CARD-2": 2, "CARD-3": 1}
    assert db.goods(g) == (2, 0)
    state = read_order(db.connect, db.dialect, sn)  # type: ignore[arg-type]
    assert state is not None and state.status == 4 and state.goods_name == "Steam 充值卡 ¥50"
    assert redeliver_cards(state) == ["CARD-1", "CARD-2"]


def test_completes_an_expired_order(db: ShopDb) -> None:
    g = db.add_goods()
    db.add_cards(g, "CARD-1")
    sn = db.add_order(g, status=-1)
    result = complete(db, sn)
    assert (result.outcome, result.status_before, result.status_after) == ("completed", -1, 4)
    assert db.order(sn)["status"] == 4


@pytest.mark.parametrize("status", [2, 3, 4, 5])
def test_refuses_orders_that_are_not_waiting(db: ShopDb, status: int) -> None:
    g = db.add_goods()
    db.add_cards(g, "CARD-1")
    sn = db.add_order(g, status=status, info="buyer input")
    before = db.snapshot()
    result = complete(db, sn)
    assert (result.outcome, result.status_after) == ("refused", status)
    assert db.snapshot() == before


def test_refuses_a_wrong_amount_and_an_unknown_order(db: ShopDb) -> None:
    g = db.add_goods()
    db.add_cards(g, "CARD-1")
    sn = db.add_order(g, price="50.00")
    before = db.snapshot()
    for amount in ("49.99", "50.01", "50.001", "5.00"):
        assert complete(db, sn, amount).outcome == "refused"
    assert complete(db, "NO-SUCH-ORDER").reason.startswith("no such order")
    assert db.snapshot() == before
    assert complete(db, sn, "50").outcome == "completed"  # 50 == 50.00 to the cent


def test_never_completes_from_2_3_4_5_even_when_asked_and_never_takes_floats(db: ShopDb) -> None:
    g = db.add_goods()
    sn = db.add_order(g, status=4)
    with pytest.raises(ValueError, match="never 2, 3, 4, 5"):
        complete(db, sn, allowed=(1, 4))
    with pytest.raises(TypeError, match="not float"):
        complete_order(db.connect, db.dialect, sn, 50.0, "T", ZONE)  # type: ignore[arg-type]


def test_loop_cards_are_delivered_but_stay_unsold(db: ShopDb) -> None:
    g = db.add_goods()
    db.add_cards(g, "LOOP-FOREVER", loop=True)
    first, second = db.add_order(g), db.add_order(g)
    assert complete(db, first).cards == ("LOOP-FOREVER",)
    assert complete(db, second).cards == ("LOOP-FOREVER",)
    assert db.cards(g) == {"LOOP-FOREVER": 1}
    assert db.goods(g) == (2, 0)


def test_too_few_cards_gives_status_6_like_dujiaoka(db: ShopDb) -> None:
    g = db.add_goods()
    db.add_cards(g, "ONLY-ONE")
    db.add_cards(g, "SOLD-BEFORE", status=2)
    sn = db.add_order(g, amount=2, price="25.00")
    result = complete(db, sn)
    assert (result.outcome, result.status_after, result.cards) == ("abnormal", 6, ())
    row = db.order(sn)
    assert (row["status"], row["info"], row["trade_no"]) == (6, SHORTAGE_INFO, "T-1")
    assert db.cards(g) == {"ONLY-ONE": 1, "SOLD-BEFORE": 2}
    assert db.goods(g) == (2, 0)  # dujiaoka counts the sale even so
    state = read_order(db.connect, db.dialect, sn)  # type: ignore[arg-type]
    assert state is not None
    with pytest.raises(RedeliveryRefused):
        redeliver_cards(state)


def test_deliver_after_restock(db: ShopDb) -> None:
    g = db.add_goods()
    sn = db.add_order(g, amount=2, price="25.00")
    assert complete(db, sn, trade_no="PAY-9").outcome == "abnormal"
    before = db.snapshot()
    still = deliver_after_restock(db.connect, db.dialect, sn, ZONE)  # type: ignore[arg-type]
    assert (still.outcome, still.status_after) == ("refused", 6) and db.snapshot() == before
    db.add_cards(g, "NEW-1", "NEW-2", "NEW-3")
    assert complete(db, sn).outcome == "refused"  # status 6 only through deliver_after_restock
    result = deliver_after_restock(db.connect, db.dialect, sn, ZONE)  # type: ignore[arg-type]
    assert (result.outcome, result.status_before, result.status_after) == ("completed", 6, 4)
    assert result.cards == ("NEW-1", "NEW-2")
    row = db.order(sn)
    assert (row["status"], row["info"], row["trade_no"]) == (4, "NEW-1\nNEW-2", "PAY-9")
    assert db.goods(g) == (2, 0)  # counted once, when it went to 6
    again = deliver_after_restock(db.connect, db.dialect, sn, ZONE)  # type: ignore[arg-type]
    assert again.outcome == "refused" and db.cards(g)["NEW-3"] == 1


def test_manual_goods_go_to_status_2_and_lower_in_stock(db: ShopDb) -> None:
    g = db.add_goods(kind=2, in_stock=10)
    sn = db.add_order(g, kind=2, amount=3, price="10.00", info="QQ号:12345")
    result = complete(db, sn, "30.00")
    assert (result.outcome, result.status_after, result.cards) == ("manual", 2, ())
    row = db.order(sn)
    assert (row["status"], row["info"], row["trade_no"]) == (2, "QQ号:12345", "T-1")
    assert db.goods(g) == (3, 7)
    assert complete(db, sn, "30.00").outcome == "refused"  # dujiaoka would decrement again (gap 2)
    assert db.goods(g) == (3, 7)


def test_soft_deleted_orders_do_not_exist(db: ShopDb) -> None:
    g = db.add_goods()
    db.add_cards(g, "CARD-1")
    sn = db.add_order(g)
    db.run("UPDATE orders SET deleted_at = ? WHERE order_sn = ?", ("2024-05-02 00:00:00", sn))
    assert read_order(db.connect, db.dialect, sn) is None  # type: ignore[arg-type]
    assert complete(db, sn).outcome == "refused"
    assert db.cards(g) == {"CARD-1": 1}


def test_redeliver_never_allocates() -> None:
    state = OrderState("1", "SN", 4, 1, "1", 2, Decimal("1.00"), "T", "A\r\nB", "b@x", "t", "", None)
    assert redeliver_cards(state) == ["A", "B"]
    for other in (OrderState("1", "SN", 2, 2, "1", 1, Decimal("1.00"), "", "x", "", "", "", None),
                  OrderState("1", "SN", 1, 1, "1", 1, Decimal("1.00"), "", "", "", "", "", None)):
        with pytest.raises(RedeliveryRefused):
            redeliver_cards(other)


# --- concurrency ----------------------------------------------------------------------------------

def run_together(jobs: list[Callable[[], Any]], timeout: float = 60) -> list[Any]:
    """Start every job at the same moment (barrier) on its own thread and connection."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)

    def runner(i: int, job: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[i] = job()
        except BaseException as exc:  # noqa: BLE001 (reported below)
            results[i] = exc

    threads = [threading.Thread(target=runner, args=(i, j)) for i, j in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a completion hung"
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    return results


def delivered_sets(db: ShopDb) -> list[list[str]]:
    return [str(info).split("\n") for (info,) in db.run("SELECT info FROM orders WHERE status = 4 ORDER BY id")]


@pytest.mark.parametrize("dialect", ["mysql", "postgresql", "sqlite"])
def test_same_order_from_many_threads_and_a_late_genuine_notify(dialect: str, tmp_path: Path) -> None:
    with shop_db(dialect, tmp_path) as db:
        g = db.add_goods()
        db.add_cards(g, *(f"CARD-{i:02}" for i in range(12)))
        sn = db.add_order(g, amount=3, price="10.00")
        one_committed = threading.Event()
        notify: list[str] = []

        def repair() -> Completion:
            result = complete(db, sn, "30.00", "PAY-1")
            if result.outcome == "completed":
                one_committed.set()
            return result

        def late_notify() -> str:
            assert one_committed.wait(30)
            notify.append(dujiaoka_unlocked(db, sn, Decimal("30.00"), "PAY-1"))
            return notify[-1]

        results = run_together([repair] * 8 + [late_notify])
        outcomes = Counter(r.outcome for r in results[:-1])
        assert outcomes == {"completed": 1, "refused": 7}, outcomes
        assert notify == ["订单已经处理"]
        winner = next(r for r in results[:-1] if r.outcome == "completed")
        assert db.order(sn)["info"].split("\n") == list(winner.cards)
        sold = [c for c, s in db.cards(g).items() if s == 2]
        assert sorted(sold) == sorted(winner.cards) and len(sold) == 3
        assert db.goods(g) == (3, 0)


def test_a_genuine_notify_in_flight_makes_every_repair_wait_then_refuse(server_db: ShopDb) -> None:
    db = server_db
    g = db.add_goods()
    db.add_cards(g, *(f"CARD-{i}" for i in range(6)))
    sn = db.add_order(g, amount=2, price="10.00")
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        holding.set()
        assert release.wait(30)

    notify = threading.Thread(target=lambda: dujiaoka_unlocked(db, sn, Decimal("20.00"), "PAY-G", holding=hold))
    notify.start()
    assert holding.wait(30)  # dujiaoka has written the order and the cards, uncommitted, locks held
    started = time.monotonic()
    threading.Timer(0.5, release.set).start()
    results = run_together([lambda: complete(db, sn, "20.00", "PAY-G")] * 5)
    notify.join(30)
    assert time.monotonic() - started >= 0.45  # the repairs waited for the order lock
    assert {r.outcome for r in results} == {"refused"} and {r.status_before for r in results} == {4}
    assert Counter(db.cards(g).values()) == {2: 2, 1: 4}
    assert db.goods(g) == (2, 0)


def test_different_orders_racing_for_the_last_cards_never_share_one(server_db: ShopDb) -> None:
    db = server_db
    g, other = db.add_goods(), db.add_goods("another goods")
    db.add_cards(other, "OTHER-1", "OTHER-2")
    db.add_cards(g, *(f"LAST-{i}" for i in range(7)))
    orders = [db.add_order(g, amount=2, price="10.00") for _ in range(5)]
    other_order = db.add_order(other, amount=2, price="10.00")
    jobs = [lambda sn=sn: complete(db, sn, "20.00") for sn in orders]
    jobs.append(lambda: complete(db, other_order, "20.00"))
    results = run_together(jobs)
    assert Counter(r.outcome for r in results[:-1]) == {"completed": 3, "abnormal": 2}
    assert results[-1].cards == ("OTHER-1", "OTHER-2")  # no lock on another goods' cards was kept
    delivered = [c for r in results for c in r.cards]
    assert len(delivered) == len(set(delivered)) == 8
    assert sorted(c for cards in delivered_sets(db) for c in cards) == sorted(delivered)
    assert Counter(db.cards(g).values()) == {2: 6, 1: 1}
    assert db.goods(g) == (10, 0)


# --- failures -------------------------------------------------------------------------------------

class Faulty:
    """A connection whose cursor runs ``action`` (on the same cursor) before the first statement starting
    with ``prefix``: raise there, or change a row inside our own transaction."""

    def __init__(self, con: Any, prefix: str, action: Callable[[Any], None]) -> None:
        self._con, self._prefix, self._action = con, prefix, action

    def cursor(self) -> Any:
        real, prefix, action = self._con.cursor(), self._prefix, self._action

        class Cursor:
            def execute(self, sql: str, params: Any = ()) -> Any:
                if sql.startswith(prefix):
                    action(real)
                return real.execute(sql, params)

            def __getattr__(self, name: str) -> Any:
                return getattr(real, name)

        return Cursor()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def boom(_cur: Any) -> None:
    raise RuntimeError("injected failure between statements")


def test_a_failure_between_statements_changes_nothing(db: ShopDb) -> None:
    g = db.add_goods()
    db.add_cards(g, "CARD-1", "CARD-2")
    sn = db.add_order(g)
    before = db.snapshot()
    with pytest.raises(ShopError, match="rolled back, nothing changed.*injected failure"):
        complete_order(lambda: Faulty(db.connect(), "UPDATE goods", boom), db.dialect, sn,  # type: ignore[arg-type]
                       Decimal("50.00"), "T", ZONE)
    assert db.snapshot() == before
    assert complete(db, sn).outcome == "completed"


def test_a_status_change_under_us_is_a_lost_race_and_rolled_back(db: ShopDb) -> None:
    g = db.add_goods()
    db.add_cards(g, "CARD-1", "CARD-2")
    sn = db.add_order(g)
    before = db.snapshot()
    mark = "?" if db.dialect == "sqlite" else "%s"

    def steal_order(cur: Any) -> None:
        cur.execute(f"UPDATE orders SET status = 3 WHERE order_sn = {mark}", (sn,))

    def sell_card(cur: Any) -> None:
        cur.execute("UPDATE carmis SET status = 2 WHERE carmi = 'CARD-1'")

    for prefix, action, touched in (("UPDATE orders", steal_order, "order update touched 0"),
                                    ("UPDATE carmis", sell_card, "0 of 1 cards")):
        result = complete_order(lambda: Faulty(db.connect(), prefix, action), db.dialect, sn,  # type: ignore
                                Decimal("50.00"), "T", ZONE)
        assert result.outcome == "lost_race" and touched in result.reason
        assert db.snapshot() == before


def test_a_real_permission_error_on_goods_rolls_back_on_mariadb(tmp_path: Path) -> None:
    import pymysql

    with shop_db("mysql", tmp_path) as db:
        g = db.add_goods()
        db.add_cards(g, "CARD-1")
        sn = db.add_order(g)
        user = f"rc_{db.name[-12:]}"
        admin = mysql_root()
        cur = admin.cursor()
        try:
            cur.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'pw-{user}'")
            cur.execute(f"GRANT SELECT, UPDATE ON `{db.name}`.orders TO '{user}'@'127.0.0.1'")
            cur.execute(f"GRANT SELECT, UPDATE ON `{db.name}`.carmis TO '{user}'@'127.0.0.1'")
            cur.execute(f"GRANT SELECT ON `{db.name}`.goods TO '{user}'@'127.0.0.1'")
            before = db.snapshot()

            def limited() -> Any:
                return pymysql.connect(host="127.0.0.1", port=3306, user=user, password=f"pw-{user}",
                                       database=db.name, charset="utf8mb4")

            with pytest.raises(ShopError, match="UPDATE command denied"):
                complete_order(limited, "mysql", sn, Decimal("50.00"), "T", ZONE)
            assert db.snapshot() == before
        finally:
            cur.execute(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
            admin.close()


def test_an_unreachable_database_is_a_shop_error() -> None:
    def refused() -> Any:
        raise ConnectionRefusedError("connection refused")

    with pytest.raises(ShopError, match="cannot connect"):
        complete_order(refused, "mysql", "SN", Decimal("1.00"), "T", ZONE)
    with pytest.raises(ValueError, match="dialect"):
        read_order(refused, "oracle", "SN")  # type: ignore[arg-type]
