"""Complete a paid-but-unmarked dujiaoka order (掉单) in the shop's own database, exactly once.

One transaction mirrors ``OrderProcessService::completedOrder`` (reference/shop-platforms.md §3)
with the locks dujiaoka lacks (§4, §7; DESIGN §6 (4b)):

* the order row is read ``FOR UPDATE`` (SQLite: ``BEGIN IMMEDIATE``), so two repairs, or a repair
  and the shop's own notify once it has written, are serialised and the second sees the first;
* cards are taken ``ORDER BY id LIMIT n FOR UPDATE SKIP LOCKED``: two orders of the same goods
  never get the same card;
* every write is conditional and must touch exactly the rows expected, else everything is rolled
  back and the outcome is ``lost_race``.

What dujiaoka does after its commit (buyer mail, pushes, ApiHook) is not done here; the buyer mail
is ``recon.repair_mail.send_cards``. The shop's own notify handler takes no locks, so a genuine
notify whose plain ``SELECT`` ran before this commit can still overwrite it: re-read the order
afterwards (DESIGN §6 step 5) and compare its ``info`` with ``Completion.cards``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from recon.errors import ShopError

Dialect = Literal["sqlite", "mysql", "postgresql"]
Outcome = Literal["completed", "abnormal", "manual", "refused", "lost_race"]
Connect = Callable[[], Any]

DIALECTS: tuple[str, ...] = ("sqlite", "mysql", "postgresql")
# app/Service/OrderProcessService.php processAuto: the text dujiaoka writes when stock runs out.
SHORTAGE_INFO = "库存可使用卡密不足，请联系管理员核查"
STATUS_WAIT_PAY, STATUS_PENDING, STATUS_COMPLETED, STATUS_ABNORMAL, STATUS_EXPIRED = 1, 2, 4, 6, -1
TYPE_AUTO, TYPE_MANUAL = 1, 2
# DESIGN §6: complete from 1 or -1, redeliver after restock from 6; never act on 2, 3, 4, 5.
ACTIONABLE = frozenset({STATUS_WAIT_PAY, STATUS_EXPIRED, STATUS_ABNORMAL})
WALL_CLOCK = "%Y-%m-%d %H:%M:%S"
CENT = Decimal("0.01")
_WRITES = ("completed", "abnormal", "manual")


class RedeliveryRefused(ShopError):
    """The order has no delivered cards to send again (not completed, manual goods, or stock shortage)."""


@dataclass(frozen=True)
class OrderState:
    """One ``orders`` row (soft-deleted rows do not exist), with the goods' name when it still exists."""

    id: str
    order_sn: str
    status: int
    type: int
    goods_id: str
    buy_amount: int
    actual_price: Decimal
    trade_no: str
    info: str
    email: str
    title: str
    created_at: str  # PRC wall-clock text as stored, "" when NULL
    goods_name: str | None


@dataclass(frozen=True)
class Completion:
    """What one ``complete_order`` / ``deliver_after_restock`` call did (refused and lost_race: nothing)."""

    outcome: Outcome
    order_sn: str
    status_before: int | None
    status_after: int | None
    cards: tuple[str, ...] = field(default=())
    reason: str = ""

    @property
    def changed(self) -> bool:
        return self.outcome in _WRITES


def wall_clock(zone: str, now: datetime | None = None) -> str:
    """The shop's wall-clock time in ``zone`` (dujiaoka: PRC), as it writes created_at/updated_at."""
    moment = now if now is not None else datetime.now(ZoneInfo(zone))
    return moment.astimezone(ZoneInfo(zone)).strftime(WALL_CLOCK)


def read_order(connect: Connect, dialect: Dialect, order_sn: str) -> OrderState | None:
    """The order ``order_sn`` (case-insensitive, like the utf8_unicode_ci column), or None."""
    _check_dialect(dialect)
    con = _open(connect)
    try:
        try:
            return _select_order(con, dialect, order_sn, lock=False)
        finally:
            _rollback_quietly(con)
    except ShopError:
        raise
    except Exception as exc:
        raise ShopError(f"dujiaoka order {order_sn}: read failed: {type(exc).__name__}: {exc}") from exc
    finally:
        con.close()


