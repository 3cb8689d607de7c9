"""The shop's repair path for the configured shop and ``repair.method`` (DESIGN §6.4).

* ``db``: one locked DB transaction that mirrors dujiaoka's completion (b);
* ``notify``: replay a correctly signed notify to the shop's own notify URL for shared-secret gateways
  (Epay MD5, epusdt), the DB transaction for every other gateway, chosen per order (a);
* ``hook``: POST the configured HTTP hook (c).

Every method reads and verifies through the shop's database, and journals under the same shop name,
so switching the method never lets one order be repaired twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, cast

from recon.config import Config
from recon.errors import ConfigError
from recon.repair.hook import HookRepairer
from recon.repair.notify import NotifyRepairer
from recon.secrets import Secret
from recon.shops.base import ShopRepairer
from recon.shops.connect import connector
from recon.shops.dujiaoka_repair import Dialect
from recon.shops.dujiaoka_repairer import DujiaokaRepairer


def open_repairer(config: Config) -> ShopRepairer:
    """The shop's repair path: its admin API (kind http), its configured completion statements (sql), or
    dujiaoka's tables through ``repair.method`` (notify replay, HTTP hook or the locked transaction)."""
    if config.shop.kind == "http":
        from recon.repair.http_shop import open_http_repairer

        return open_http_repairer(config)
    if config.shop.completion:
        from recon.repair.sql_completion import open_sql_repairer

        return open_sql_repairer(config)
    method = config.repair.method
    if method == "notify" and not config.shop.notify_base_url:
        raise ConfigError("shop.notify_base_url", "repair.method = \"notify\" needs the shop's base URL (its "
                                                  "APP_URL, e.g. \"https://shop.example\"): notifies go to "
                                                  "<notify_base_url>/pay/<gateway>/notify_url")
    hook = config.repair.hook
    if method == "hook" and hook is None:
        raise ConfigError("repair.hook", "repair.method = \"hook\" needs a [repair.hook] table with url "
                                         "(env: or file:) and optionally token, success_status, timeout_seconds")
    db, connect, dialect = _dujiaoka(config)
    if method == "notify":
        assert config.shop.notify_base_url is not None
        return NotifyRepairer(db, connect, dialect, config.shop.notify_base_url)
    if method == "hook":
        assert hook is not None
        token = hook.token.reveal("repair.hook.token") if hook.token is not None else None
        return HookRepairer(db, hook.url.reveal("repair.hook.url"), token, hook.success_status,
                            hook.timeout_seconds)
    return db


def _dujiaoka(config: Config) -> tuple[DujiaokaRepairer, Callable[[], Any], Dialect]:
    shop = config.shop
    if shop.kind == "sqlite" and shop.schema_ == "dujiaoka":
        assert shop.path is not None
        path = config.resolve(shop.path)
        if not path.exists():
            raise ConfigError("shop.path", f"{path} does not exist")
        connect = _sqlite_writer(str(path))
        return DujiaokaRepairer(connect, "sqlite", shop.zone, config.repair), connect, "sqlite"
    if shop.dsn is not None and (shop.kind == "dujiaoka" or shop.schema_ == "dujiaoka"):
        dsn = shop.dsn.reveal("shop.dsn") if isinstance(shop.dsn, Secret) else str(shop.dsn)
        writer = connector(dsn, shop.zone, base=config.resolve, read_only=False)
        dialect = cast(Dialect, writer.dialect.name)
        return DujiaokaRepairer(writer, dialect, shop.zone, config.repair), writer, dialect
    raise ConfigError("shop.kind", "this shop has no repair path in this version: repairs need dujiaoka's tables "
                                   "(kind = \"dujiaoka\", or schema = \"dujiaoka\")")


def _sqlite_writer(path: str) -> Callable[[], Any]:
    def connect() -> sqlite3.Connection:
        return sqlite3.connect(path, timeout=30)

    return connect
