"""The shop's repair path for the configured shop (DESIGN §6.4 (b): one locked transaction)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from recon.config import Config
from recon.errors import ConfigError
from recon.secrets import Secret
from recon.shops.connect import connector
from recon.shops.base import ShopRepairer
from recon.shops.dujiaoka_repairer import DujiaokaRepairer


def open_repairer(config: Config) -> ShopRepairer:
    """A repairer for a shop with dujiaoka's tables; other shops have no repair path in this version."""
    shop = config.shop
    if shop.kind == "sqlite" and shop.schema_ == "dujiaoka":
        assert shop.path is not None
        path = config.resolve(shop.path)
        if not path.exists():
            raise ConfigError("shop.path", f"{path} does not exist")
        return DujiaokaRepairer(_sqlite_writer(str(path)), "sqlite", shop.zone, config.repair)
    if shop.dsn is not None and (shop.kind == "dujiaoka" or shop.schema_ == "dujiaoka"):
        dsn = shop.dsn.reveal("shop.dsn") if isinstance(shop.dsn, Secret) else str(shop.dsn)
        writer = connector(dsn, shop.zone, base=config.resolve, read_only=False)
        return DujiaokaRepairer(writer, writer.dialect.name, shop.zone, config.repair)  # type: ignore[arg-type]
    raise ConfigError("shop.kind", "this shop has no repair path in this version: repairs need dujiaoka's tables "
                                   "(kind = \"dujiaoka\", or schema = \"dujiaoka\")")


def _sqlite_writer(path: str) -> Callable[[], Any]:
    def connect() -> sqlite3.Connection:
        return sqlite3.connect(path, timeout=30)

    return connect
