"""The history checker of the reliability tests: what a shop and a store may never show, whatever crashed.

The shop side is audited by triggers installed in the shop's own database (SQLite or MariaDB): every
``UPDATE`` of ``orders`` and ``carmis`` leaves a row, so a second delivery is caught even when a later
write hid it. The store side is read from the ledger (``exceptions``, ``exception_events``) and the
repair journal (``repairs``) exactly as finance's own SQL would.

Invariants (DESIGN §5, §6):

* an order receives its goods at most once: one write moves it into delivered (status 4 with cards,
  or 2 for manual goods) and its delivered ``info`` is never rewritten; a single-use card is sold at
  most once and never handed back; every delivered order holds its own goods' cards;
* every exception has its events, the first one ``opened``, and its status is the one its events say;
* every ``applied`` repair names an order the shop shows delivered (with the channel's transaction
  for a completion), and every ``repaired`` exception has an applied repair;
* after a repair run that ended normally, no journal intent is left ``started`` or ``unknown``;
* a buyer receives the goods by mail once (``mails_to`` reads what the test's SMTP server received);
* a difference seeded into the world is found: an exception with its code exists, open, or closed
  with the event that closed it.
"""

from __future__ import annotations

import email
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import duckdb

from tests.alert_servers import MailBox
from tests.dujiaoka_db import ShopDb
from tests.repair_world import assert_no_card_twice

COMPLETED, MANUAL_PENDING = 4, 2
TYPE_MANUAL = 2
FINAL_JOURNAL_STATES = ("applied", "failed", "not_applied")
EXCEPTION_STATUSES = ("open", "repaired", "resolved", "ignored")
# event action → the status it leaves the exception in
EVENT_STATUS = {"opened": "open", "reopened": "open", "auto_closed": "resolved", "resolved": "resolved",
                "ignored": "ignored", "repaired": "repaired"}

_AUDIT_DDL = {
    "mysql": [
        "CREATE TABLE audit_order_writes (id BIGINT AUTO_INCREMENT PRIMARY KEY, order_sn VARCHAR(150) NOT NULL,"
        " old_status INT, new_status INT, old_info TEXT, new_info TEXT, type INT)",
        "CREATE TRIGGER audit_orders AFTER UPDATE ON orders FOR EACH ROW INSERT INTO audit_order_writes"
        " (order_sn, old_status, new_status, old_info, new_info, type)"
        " VALUES (NEW.order_sn, OLD.status, NEW.status, OLD.info, NEW.info, NEW.type)",
        "CREATE TABLE audit_card_writes (id BIGINT AUTO_INCREMENT PRIMARY KEY, carmi_id BIGINT NOT NULL,"
        " old_status INT, new_status INT)",
        "CREATE TRIGGER audit_carmis AFTER UPDATE ON carmis FOR EACH ROW INSERT INTO audit_card_writes"
        " (carmi_id, old_status, new_status) VALUES (NEW.id, OLD.status, NEW.status)",
    ],
    "sqlite": [
        "CREATE TABLE audit_order_writes (id INTEGER PRIMARY KEY AUTOINCREMENT, order_sn TEXT NOT NULL,"
        " old_status INTEGER, new_status INTEGER, old_info TEXT, new_info TEXT, type INTEGER)",
        "CREATE TRIGGER audit_orders AFTER UPDATE ON orders BEGIN INSERT INTO audit_order_writes"
        " (order_sn, old_status, new_status, old_info, new_info, type)"
        " VALUES (NEW.order_sn, OLD.status, NEW.status, OLD.info, NEW.info, NEW.type); END",
        "CREATE TABLE audit_card_writes (id INTEGER PRIMARY KEY AUTOINCREMENT, carmi_id INTEGER NOT NULL,"
        " old_status INTEGER, new_status INTEGER)",
        "CREATE TRIGGER audit_carmis AFTER UPDATE ON carmis BEGIN INSERT INTO audit_card_writes"
        " (carmi_id, old_status, new_status) VALUES (NEW.id, OLD.status, NEW.status); END",
    ],
}


