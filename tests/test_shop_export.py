"""The ``export`` shop kind: dujiaoka's orders table as a bulk export reads exactly as the table itself."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recon.config import load_config
from recon.errors import ShopError
from recon.shops import export, open_shop
from tests.scenario import Scenario

WINDOW = (datetime(2026, 11, 19, tzinfo=UTC), datetime(2026, 11, 22, tzinfo=UTC))


def export_orders(scenario: Scenario, target: Path, separator: str = ",") -> None:
    """The shop's orders table as SELECT * … INTO OUTFILE with a header writes it (\\N for NULL)."""
    con = sqlite3.connect(scenario.shop_path)
    cur = con.execute("SELECT * FROM orders")
    names = [d[0] for d in cur.description]
    frame = pl.DataFrame([[None if v is None else str(v) for v in row] for row in cur.fetchall()],
                         schema=names, orient="row")
    con.close()
    # a tab-separated export (mysqldump --tab) quotes nothing
    frame.write_csv(target, separator=separator, null_value=r"\N", quote_style="never" if separator == "\t" else None)


def export_config(scenario: Scenario, name: str) -> Path:
    text = (scenario.folder / "recon.toml").read_text(encoding="utf-8")
    path = scenario.folder / "export.toml"
    path.write_text(text.replace('kind = "sqlite"\npath = "shop.sqlite"', f'kind = "export"\npath = "{name}"'),
                    encoding="utf-8")
    return path


def fill(scenario: Scenario) -> None:
    scenario.order("A-1", "12.50", trade_no="T1")
    scenario.order("a-2", "8.00", status=1, created="2026-11-20 23:59:59")
    scenario.order("A-3", "3.10", status=6, trade_no="T3", created="2026-11-19 08:00:00", goods_type=2)
    scenario.order("A-4", "1234567.89", status=-1)
    con = sqlite3.connect(scenario.shop_path)
    con.execute("UPDATE orders SET deleted_at = '2026-11-20 12:00:00' WHERE order_sn = 'A-4'")
    con.commit()
    con.close()


@pytest.mark.parametrize("separator", [",", "\t"])
def test_an_export_reads_like_the_table(scenario: Scenario, separator: str) -> None:
    fill(scenario)
    export_orders(scenario, scenario.folder / "orders.csv", separator)
    from_table = open_shop(scenario.config)
    from_export = open_shop(load_config(export_config(scenario, "orders.csv")))
    assert from_export.case_insensitive and from_export.repairable == {}
    table = from_table.orders_created_between(*WINDOW).sort("order_no")
    export = from_export.orders_created_between(*WINDOW).sort("order_no")
    assert export.equals(table) and export["order_no"].to_list() == ["A-1", "A-3", "a-2"]
    assert from_export.orders_by_no(["A-2", "a-1", "nope"])["order_no"].sort().to_list() == ["A-1", "a-2"]


def test_an_export_without_the_columns_is_refused(scenario: Scenario) -> None:
    (scenario.folder / "orders.csv").write_text("order_sn,status\nA-1,4\n", encoding="utf-8")
    shop = open_shop(load_config(export_config(scenario, "orders.csv")))
    with pytest.raises(ShopError, match="not a dujiaoka orders export"):
        shop.orders_created_between(*WINDOW)


