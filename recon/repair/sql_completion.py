"""Repair for any SQL shop through configured completion statements (``shop.completion``, DESIGN §6.4 b).

The statements run in ONE transaction on a read-write connection; each may use the bound parameters
``:order_no``, ``:amount``, ``:channel_txn_id`` and ``:now`` (the shop zone's wall clock
"YYYY-MM-DD HH:MM:SS") and must touch exactly one row, otherwise everything is rolled back. The
``:name`` markers are translated to the driver's placeholders; values are always bound, never spliced
into the SQL text. The order is read back through the shop's configured SELECT.

Note for MySQL/MariaDB: the row count is the number of rows *changed*, so a statement that matches a
row but writes the values it already had counts 0 (write conditional updates that change the state).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from recon.config import Config
from recon.errors import ConfigError, ShopError
from recon.secrets import Secret
from recon.shops import open_shop
from recon.shops.base import ActResult, ShopAdapter, ShopOrderState
from recon.shops.connect import DB_ERRORS, Connector, Dialect, connector

PARAMETERS = ("order_no", "amount", "channel_txn_id", "now")
WALL_CLOCK = "%Y-%m-%d %H:%M:%S"
# Normalised statuses under which a generic shop counts an order as completed.
DONE = ("delivered", "paid")


@dataclass(frozen=True)
class Statement:
    sql: str  # with the driver's placeholders
    names: tuple[str, ...]  # the parameter bound to each placeholder, in order


def translate(statement: str, dialect: Dialect, key: str) -> Statement:
    """``:name`` markers outside quotes and comments → the dialect's placeholders (``::`` casts kept).

    For ``%s`` drivers every literal ``%`` is doubled so it reaches the server unchanged.
    """
    out: list[str] = []
    names: list[str] = []
    i, n = 0, len(statement)
    percent = "%" if dialect.placeholder == "?" else "%%"
    while i < n:
        ch = statement[i]
        if ch in "'\"`":
            end = i + 1
            while end < n:
                if statement[end] == ch:
                    if end + 1 < n and statement[end + 1] == ch:  # doubled quote inside
                        end += 2
                        continue
                    break
                if statement[end] == "\\" and ch != "`" and dialect.name == "mysql":
                    end += 1
                end += 1
            if end >= n:
                raise ConfigError(key, f"unterminated {ch} quote")
            out.append(statement[i:end + 1].replace("%", percent))
            i = end + 1
        elif statement.startswith("--", i):
            end = statement.find("\n", i)
            end = n if end < 0 else end
            out.append(statement[i:end].replace("%", percent))
            i = end
        elif statement.startswith("/*", i):
            end = statement.find("*/", i + 2)
            if end < 0:
                raise ConfigError(key, "unterminated /* comment")
            out.append(statement[i:end + 2].replace("%", percent))
            i = end + 2
        elif statement.startswith("::", i):
            out.append("::")
            i += 2
        elif ch == ":" and i + 1 < n and (statement[i + 1].isalpha() or statement[i + 1] == "_"):
            end = i + 1
            while end < n and (statement[end].isalnum() or statement[end] == "_"):
                end += 1
            name = statement[i + 1:end]
            if name not in PARAMETERS:
                raise ConfigError(key, f"unknown parameter :{name} (allowed: "
                                       f"{', '.join(':' + p for p in PARAMETERS)})")
            names.append(name)
            out.append(dialect.placeholder)
            i = end
        else:
            out.append(percent if ch == "%" else ch)
            i += 1
    sql = "".join(out).strip().rstrip(";").strip()
    if not sql:
        raise ConfigError(key, "the statement is empty")
    return Statement(sql, tuple(names))


class SqlCompletionRepairer:
    """Completes a paid order with the shop's configured statements; reads it with the shop's SELECT."""

    name = "sql"

    def __init__(self, shop: ShopAdapter, writer: Callable[[], Any], dialect: Dialect, zone: str,
                 statements: list[Statement]) -> None:
        self._shop = shop
        self._writer = writer
        self._dialect = dialect
        self._zone = zone
        self._statements = statements

    def read(self, order_no: str) -> ShopOrderState | None:
        frame = self._shop.orders_by_no([order_no])
        if frame.height == 0:
            return None
        rows = frame.to_dicts()
        row = next((r for r in rows if r["order_no"] == order_no), rows[0])
        return ShopOrderState(
            order_no=row["order_no"],
            shop_status=row["shop_status"],
            delivered=row["status"] in DONE,
            amount=Decimal(row["amount"]),
            channel_txn_id=row["channel_txn_id"],
            buyer_contact=row["buyer_contact"],
            goods=row["title"],
        )

    def complete(self, order_no: str, amount: Decimal, channel_txn_id: str) -> ActResult:
        values: dict[str, Any] = {
            "order_no": order_no,
            # sqlite3 cannot bind Decimal; its text form compares numerically with numeric columns.
            "amount": str(amount) if self._dialect.name == "sqlite" else amount,
            "channel_txn_id": channel_txn_id,
            "now": datetime.now(ZoneInfo(self._zone)).strftime(WALL_CLOCK),
        }
        con = self._writer()
        try:
            try:
                if self._dialect.name == "sqlite":
                    con.isolation_level = None
                    con.execute("BEGIN IMMEDIATE")
                cur = con.cursor()
                for i, statement in enumerate(self._statements):
                    cur.execute(statement.sql, [values[name] for name in statement.names])
                    if cur.rowcount != 1:
                        con.rollback()
                        return ActResult(False, f"statement {i} touched {cur.rowcount} rows")
                cur.close()
            except DB_ERRORS as exc:
                con.rollback()
                return ActResult(False, f"completion failed and was rolled back: {self._redact(exc)}")
            try:
                con.commit()
            except DB_ERRORS as exc:
                # The answer is lost, not necessarily the act: the engine settles it by reading the shop.
                raise ShopError(f"shop {self.name!r}: commit of the completion failed: {self._redact(exc)}") from None
        finally:
            con.close()
        return ActResult(True, f"completed by {len(self._statements)} configured statement(s)")

    def deliver_after_restock(self, order_no: str) -> ActResult:
        return ActResult(False, "not supported for this shop")

    def _redact(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split()) or type(exc).__name__
        return getattr(self._writer, "redact", lambda t: t)(text)


def open_sql_repairer(config: Config) -> SqlCompletionRepairer:
    """The repairer for a shop with ``shop.completion``; statements are checked here (ConfigError)."""
    shop = config.shop
    if shop.kind not in ("sql", "sqlite"):
        raise ConfigError("shop.completion", f"completion statements are for kind \"sql\" or \"sqlite\", "
                                             f"not {shop.kind!r}")
    writer = _writer(config)
    statements = [translate(text, writer.dialect, f"shop.completion[{i}]") for i, text in enumerate(shop.completion)]
    return SqlCompletionRepairer(open_shop(config), writer, writer.dialect, shop.zone, statements)


def _writer(config: Config) -> Connector:
    shop = config.shop
    if shop.kind == "sqlite":
        assert shop.path is not None
        path = config.resolve(shop.path)
        if not path.exists():
            raise ConfigError("shop.path", f"{path} does not exist")
        return connector(f"sqlite:///{path}", shop.zone, read_only=False, key="shop.path")
    if shop.dsn is None:
        raise ConfigError("shop.dsn", "completion statements need the shop's dsn")
    dsn = shop.dsn.reveal("shop.dsn") if isinstance(shop.dsn, Secret) else str(shop.dsn)
    return connector(dsn, shop.zone, base=config.resolve, read_only=False)