def complete_order(connect: Connect, dialect: Dialect, order_sn: str, amount: Decimal, trade_no: str, zone: str,
                   allowed: tuple[int, ...] = (STATUS_WAIT_PAY, STATUS_EXPIRED)) -> Completion:
    """Mark ``order_sn`` paid with ``amount`` / ``trade_no`` and deliver it, in one locked transaction.

    Auto goods: status 4 with the cards in ``info`` (or 6 when too few cards, as dujiaoka does);
    manual goods: status 2 and ``goods.in_stock`` decreased. Refused unless the status is in
    ``allowed`` and ``actual_price`` equals ``amount`` to the cent. A database error rolls back
    and raises ShopError; nothing is ever half-written.
    """
    if not isinstance(trade_no, str):
        raise TypeError("trade_no must be a string")
    return _run(connect, dialect, order_sn, zone, allowed, _exact_money(amount), trade_no)


def deliver_after_restock(connect: Connect, dialect: Dialect, order_sn: str, zone: str) -> Completion:
    """Allocate cards to a status-6 order (paid, stock ran out) now that cards are back.

    Keeps the order's recorded amount and trade_no. With still too few cards nothing changes
    (outcome ``refused``); sales_volume is not counted again (it was counted when the order went to 6).
    """
    return _run(connect, dialect, order_sn, zone, (STATUS_ABNORMAL,), None, None)


def redeliver_cards(order: OrderState) -> list[str]:
    """The cards this order already received (its ``info``), to send again; never allocates new ones."""
    if order.type != TYPE_AUTO:
        raise RedeliveryRefused(f"order {order.order_sn} is for manual goods (type {order.type}): no cards")
    if order.status != STATUS_COMPLETED:
        raise RedeliveryRefused(f"order {order.order_sn} has status {order.status}, not 4: nothing was delivered")
    cards = [line.rstrip("\r") for line in order.info.split("\n") if line.strip()]
    if not cards or order.info.strip() == SHORTAGE_INFO:
        raise RedeliveryRefused(f"order {order.order_sn} has no cards in its info")
    return cards


# --- the transaction ---------------------------------------------------------------------------

def _run(connect: Connect, dialect: Dialect, order_sn: str, zone: str, allowed: Sequence[int],
         amount: Decimal | None, trade_no: str | None) -> Completion:
    _check_dialect(dialect)
    wrong = sorted(set(allowed) - ACTIONABLE)
    if wrong or not allowed:
        raise ValueError(f"allowed statuses must be among 1, -1, 6 (never 2, 3, 4, 5); got {tuple(allowed)}")
    stamp = wall_clock(zone)
    con = _open(connect)
    try:
        try:
            _begin(con, dialect)
            result = _complete(_Tx(con, dialect), order_sn, tuple(allowed), amount, trade_no, stamp)
            if result.changed:
                con.commit()
            else:
                con.rollback()
            return result
        except BaseException as exc:
            _rollback_quietly(con)
            if isinstance(exc, Exception):
                raise ShopError(f"dujiaoka order {order_sn}: completion rolled back, nothing changed: "
                                f"{type(exc).__name__}: {exc}") from exc
            raise
    finally:
        con.close()


class _Tx:
    """A cursor that speaks the dialect's placeholder style and reports affected rows."""

    def __init__(self, con: Any, dialect: Dialect) -> None:
        self.con, self.dialect = con, dialect
        self.cur = con.cursor()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        if self.dialect != "sqlite":
            sql = sql.replace("?", "%s")
        self.cur.execute(sql, tuple(params))
        return int(self.cur.rowcount)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.execute(sql, params)
        return [tuple(r) for r in self.cur.fetchall()]

    def money(self, value: Decimal) -> Any:
        # sqlite3 cannot bind Decimal; its NUMERIC affinity stores the text as a number.
        return str(value) if self.dialect == "sqlite" else value


