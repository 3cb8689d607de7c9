"""Shop adapters: dujiaoka's own tables, and any shop through a configured SELECT and column mapping."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from jobs.reconcile import reconcile
from recon.config import load_config
from recon.errors import ConfigError, ShopError
from recon.importer import import_file
from recon.lock import store_lock
from recon.shops import open_shop
from recon.store import open_store
from tests.scenario import DAY, Scenario

CUSTOM_SHOP = """
CREATE TABLE sales (sn TEXT, price TEXT, state INTEGER, gateway TEXT, txid TEXT, made TEXT, mail TEXT);
INSERT INTO sales VALUES ('S-1', '12.50', 2, 'bank', 'B1', '2026-11-20 09:00:00', 'a@example.com');
INSERT INTO sales VALUES ('S-2', '8.00', 0, 'bank', '', '2026-11-20 11:00:00', 'b@example.com');
INSERT INTO sales VALUES ('S-3', '3.00', 2, 'bank', 'B3', '2026-11-19 11:00:00', 'c@example.com');
"""
CONFIG = """
[store]
path = "recon.duckdb"
[shop]
kind = "{kind}"
{where}
query = "SELECT * FROM sales"
columns = {{ order_no = "sn", amount = "price", status = "state", pay_method = "gateway", channel_txn_id = "txid", created_at = "made", buyer_contact = "mail" }}
status_map = {{ "0" = "pending", "2" = "delivered" }}
[[channels]]
id = "bank"
kind = "csv"
shop_pay_ids = ["bank"]
[channels.mapping]
columns = {{ channel_txn_id = "txn", order_no = "order", occurred_at = "time", amount = "amount" }}
[reports]
formats = []
"""


def custom_shop(tmp_path: Path, kind: str) -> Path:
    con = sqlite3.connect(tmp_path / "custom.db")
    con.executescript(CUSTOM_SHOP)
    con.close()
    where = 'dsn = "sqlite:///custom.db"' if kind == "sql" else 'path = "custom.db"'
    (tmp_path / "recon.toml").write_text(CONFIG.format(kind=kind, where=where), encoding="utf-8")
    (tmp_path / "bank.csv").write_text("txn,order,time,amount\nB1,S-1,2026-11-20 09:00:10,12.50\n"
                                       "B2,S-2,2026-11-20 11:00:05,8.00\n", encoding="utf-8")
    return tmp_path / "recon.toml"


@pytest.mark.parametrize("kind", ["sql", "sqlite"])
def test_a_configured_select_is_reconciled_like_dujiaoka(tmp_path: Path, kind: str) -> None:
    config = load_config(custom_shop(tmp_path, kind))
    with store_lock(config.store_path), open_store(config, write=True) as con:
        import_file(con, config, "bank", tmp_path / "bank.csv")
    summary, _ = reconcile(config, DAY, None, "test", formats=[])
    assert summary.counts == {"matched": 1, "missing_callback": 1}
    with open_store(config, write=False) as con:
        shop = con.execute("SELECT order_no, amount, status, shop_status, created_at FROM shop_orders "
                           "ORDER BY order_no").fetchall()
    assert shop[0] == ("S-1", Decimal("12.500000"), "delivered", "2", datetime(2026, 11, 20, 1, 0, tzinfo=UTC))


def test_order_numbers_are_bound_not_spliced(tmp_path: Path) -> None:
    config = load_config(custom_shop(tmp_path, "sql"))
    shop = open_shop(config)
    hostile = ["S-1' OR '1'='1", "S-2); DROP TABLE sales; --"]
    assert shop.orders_by_no(hostile).height == 0
    assert shop.orders_by_no(["S-1", *hostile])["order_no"].to_list() == ["S-1"]
    con = sqlite3.connect(tmp_path / "custom.db")
    assert con.execute("SELECT count(*) FROM sales").fetchone() == (3,)


def test_an_unmapped_shop_status_is_an_error_not_a_guess(tmp_path: Path) -> None:
    config = load_config(custom_shop(tmp_path, "sql"))
    con = sqlite3.connect(tmp_path / "custom.db")
    con.execute("UPDATE sales SET state = 7 WHERE sn = 'S-1'")
    con.commit()
    con.close()
    with pytest.raises(ShopError, match=r"order S-1 has status '7', which shop.status_map does not map"):
        open_shop(config).orders_created_between(datetime(2026, 11, 19, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC))


def test_dujiaoka_orders_are_case_insensitive_and_soft_deletes_are_gone(scenario: Scenario) -> None:
    scenario.order("ABCD0001", "10.00")
    scenario.order("ABCD0002", "20.00")
    con = sqlite3.connect(scenario.shop_path)
    con.execute("UPDATE orders SET deleted_at = '2026-11-20 12:00:00' WHERE order_sn = 'ABCD0002'")
    con.commit()
    con.close()
    shop = open_shop(scenario.config)
    found = shop.orders_by_no(["abcd0001", "ABCD0002"])
    assert found["order_no"].to_list() == ["ABCD0001"]
    assert found["status"].to_list() == ["delivered"] and found["shop_status"].to_list() == ["4"]


def test_missing_shop_file_and_unsupported_dsn_are_config_errors(tmp_path: Path) -> None:
    config = load_config(custom_shop(tmp_path, "sqlite"))
    (tmp_path / "custom.db").unlink()
    with pytest.raises(ConfigError, match=r"shop.path: .*custom.db does not exist"):
        open_shop(config)
    text = (tmp_path / "recon.toml").read_text(encoding="utf-8").replace('path = "custom.db"', "").replace(
        'kind = "sqlite"', 'kind = "sql"\ndsn = "oracle://db/shop"')
    (tmp_path / "recon.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"shop.dsn: scheme 'oracle' is not supported"):
        open_shop(load_config(tmp_path / "recon.toml"))
