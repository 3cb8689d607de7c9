"""Load the generated shop export into a dujiaoka ``orders`` table on MariaDB/MySQL (the second figure).

The table is dujiaoka's own DDL (samples/dujiaoka_mysql.sql), filled by ``LOAD DATA LOCAL INFILE`` from
the same export file the ``export`` shop kind reads, so both figures reconcile identical orders.
"""

from __future__ import annotations

from pathlib import Path

import pymysql

from bench.shop_ddl import table_ddl
from recon.shops.connect import parse_dsn


def load_orders(dsn: str, export: Path) -> int:
    """(Re)create ``orders`` in the DSN's database (created when absent) and bulk-load ``export``."""
    d = parse_dsn(dsn, "--mariadb")
    admin = pymysql.connect(host=d.host, port=d.port, user=d.user, password=d.password, charset="utf8mb4",
                            local_infile=True, autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{d.database}` CHARACTER SET utf8mb4")
            cur.execute(f"USE `{d.database}`")
            for statement in table_ddl("orders"):
                cur.execute(statement)
            cur.execute(
                f"LOAD DATA LOCAL INFILE %s INTO TABLE `orders` CHARACTER SET utf8mb4 "
                f"FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' LINES TERMINATED BY '\\n' IGNORE 1 LINES",
                [str(export)],
            )
            cur.execute("SELECT count(*) FROM `orders`")
            (rows,) = cur.fetchone()
    finally:
        admin.close()
    return int(rows)
