"""dujiaoka (独角数卡) orders, read from its own tables. Schema: samples/dujiaoka_mysql.sql (the real DDL)."""

from __future__ import annotations

# orders.status (app/Models/Order.php): 1 待支付, 2 待处理, 3 处理中, 4 已完成, 5 处理失败, 6 异常, -1 已过期.
# 2 and 3 are paid manual goods waiting for a person; 5 is a person's "failed"; 6 means paid but
# too few cards were in stock, so nothing was delivered.
STATUS_MAP = {
    "1": "pending",
    "-1": "expired",
    "2": "paid",
    "3": "paid",
    "4": "delivered",
    "5": "delivery_failed",
    "6": "delivery_failed",
}
GOODS_KIND_MAP = {"1": "auto", "2": "manual"}
# DESIGN §6: complete from 1 or -1, redeliver from 6 after restock; never touch 2, 3, 4, 5.
REPAIRABLE = {"missing_callback": ("1", "-1"), "paid_not_delivered": ("6",)}

# Soft-deleted orders do not exist for dujiaoka (every Eloquent query adds deleted_at IS NULL).
# paid_at: dujiaoka records no payment time; updated_at is set by completedOrder, so it stands in
# for orders that left status 1.
# On MySQL/MariaDB and PostgreSQL the values keep their types (DECIMAL → Decimal, TIMESTAMP → datetime;
# SqlShop reads both exactly); SQLite's dynamic typing is pinned to text with CAST.
_QUERY = """
SELECT o.order_sn, {actual_price} AS actual_price, {status} AS status,
       {pay_id} AS pay_id, o.trade_no, o.created_at,
       CASE WHEN o.status IN (2, 3, 4, 5, 6) THEN o.updated_at END AS paid_at,
       o.email, {type} AS type, o.buy_amount, o.title
FROM orders o
WHERE o.deleted_at IS NULL
"""


def query(dialect: str) -> str:
    """dujiaoka's orders as one SELECT in the given SQL dialect (sqlite, mysql or postgresql)."""
    def text(column: str) -> str:
        return f"CAST(o.{column} AS TEXT)" if dialect == "sqlite" else f"o.{column}"

    return _QUERY.format(actual_price=text("actual_price"), status=text("status"), pay_id=text("pay_id"),
                         type=text("type"))


QUERY = query("sqlite")
COLUMNS = {
    "order_no": "order_sn",
    "amount": "actual_price",
    "status": "status",
    "pay_method": "pay_id",
    "channel_txn_id": "trade_no",
    "created_at": "created_at",
    "paid_at": "paid_at",
    "buyer_contact": "email",
    "goods_kind": "type",
    "quantity": "buy_amount",
    "title": "title",
}