def _complete(tx: _Tx, order_sn: str, allowed: tuple[int, ...], amount: Decimal | None, trade_no: str | None,
              stamp: str) -> Completion:
    order = _select_order(tx.con, tx.dialect, order_sn, lock=True, tx=tx)
    if order is None:
        return Completion("refused", order_sn, None, None, reason="no such order (or soft-deleted)")
    before = order.status

    def refuse(reason: str) -> Completion:
        return Completion("refused", order.order_sn, before, before, reason=reason)

    if before not in allowed:
        return refuse(f"status {before} is not one of {allowed}")
    paid = order.actual_price if amount is None else amount
    if paid != order.actual_price:
        return refuse(f"amount {paid} differs from the order's actual_price {order.actual_price}")
    txn = order.trade_no if trade_no is None else trade_no
    if order.buy_amount < 1:
        return refuse(f"buy_amount {order.buy_amount} is not a positive quantity")
    if order.type == TYPE_MANUAL and before != STATUS_ABNORMAL:
        return _manual(tx, order, paid, txn, stamp)
    if order.type != TYPE_AUTO:
        return refuse(f"goods type {order.type} cannot be completed from status {before}")
    return _auto(tx, order, paid, txn, stamp)


def _auto(tx: _Tx, order: OrderState, paid: Decimal, txn: str, stamp: str) -> Completion:
    """processAuto: take buy_amount unsold cards (skipping any another transaction holds)."""
    before, n = order.status, order.buy_amount
    lock = "" if tx.dialect == "sqlite" else " FOR UPDATE SKIP LOCKED"
    cards = tx.rows("SELECT id, carmi, is_loop FROM carmis WHERE goods_id = ? AND status = 1 AND deleted_at IS NULL"
                    f" ORDER BY id LIMIT ?{lock}", (int(order.goods_id), n))
    if len(cards) < n:
        if before == STATUS_ABNORMAL:
            return Completion("refused", order.order_sn, before, before,
                              reason=f"still too few unsold cards ({len(cards)} of {n}); nothing changed")
        lost = _set_order(tx, order, STATUS_ABNORMAL, SHORTAGE_INFO, paid, txn, stamp)
        if lost:
            return lost
        _count_sale(tx, order)
        return Completion("abnormal", order.order_sn, before, STATUS_ABNORMAL,
                          reason=f"only {len(cards)} of {n} unsold cards: status 6 like dujiaoka")
    single_use = [int(card_id) for card_id, _, is_loop in cards if int(is_loop) == 0]
    if single_use:
        marks = ", ".join("?" for _ in single_use)
        sold = tx.execute(f"UPDATE carmis SET status = 2, updated_at = ? WHERE id IN ({marks})"
                          " AND is_loop = 0 AND status = 1", (stamp, *single_use))
        if sold != len(single_use):
            return Completion("lost_race", order.order_sn, before, before,
                              reason=f"{sold} of {len(single_use)} cards could be marked sold; rolled back")
    delivered = tuple(str(carmi) for _, carmi, _ in cards)
    lost = _set_order(tx, order, STATUS_COMPLETED, "\n".join(delivered), paid, txn, stamp)
    if lost:
        return lost
    if before != STATUS_ABNORMAL:
        _count_sale(tx, order)
    return Completion("completed", order.order_sn, before, STATUS_COMPLETED, delivered)


def _manual(tx: _Tx, order: OrderState, paid: Decimal, txn: str, stamp: str) -> Completion:
    """processManual: status 2 (待处理) and the goods' in_stock decreased; the info (buyer inputs) is kept."""
    lost = _set_order(tx, order, STATUS_PENDING, None, paid, txn, stamp)
    if lost:
        return lost
    tx.execute("UPDATE goods SET in_stock = in_stock - ?, updated_at = ? WHERE id = ? AND deleted_at IS NULL",
               (order.buy_amount, stamp, int(order.goods_id)))
    _count_sale(tx, order)
    return Completion("manual", order.order_sn, order.status, STATUS_PENDING,
                      reason="manual goods: status 2, waiting for the shop's staff")


def _set_order(tx: _Tx, order: OrderState, status: int, info: str | None, paid: Decimal, txn: str,
               stamp: str) -> Completion | None:
    """The conditional order update; a lost_race Completion unless it touched exactly one row."""
    info_sql = "" if info is None else "info = ?, "
    params: list[Any] = [status, *([] if info is None else [info]), txn, tx.money(paid), stamp,
                         int(order.id), order.status]
    touched = tx.execute(f"UPDATE orders SET status = ?, {info_sql}trade_no = ?, actual_price = ?, updated_at = ?"
                         " WHERE id = ? AND status = ?", params)
    if touched == 1:
        return None
    return Completion("lost_race", order.order_sn, order.status, None,
                      reason=f"order update touched {touched} rows (status changed under us); rolled back")


