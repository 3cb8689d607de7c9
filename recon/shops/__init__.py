"""Shop adapters. A new shop kind is one module and one line in SHOPS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from recon.config import Config
from recon.errors import ConfigError
from recon.secrets import Secret
from recon.shops import dujiaoka
from recon.shops.base import MONEY_IN, SHOP_SCHEMA, ShopAdapter
from recon.shops.sql import SqlShop, sqlite_connector


def _sqlite(config: Config) -> ShopAdapter:
    shop = config.shop
    assert shop.path is not None
    path = config.resolve(shop.path)
    if not path.exists():
        raise ConfigError("shop.path", f"{path} does not exist")
    return _sql_shop(config, sqlite_connector(str(path)))


def _sql(config: Config) -> ShopAdapter:
    shop = config.shop
    dsn = shop.dsn.reveal("shop.dsn") if isinstance(shop.dsn, Secret) else str(shop.dsn)
    scheme, _, rest = dsn.partition("://")
    if scheme == "sqlite":
        # sqlite:///relative.db and sqlite:////absolute/path.db, as SQLAlchemy writes them
        return _sql_shop(config, sqlite_connector(str(config.resolve(Path(rest[1:])))))
    raise ConfigError("shop.dsn", f"scheme {scheme!r} is not supported by this version (supported: sqlite)")


def _sql_shop(config: Config, connect: Callable[[], object]) -> ShopAdapter:
    shop = config.shop
    if shop.schema_ == "dujiaoka":
        return SqlShop("dujiaoka", connect, dujiaoka.QUERY, dujiaoka.COLUMNS, dujiaoka.STATUS_MAP, shop.zone,
                       shop.currency, dujiaoka.GOODS_KIND_MAP, case_insensitive=True, repairable=dujiaoka.REPAIRABLE)
    assert shop.query is not None
    return SqlShop("sql", connect, shop.query, shop.columns, shop.status_map, shop.zone, shop.currency,
                   shop.goods_kind_map, case_insensitive=shop.order_no_case_insensitive)


# shop kind → adapter factory
SHOPS: dict[str, Callable[[Config], ShopAdapter]] = {
    "sqlite": _sqlite,
    "sql": _sql,
}


def open_shop(config: Config) -> ShopAdapter:
    return SHOPS[config.shop.kind](config)


__all__ = ["MONEY_IN", "SHOPS", "SHOP_SCHEMA", "ShopAdapter", "open_shop"]