class ShopHistory:
    """A dujiaoka database with its write history recorded by triggers (install before recon acts)."""

    def __init__(self, db: ShopDb) -> None:
        self.db = db
        for statement in _AUDIT_DDL[db.dialect]:
            db.run(statement)

    # --- the shape tests/repair_world.assert_no_card_twice reads ----------------------------------
    def orders(self) -> dict[str, dict[str, Any]]:
        price = "CAST(actual_price AS TEXT)" if self.db.dialect == "sqlite" else "actual_price"
        rows = self.db.run(f"SELECT order_sn, status, info, trade_no, {price}, goods_id, buy_amount, type"
                           " FROM orders ORDER BY id")
        return {str(sn): {"status": int(st), "info": info or "", "trade_no": tn or "",
                          "actual_price": Decimal(str(p)), "goods_id": int(g), "buy_amount": int(n), "type": int(t)}
                for sn, st, info, tn, p, g, n, t in rows}

    def cards(self) -> dict[str, dict[str, int]]:
        return {str(c): {"goods_id": int(g), "status": int(s), "is_loop": int(loop)}
                for c, g, s, loop in self.db.run("SELECT carmi, goods_id, status, is_loop FROM carmis ORDER BY id")}

    def delivered(self, sn: str, orders: dict[str, dict[str, Any]] | None = None) -> bool:
        """The shop shows the order completed with its goods (DESIGN §6.5); ``orders``: a read already made."""
        order = (orders or self.orders())[sn]
        if order["type"] == TYPE_MANUAL:
            return order["status"] == MANUAL_PENDING
        return order["status"] == COMPLETED and bool(order["info"].strip())

    # --- the history ----------------------------------------------------------------------------
    def deliveries(self) -> Counter[str]:
        """order_sn → how many writes gave it goods (moved it into delivered, or rewrote delivered goods)."""
        rows = self.db.run("SELECT order_sn, old_status, new_status, old_info, new_info, type"
                           " FROM audit_order_writes ORDER BY id")
        counted: Counter[str] = Counter()
        for sn, old, new, old_info, new_info, kind in rows:
            into = MANUAL_PENDING if int(kind) == TYPE_MANUAL else COMPLETED
            if int(new) == into and (int(old) != into or (old_info or "") != (new_info or "")):
                counted[str(sn)] += 1
        return counted

    def assert_delivered_at_most_once(self) -> None:
        """No order got goods twice, no card was sold twice or handed back, every card sits in one order."""
        twice = {sn: n for sn, n in self.deliveries().items() if n > 1}
        assert not twice, f"orders given goods more than once (writes per order): {twice}"
        cards = self.db.run("SELECT carmi_id, old_status, new_status FROM audit_card_writes ORDER BY id")
        sales = Counter(int(c) for c, old, new in cards if int(old) == 1 and int(new) == 2)
        assert not {c: n for c, n in sales.items() if n > 1}, f"cards sold more than once: {sales}"
        back = [int(c) for c, old, new in cards if int(old) == 2 and int(new) != 2]
        assert not back, f"sold cards handed back: {back}"
        assert_no_card_twice(self)  # type: ignore[arg-type]

    def assert_delivered_exactly_once(self, sns: Iterable[str]) -> None:
        """Each named order is delivered now, by exactly one write."""
        self.assert_delivered_at_most_once()
        counted, orders = self.deliveries(), self.orders()
        for sn in sns:
            assert self.delivered(sn, orders), f"{sn} is not delivered: {orders[sn]}"
            assert counted[sn] == 1, f"{sn} was given goods {counted[sn]} times"


def mails_to(box: MailBox, address: str) -> list[str]:
    """The text of every message the buyer at ``address`` received (recon's and the shop's own)."""
    texts = []
    for envelope in box.envelopes:
        if envelope.rcpt_tos == [address]:
            msg = email.message_from_bytes(envelope.content, policy=default_policy)  # type: ignore[arg-type]
            assert isinstance(msg, EmailMessage)
            texts.append("\n".join(p.get_content() for p in msg.walk() if p.get_content_maintype() == "text"))
    return texts


# --- the store ------------------------------------------------------------------------------------

