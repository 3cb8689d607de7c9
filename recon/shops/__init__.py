"""Shop adapters. A new shop kind is one module and one line in SHOPS."""

from __future__ import annotations

from collections.abc import Callable

from recon.config import Config
from recon.errors import ConfigError
from recon.secrets import Secret
from recon.shops import dujiaoka
from recon.shops.base import MONEY_IN, SHOP_SCHEMA, ShopAdapter
from recon.shops.connect import Connector, connector
from recon.shops.sql import SqlShop, sqlite_connector


def _sqlite(config: Config) -> ShopAdapter:
    shop = config.shop
    assert shop.path is not None
    path = config.resolve(shop.path)
    if not path.exists():
        raise ConfigError("shop.path", f"{path} does not exist")
    return _sql_shop(config, sqlite_connector(str(path)))


def _connector(config: Config) -> Connector:
    shop = config.shop
    dsn = shop.dsn.reveal("shop.dsn") if isinstance(shop.dsn, Secret) else str(shop.dsn)
    return connector(dsn, shop.zone, base=config.resolve)


def _sql(config: Config) -> ShopAdapter:
    """Any shop database reachable by ``shop.dsn``: a configured query, or dujiaoka's tables (schema)."""
    return _sql_shop(config, _connector(config))


def _dujiaoka(config: Config) -> ShopAdapter:
    """dujiaoka's own tables on MySQL/MariaDB (or wherever ``shop.dsn`` points)."""
    return _sql_shop(config, _connector(config), dujiaoka_schema=True)


def _sql_shop(config: Config, connect: Connector, dujiaoka_schema: bool = False) -> ShopAdapter:
    shop = config.shop
    dialect = connect.dialect
    if dujiaoka_schema or shop.schema_ == "dujiaoka":
        # order_sn is utf8_unicode_ci in dujiaoka's MySQL DDL: MySQL itself matches 'abc' to 'ABC'.
        return SqlShop("dujiaoka", connect, dujiaoka.query(dialect.name), dujiaoka.COLUMNS, dujiaoka.STATUS_MAP,
                       shop.zone, shop.currency, dujiaoka.GOODS_KIND_MAP, case_insensitive=True,
                       repairable=dujiaoka.REPAIRABLE, dialect=dialect, collation_folds_case=dialect.name == "mysql")
    assert shop.query is not None
    return SqlShop("sql", connect, shop.query, shop.columns, shop.status_map, shop.zone, shop.currency,
                   shop.goods_kind_map, case_insensitive=shop.order_no_case_insensitive, dialect=dialect,
                   repairable=_completion_repairable(config))


def _completion_repairable(config: Config) -> dict[str, tuple[str, ...]] | None:
    """With ``shop.completion``, an order still pending or expired may be completed (DESIGN §6.1)."""
    shop = config.shop
    if not shop.completion:
        return None
    return {"missing_callback": tuple(k for k, v in shop.status_map.items() if v in ("pending", "expired"))}


def _export(config: Config) -> ShopAdapter:
    """The shop's orders table as a bulk export file (recon/shops/export.py)."""
    from recon.shops.export import ExportShop

    shop = config.shop
    assert shop.path is not None
    path = config.resolve(shop.path)
    if not path.exists():
        raise ConfigError("shop.path", f"{path} does not exist")
    if shop.schema_ == "dujiaoka":
        # Repairs go through the database (shop.dsn); without one an export is read-only.
        return ExportShop(path, dujiaoka.COLUMNS, dujiaoka.STATUS_MAP, shop.zone, shop.currency,
                          dujiaoka.GOODS_KIND_MAP, case_insensitive=True,
                          repairable=dujiaoka.REPAIRABLE if shop.dsn is not None else None, dujiaoka_schema=True)
    return ExportShop(path, shop.columns, shop.status_map, shop.zone, shop.currency, shop.goods_kind_map,
                      case_insensitive=shop.order_no_case_insensitive)


def _http(config: Config) -> ShopAdapter:
    """A shop's admin API at ``shop.base_url`` (JSON orders mapped by ``columns``)."""
    from recon.shops.http import http_shop

    return http_shop(config)


# shop kind → adapter factory
SHOPS: dict[str, Callable[[Config], ShopAdapter]] = {
    "sqlite": _sqlite,
    "sql": _sql,
    "dujiaoka": _dujiaoka,
    "http": _http,
    "export": _export,
}


def open_shop(config: Config) -> ShopAdapter:
    return SHOPS[config.shop.kind](config)


__all__ = ["MONEY_IN", "SHOPS", "SHOP_SCHEMA", "ShopAdapter", "open_shop"]
