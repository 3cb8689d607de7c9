"""Load the generated shop export into a dujiaoka ``orders`` table on MariaDB/MySQL (the second figure).

The table is dujiaoka's own DDL (samples/dujiaoka_mysql.sql), filled by ``LOAD DATA LOCAL INFILE`` from
the same export file the ``export`` shop kind reads, so both figures reconcile identical orders.
"""

from __future__ import annotations

import re
from pathlib import Path

import pymysql

from recon.shops.connect import parse_dsn

DDL = Path(__file__).resolve().parent.parent / "samples" / "dujiaoka_mysql.sql"
ORDERS_DDL = re.compile(r"CREATE TABLE `orders` \(.*?\) ENGINE=[^;]*;", re.S)


def load_orders(dsn: str, export: Path) -> int:
    """(Re)create ``orders`` in the DSN's database (created when absent) and bulk-load ``export``."""
    d = parse_dsn(dsn, "--mariadb")
    admin = pymysql.connect(host=d.host, port=d.port, user=d.user, password=d.password, charset="utf8mb4",
                            local_infile=True, autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{d.database}` CHARACTER SET utf8mb4")
            cur.execute(f"USE `{d.database}`")
            cur.execute("DROP TABLE IF EXISTS `orders`")
            found = ORDERS_DDL.search(DDL.read_text(encoding="utf-8"))
            assert found is not None, "dujiaoka's orders DDL not found"
            cur.execute(found.group(0))
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