@pytest.mark.parametrize("separator", [",", "\t"])
def test_an_export_read_in_small_slices_reads_the_same(scenario: Scenario, separator: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Large exports are read a slice at a time; a cut never falls inside a quoted field (a card list with
    line breaks and commas in ``info``), and every order comes out once, as from one read. (A tab-separated
    export quotes nothing: mysqldump --tab writes a line break inside a value as backslash-n.)"""
    fill(scenario)
    for i in range(40):
        scenario.order(f"S-{i:02d}", f"{i}.05", trade_no=f"TS{i}")
    con = sqlite3.connect(scenario.shop_path)
    cards = "CARD-1, \"gold\"\nCARD-2\r\nCARD-3" if separator == "," else "CARD-1\\nCARD-2"
    con.execute("UPDATE orders SET info = ? WHERE order_sn LIKE 'S-1%'", [cards])
    con.commit()
    con.close()
    export_orders(scenario, scenario.folder / "orders.csv", separator)
    shop = open_shop(load_config(export_config(scenario, "orders.csv")))
    whole = shop.orders_created_between(*WINDOW).sort("order_no")
    monkeypatch.setattr(export, "SLICE_BYTES", 97)
    batches = list(shop.order_batches(*WINDOW))
    assert len(batches) > 10
    sliced = pl.concat(batches).sort("order_no")
    assert sliced.equals(whole) and sliced.height == 43
    assert shop.orders_by_no(["s-15", "A-1"])["order_no"].sort().to_list() == ["A-1", "S-15"]


@pytest.mark.parametrize("row_group", [None, 4], ids=["one insert", "stored four rows a time"])
def test_an_order_in_two_slices_is_stored_once_as_first_read(scenario: Scenario, monkeypatch: pytest.MonkeyPatch,
                                                             row_group: int | None) -> None:
    """An export that repeats an order (a re-export appended, a hand-merged file) in slices read apart: the
    store keeps one row for it, the one nearer the top, as one read of the whole file would; so too when the
    slices are re-cut into row groups of four and the two rows are stored by different inserts."""
    from recon import pipeline
    from recon.classify import prepare
    from recon.pipeline import load_shop_orders

    if row_group:
        monkeypatch.setattr(pipeline, "ROW_GROUP_ROWS", row_group)

    fill(scenario)
    for i in range(30):
        scenario.order(f"S-{i:02d}", f"{i}.05", trade_no=f"TS{i}")
    target = scenario.folder / "orders.csv"
    export_orders(scenario, target)
    lines = target.read_text(encoding="utf-8").splitlines(keepends=True)
    repeated = next(line for line in lines if ",A-1," in line).replace("12.50", "99.00")
    target.write_text("".join([*lines, repeated]), encoding="utf-8")
    config = load_config(export_config(scenario, "orders.csv"))
    monkeypatch.setattr(export, "SLICE_BYTES", 400)
    with scenario.store() as con:
        prepare(con)
        loaded = load_shop_orders(con, open_shop(config), list(config.channels), datetime(2026, 11, 20).date())
        rows = con.execute("SELECT order_no, amount FROM shop_orders WHERE order_no IN ('A-1', 'S-07')").fetchall()
        stored = [n for (n,) in con.execute("SELECT order_no FROM shop_orders WHERE order_no LIKE 'S-%' "
                                            "ORDER BY rowid").fetchall()]
    assert loaded == 33
    assert sorted((n, str(a)) for n, a in rows) == [("A-1", "12.500000"), ("S-07", "7.050000")]
    assert stored == [f"S-{i:02d}" for i in range(30)]  # every order once, in the file's order


def test_orders_named_outside_the_window_come_from_the_same_read(scenario: Scenario,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A run asks for the orders its channel rows name that its window did not hold: they are kept from the
    window's own pass over the file, not read again, unless the file changed or there were too many."""
    fill(scenario)
    scenario.order("OLD-1", "7.00", created="2026-11-10 10:00:00")
    export_orders(scenario, scenario.folder / "orders.csv")
    shop = open_shop(load_config(export_config(scenario, "orders.csv")))
    reads: list[Path] = []
    scan = export._scan_text_table
    monkeypatch.setattr(export, "_scan_text_table", lambda path, wanted: reads.append(path) or scan(path, wanted))

    assert sum(b.height for b in shop.order_batches(*WINDOW)) == 3 and len(reads) == 1
    assert shop.orders_by_no(["old-1", "GHOST"], loaded=WINDOW)["order_no"].to_list() == ["OLD-1"]
    assert len(reads) == 1
    assert shop.orders_by_no(["old-1"])["order_no"].to_list() == ["OLD-1"] and len(reads) == 2  # no window named

    con = sqlite3.connect(scenario.shop_path)
    con.execute("UPDATE orders SET actual_price = 17.00 WHERE order_sn = 'OLD-1'")
    con.commit()
    con.close()
    export_orders(scenario, scenario.folder / "orders.csv")  # re-exported since the window was read
    assert str(shop.orders_by_no(["OLD-1"], loaded=WINDOW)["amount"].item()) == "17.000000" and len(reads) == 3

    monkeypatch.setattr(export, "OUTSIDE_KEPT", 0)  # an export of the whole history: too many to keep
    list(shop.order_batches(*WINDOW))
    assert shop.orders_by_no(["OLD-1"], loaded=WINDOW)["order_no"].to_list() == ["OLD-1"] and len(reads) == 5


@given(st.lists(st.integers(min_value=0, max_value=12), max_size=12))
def test_batches_are_recut_into_whole_row_groups_keeping_every_order_in_order(sizes: list[int]) -> None:
    """Every stored batch but the last fills whole row groups (of four here), and no order is lost or moved."""
    from recon import pipeline

    numbers = iter(range(1000))
    batches = [pl.DataFrame({"order_no": [f"O{next(numbers)}" for _ in range(size)]}) for size in sizes]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "ROW_GROUP_ROWS", 4)
        cut = list(pipeline._whole_row_groups(batches))
    assert all(b.height % 4 == 0 and b.height for b in cut[:-1])
    assert [n for b in cut for n in b["order_no"]] == [n for b in batches for n in b["order_no"]]