def _count_sale(tx: _Tx, order: OrderState) -> None:
    # GoodsService::salesVolumeIncr (Eloquent: soft-deleted goods are left alone).
    tx.execute("UPDATE goods SET sales_volume = sales_volume + ? WHERE id = ? AND deleted_at IS NULL",
               (order.buy_amount, int(order.goods_id)))


# --- reading -----------------------------------------------------------------------------------

_ORDER_COLUMNS = ("o.id, o.order_sn, o.status, o.type, o.goods_id, o.buy_amount, {price}, o.trade_no, o.info,"
                  " o.email, o.title, o.created_at")


def _select_order(con: Any, dialect: Dialect, order_sn: str, lock: bool, tx: _Tx | None = None) -> OrderState | None:
    tx = tx or _Tx(con, dialect)
    price = "CAST(o.actual_price AS TEXT)" if dialect == "sqlite" else "o.actual_price"
    columns = _ORDER_COLUMNS.format(price=price)
    # MySQL's utf8_unicode_ci column already compares case-insensitively (and keeps its index).
    match = "o.order_sn = ?" if dialect == "mysql" else "upper(o.order_sn) = upper(?)"
    if lock:
        sql = f"SELECT {columns}, NULL FROM orders o WHERE {match} AND o.deleted_at IS NULL"
        sql += "" if dialect == "sqlite" else " FOR UPDATE"
    else:
        sql = (f"SELECT {columns}, g.gd_name FROM orders o LEFT JOIN goods g ON g.id = o.goods_id"
               f" AND g.deleted_at IS NULL WHERE {match} AND o.deleted_at IS NULL")
    rows = tx.rows(sql, (order_sn,))
    if len(rows) > 1:
        raise ShopError(f"dujiaoka order {order_sn}: {len(rows)} orders match case-insensitively")
    return _state(rows[0]) if rows else None


def _state(row: tuple[Any, ...]) -> OrderState:
    (oid, sn, status, kind, goods_id, amount, price, trade_no, info, email, title, created, name) = row
    return OrderState(id=str(oid), order_sn=str(sn), status=int(status), type=int(kind), goods_id=str(goods_id),
                      buy_amount=int(amount), actual_price=_cents(_exact_money(price)), trade_no=trade_no or "",
                      info=info or "", email=email or "", title=title or "", created_at=_wall_text(created),
                      goods_name=None if name is None else str(name))


def _wall_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime(WALL_CLOCK)
    return str(value)[:19]


def _cents(amount: Decimal) -> Decimal:
    """19.8 (SQLite's NUMERIC) shown as 19.80; a value with more places is left exactly as it is."""
    exact = amount.quantize(CENT)
    return exact if exact == amount else amount


def _exact_money(value: Any) -> Decimal:
    """A Decimal amount (or its text); floats are refused, never rounded."""
    if isinstance(value, float | bool) or not isinstance(value, Decimal | str | int):
        raise TypeError(f"money must be Decimal or text, not {type(value).__name__}")
    amount = Decimal(value)
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"not an amount: {value!r}")
    return amount


# --- connections -------------------------------------------------------------------------------

def _check_dialect(dialect: str) -> None:
    if dialect not in DIALECTS:
        raise ValueError(f"dialect must be one of {', '.join(DIALECTS)}, not {dialect!r}")


def _open(connect: Connect) -> Any:
    try:
        return connect()
    except Exception as exc:
        raise ShopError(f"cannot connect to the dujiaoka database: {type(exc).__name__}: {exc}") from exc


def _begin(con: Any, dialect: Dialect) -> None:
    """Start the transaction: SQLite takes the write lock now; MySQL uses READ COMMITTED so that a
    locking scan keeps no locks on rows it did not take (other goods' cards stay available)."""
    cur = con.cursor()
    if dialect == "sqlite":
        if con.in_transaction:
            con.rollback()
        cur.execute("BEGIN IMMEDIATE")
    elif dialect == "mysql":
        con.rollback()  # end any transaction the driver opened implicitly
        cur.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        cur.execute("START TRANSACTION")
    else:
        con.rollback()
        cur.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")


def _rollback_quietly(con: Any) -> None:
    try:
        con.rollback()
    except Exception:  # noqa: BLE001 (the connection may already be gone; the server rolls back then)
        pass
