"""The intraday sweep against the Epay sandbox: a payment the shop never heard of is found minutes
after it happened, recorded as missing_callback, repaired when safe, alerted when not."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recon_cli import app
from tests.alert_servers import Answer, RecordingServer
from tests.schedule_world import EPAY_KEY, EpayShop, epay_panel

runner = CliRunner()


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EpayShop]:
    monkeypatch.setenv("EP_KEY", EPAY_KEY)
    with epay_panel() as (sandbox, panel):
        world = EpayShop(tmp_path, sandbox, panel)
        world.scenario.stock(3)
        yield world


def sweep(shop: EpayShop, *args: str) -> tuple[int, dict[str, object]]:
    result = runner.invoke(app, ["--config", str(shop.scenario.folder / "recon.toml"), "sweep", "--json", *args])
    assert result.exit_code in (0, 3), result.output
    return result.exit_code, json.loads(result.stdout)


def order_queries(shop: EpayShop, sandbox_requests: list[object]) -> int:
    return sum(1 for r in sandbox_requests if "act=order&" in getattr(r, "raw_query", "") or
               getattr(r, "query", {}).get("act") == "order")


def test_a_lost_payment_is_recorded_at_once_and_repaired_with_apply(shop: EpayShop) -> None:
    lost = shop.unpaid_order(minutes_ago=8)
    shop.pay(lost)
    young = shop.unpaid_order(minutes_ago=1)  # inside the 5 minutes a buyer may still be paying
    shop.pay(young)

    code, found = sweep(shop)
    assert code == 3
    assert [(o["order_no"], o["answer"], o["outcome"]) for o in found["orders"]] == [(lost, "paid", "planned")]
    assert shop.shop_status(lost) == 1  # a dry run changes nothing in the shop
    [exc] = shop.scenario.query("SELECT * FROM exceptions")
    assert (exc["code"], exc["order_no"], exc["status"], exc["auto_repairable"]) == (
        "missing_callback", lost, "open", True)
    # the exception sheet's shop status and channel time are what the sweep saw
    assert (exc["shop_status"], exc["occurred_at"] is not None) == ("1", True)
    assert "found by the sweep" in [e["note"] for e in shop.scenario.query("SELECT note FROM exception_events")]

    code, repaired = sweep(shop, "--apply")
    assert code == 0
    [item] = repaired["orders"]
    assert (item["order_no"], item["outcome"]) == (lost, "repaired")
    assert 0 < item["recovered_after_seconds"] < 120
    assert shop.shop_status(lost) == 4 and shop.shop_status(young) == 1
    assert shop.scenario.query("SELECT status FROM exceptions") == [{"status": "repaired"}]
    assert shop.scenario.query("SELECT state FROM repairs") == [{"state": "applied"}]
    # A third pass finds nothing to do, and repairs nothing twice.
    code, again = sweep(shop, "--apply")
    assert code == 0 and again["paid"] == 0
    assert shop.scenario.query("SELECT count(*) AS n FROM repairs") == [{"n": 1}]


def test_an_unpaid_order_is_asked_again_only_after_a_doubling_gap(shop: EpayShop) -> None:
    waiting = shop.unpaid_order(minutes_ago=7)
    shop.pay(waiting, status="unpaid")
    _, first = sweep(shop)
    _, second = sweep(shop)
    assert [o["answer"] for o in first["orders"]] == ["unpaid"]
    assert second["candidates"] == 1 and second["asked"] == 0
    assert shop.scenario.query("SELECT checks, last_state FROM sweep_checks") == [{"checks": 1, "last_state": "unpaid"}]


def test_a_payment_that_differs_from_the_order_is_alerted_not_repaired(shop: EpayShop,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    with RecordingServer() as hooks:
        hooks.on("/hook", Answer(200, {"ok": True}))
        monkeypatch.setenv("HOOK_URL", f"{hooks.base}/hook")
        with open(shop.scenario.folder / "recon.toml", "a", encoding="utf-8") as fh:
            fh.write('\n[[alerts.webhooks]]\nkind = "json"\nurl = "env:HOOK_URL"\n')
        short = shop.unpaid_order(minutes_ago=9, amount="10.00")
        shop.pay(short, amount="1.00")
        code, found = sweep(shop, "--apply")
    assert code == 3
    [item] = found["orders"]
    assert item["outcome"] == "needs_person" and "the shop expects 10.00" in item["detail"]
    assert shop.shop_status(short) == 1
    [exc] = shop.scenario.query("SELECT auto_repairable, status FROM exceptions")
    assert exc == {"auto_repairable": False, "status": "open"}
    [alert] = hooks.to("/hook")
    assert alert.json()["event"] == "sweep_found" and alert.json()["orders"][0]["order_no"] == short
