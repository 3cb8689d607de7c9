"""Load the generated shop export into a dujiaoka ``orders`` table on PostgreSQL (the third figure).

dujiaoka ships MySQL DDL only; its ``orders`` table is translated mechanically (bench/shop_ddl.py) and
filled by ``COPY … FROM STDIN`` from the same export file the ``export`` shop kind reads (CSV with a header,
``\\N`` for NULL), so every figure reconciles identical orders.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql

from bench.shop_ddl import table_ddl, translate
from recon.shops.connect import parse_dsn

COPY_BLOCK = 1 << 20  # bytes of the export handed to COPY at a time


def load_orders(dsn: str, export: Path) -> int:
    """(Re)create ``orders`` in the DSN's database (created when absent) and bulk-load ``export``."""
    d = parse_dsn(dsn, "--postgres")
    server = {"host": d.host, "port": d.port, "user": d.user, "password": d.password or None}
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [d.database]).fetchone() is None:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(d.database)))
    with psycopg.connect(dbname=d.database, **server) as con:
        for statement in table_ddl("orders"):
            for part in translate(statement, "postgresql"):
                con.execute(part)  # type: ignore[arg-type]  # dujiaoka's own DDL, not user input
        with con.cursor() as cur, cur.copy("COPY orders FROM STDIN (FORMAT csv, HEADER true, NULL '\\N')") as copy:
            with export.open("rb") as source:
                while block := source.read(COPY_BLOCK):
                    copy.write(block)
        con.execute("ANALYZE orders")
        [(rows,)] = con.execute("SELECT count(*) FROM orders").fetchall()
    return int(rows)