@contextmanager
def reading(store: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to the store (no recon process may be writing it)."""
    con = duckdb.connect(str(store), read_only=True)
    try:
        yield con
    finally:
        con.close()


def store_rows(store: Path | duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None,
               ) -> list[dict[str, Any]]:
    if isinstance(store, Path):
        with reading(store) as con:
            return store_rows(con, sql, params)
    cur = store.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def has_ledger(store: Path) -> bool:
    """The store exists and holds the ledger (a process killed while creating it may leave neither)."""
    if not store.exists():
        return False
    return bool(store_rows(store, "SELECT count(*) AS n FROM information_schema.tables "
                                  "WHERE table_name = 'exception_events'")[0]["n"])


@dataclass(frozen=True)
class Ledger:
    """One read of the ledger and the journal."""

    exceptions: list[dict[str, Any]]
    events: dict[int, list[dict[str, Any]]]
    journal: list[dict[str, Any]]

    @classmethod
    def read(cls, store: Path | duckdb.DuckDBPyConnection) -> Ledger:
        if isinstance(store, Path):
            with reading(store) as con:
                return cls.read(con)
        events: dict[int, list[dict[str, Any]]] = {}
        for e in store_rows(store, "SELECT * FROM exception_events ORDER BY event_id"):
            events.setdefault(int(e["exception_id"]), []).append(e)
        return cls(store_rows(store, "SELECT * FROM exceptions ORDER BY id"), events,
                   store_rows(store, "SELECT * FROM repairs ORDER BY repair_id"))

    def find(self, key: str, code: str) -> dict[str, Any] | None:
        found = [e for e in self.exceptions if e["key"] == key and e["code"] == code]
        assert len(found) <= 1, f"{key}/{code} is in the ledger {len(found)} times"
        return found[0] if found else None


def assert_ledger_consistent(ledger: Ledger) -> None:
    """Every exception has events, first 'opened', and the status its events lead to; counts add up."""
    implied: Counter[str] = Counter()
    for exc in ledger.exceptions:
        trail = ledger.events.get(int(exc["id"]), [])
        where = f"exception {exc['id']} ({exc['key']}, {exc['code']}, {exc['status']})"
        assert trail, f"{where} has no events"
        assert trail[0]["action"] == "opened", f"{where} starts with {trail[0]['action']}"
        assert exc["status"] in EXCEPTION_STATUSES, where
        said = EVENT_STATUS[trail[-1]["action"]]
        assert said == exc["status"], f"{where}: its last event {trail[-1]['action']!r} says {said}"
        implied[said] += 1
    assert implied == Counter(e["status"] for e in ledger.exceptions)
    orphans = set(ledger.events) - {int(e["id"]) for e in ledger.exceptions}
    assert not orphans, f"events of exceptions that do not exist: {orphans}"


def assert_journal_true(ledger: Ledger, shop: ShopHistory, settled: bool,
                        orders: dict[str, dict[str, Any]] | None = None) -> None:
    """Applied repairs are delivered orders; repaired exceptions have one; ``settled``: no open intent."""
    orders = orders or shop.orders()
    keys = Counter(r["idempotency_key"] for r in ledger.journal)
    assert all(n == 1 for n in keys.values()), f"one idempotency key journalled twice: {keys}"
    for row in ledger.journal:
        where = f"repair {row['repair_id']} ({row['order_no']}, {row['action']}, {row['state']})"
        if settled:
            assert row["state"] in FINAL_JOURNAL_STATES, f"{where} left in flight after a finished run"
        if row["state"] != "applied" or row["action"] == "resend":
            continue
        assert shop.delivered(row["order_no"], orders), f"{where}: the shop shows {orders[row['order_no']]}"
        if row["action"] == "complete" and row["channel_txn_id"]:
            assert orders[row["order_no"]]["trade_no"] == row["channel_txn_id"], where
    applied = {int(r["exception_id"]) for r in ledger.journal if r["state"] == "applied" and r["exception_id"]}
    for exc in ledger.exceptions:
        if exc["status"] == "repaired":
            assert int(exc["id"]) in applied, f"exception {exc['id']} ({exc['key']}) repaired without a repair"


def assert_found(ledger: Ledger, expected: Mapping[str, str]) -> None:
    """Each seeded difference (key → code) is an open exception, or closed with the event that closed it."""
    for key, code in expected.items():
        exc = ledger.find(key, code)
        assert exc is not None, f"the seeded {code} of {key} is not in the ledger (lost exception)"
        if exc["status"] != "open":
            actions = [e["action"] for e in ledger.events.get(int(exc["id"]), [])]
            closing = {"repaired": "repaired", "resolved": "auto_closed|resolved", "ignored": "ignored"}
            assert set(closing[exc["status"]].split("|")) & set(actions), \
                f"{key}/{code} is {exc['status']} with no event closing it: {actions}"
