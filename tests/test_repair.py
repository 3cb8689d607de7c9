"""Repairs on the SQLite dujiaoka shop: dry run by default, re-query, lost answers, operator redelivery."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from fetchers.sandbox import Payment, Sandbox
from fetchers.sandbox.epay import EpaySandbox
from recon.errors import ShopError
from recon.lock import store_lock
from recon.repair.run import repair
from recon.repair.shop import open_repairer
from recon.shops.base import ActResult
from recon_cli import app
from tests.scenario import Scenario

runner = CliRunner()
SH = ZoneInfo("Asia/Shanghai")


def stock(s: Scenario, cards: int = 3) -> None:
    s.stock(cards)


def shop_rows(s: Scenario) -> list[tuple[object, ...]]:
    con = sqlite3.connect(s.shop_path)
    rows = con.execute("SELECT order_sn, status, info, trade_no FROM orders ORDER BY order_sn").fetchall()
    rows += con.execute("SELECT carmi, status FROM carmis ORDER BY id").fetchall()
    con.close()
    return rows


def lost_day(s: Scenario) -> Path:
    stock(s)
    s.order("LOST1", "10.00", status=1)
    s.order("LOST2", "10.00", status=-1)
    s.order("PAID3", "10.00", status=4, trade_no="T3")
    s.import_(s.statement([{"txn": "T1", "order": "LOST1", "amount": "10.00"},
                           {"txn": "T2", "order": "LOST2", "amount": "10.00"},
                           {"txn": "T3", "order": "PAID3", "amount": "10.00"}]))
    s.run()
    return s.folder / "recon.toml"


def test_dry_run_changes_nothing_and_apply_does_exactly_the_plan(scenario: Scenario) -> None:
    config = ["--config", str(lost_day(scenario))]
    before = shop_rows(scenario)
    dry = runner.invoke(app, [*config, "repair", "--json"])
    assert dry.exit_code == 3, dry.output
    plan = json.loads(dry.stdout)
    assert shop_rows(scenario) == before
    assert scenario.query("SELECT count(*) AS n FROM repairs")[0]["n"] == 0
    done = runner.invoke(app, [*config, "repair", "--apply", "--json"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert [p["key"] for p in result["planned"]] == [p["key"] for p in plan["planned"]]
    assert sorted(o["order_no"] for o in result["outcomes"] if o["state"] == "applied") == ["LOST1", "LOST2"]
    rows = {r[0]: r for r in shop_rows(scenario) if str(r[0]).startswith(("LOST", "PAID"))}
    assert rows["LOST1"][1] == 4 and rows["LOST1"][3] == "T1" and rows["LOST1"][2].startswith("CARD-")
    assert rows["PAID3"] == next(r for r in before if r[0] == "PAID3")
    events = scenario.query("SELECT action FROM exception_events WHERE action = 'repaired'")
    assert len(events) == 2
    after_first = shop_rows(scenario)
    again = runner.invoke(app, [*config, "repair", "--apply", "--json"])
    assert json.loads(again.stdout)["counts"] == {"planned": 0, "applied": 0, "skipped": 0, "failed": 0}
    assert shop_rows(scenario) == after_first
    sold = [r for r in shop_rows(scenario) if str(r[0]).startswith("CARD-") and r[1] == 2]
    assert len(sold) == 2


def test_a_lost_answer_is_settled_by_reading_the_shop_with_one_delivery(scenario: Scenario) -> None:
    lost_day(scenario)
    real = open_repairer(scenario.config)

    class AnswerLost:
        """The shop applies the change, then the connection drops before its answer arrives."""

        name = real.name
        read = real.read
        deliver_after_restock = real.deliver_after_restock

        def complete(self, order_no: str, amount: Decimal, channel_txn_id: str) -> ActResult:
            real.complete(order_no, amount, channel_txn_id)
            raise ShopError("connection reset by peer")

    with store_lock(scenario.config.store_path), scenario.store() as con:
        report = repair(con, scenario.config, AnswerLost(), None, True, "tester")  # type: ignore[arg-type]
    assert [o.state for o in report.outcomes] == ["applied", "applied"]
    assert all("lost answer" in o.detail for o in report.outcomes)
    sold = [r for r in shop_rows(scenario) if str(r[0]).startswith("CARD-") and r[1] == 2]
    assert len(sold) == 2


def test_the_channel_is_asked_again_and_a_different_answer_stops_the_repair(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EP_KEY", "k-123")
    paid = Payment("EP1", Decimal("12.00"), "2026112012000011111", datetime(2026, 11, 20, 12, 0, 5, tzinfo=SH))
    epay = EpaySandbox("1001", "k-123", [paid])
    with Sandbox(epay) as sandbox:
        more = ('\n[[channels]]\nid = "ep"\nkind = "epay"\nshop_pay_ids = [14]\nauto_repair_max = 500\n'
                f'api = {{ pid = "1001" }}\napi_base = "{sandbox.url("/epay")}"\ncredentials = {{ key = "env:EP_KEY" }}\n')
        s = Scenario(tmp_path, more_channels=more)
        stock(s)
        s.order("EP1", "12.00", pay_id=14, status=1)
        config = ["--config", str(tmp_path / "recon.toml")]
        assert runner.invoke(app, [*config, "run", "--date", "2026-11-20"]).exit_code == 3
        epay.reset([Payment("EP1", Decimal("1.20"), paid.txn_id, paid.paid_at)])
        refused = runner.invoke(app, [*config, "repair", "--apply", "--json"])
        epay.reset([paid])
        accepted = runner.invoke(app, [*config, "repair", "--apply", "--json"])
    skipped = [o for o in json.loads(refused.stdout)["outcomes"] if o["state"] == "skipped"]
    assert refused.exit_code == 3 and "re-query: the channel says 1.20" in skipped[0]["detail"]
    assert [o["state"] for o in json.loads(accepted.stdout)["outcomes"]] == ["applied"]


def test_redeliver_rules(scenario: Scenario) -> None:
    config = ["--config", str(lost_day(scenario))]
    scenario.order("MANUAL5", "10.00", status=5)
    refused = runner.invoke(app, [*config, "redeliver", "MANUAL5", "--yes"])
    assert refused.exit_code == 2 and "shop status 5" in refused.stderr
    no_reason = runner.invoke(app, [*config, "redeliver", "LOST1", "--force", "--yes"])
    assert no_reason.exit_code == 2 and "--force needs --reason" in no_reason.stderr
    no_confirm = runner.invoke(app, [*config, "redeliver", "LOST1"])
    assert no_confirm.exit_code == 2 and "--yes" in no_confirm.stderr
    scenario.order("UNPROVEN", "10.00", status=1)
    unproven = runner.invoke(app, [*config, "redeliver", "UNPROVEN", "--yes"])
    assert unproven.exit_code == 2 and "no open missing_callback exception" in unproven.stderr
    forced = runner.invoke(app, [*config, "redeliver", "UNPROVEN", "--force", "--reason", "paid by bank transfer",
                                 "--yes", "--json"])
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout)["state"] == "applied"
    audit = scenario.query("SELECT actor, reason, state FROM repairs WHERE order_no = 'UNPROVEN'")
    assert audit[0]["reason"] == "paid by bank transfer" and audit[0]["state"] == "applied" and audit[0]["actor"]


def test_redeliver_keeps_the_cap_unless_forced(scenario: Scenario) -> None:
    """DESIGN §6.6: an order above the channel's auto_repair_max needs --force and a reason."""
    stock(scenario)
    scenario.order("BIG1", "600.00", status=1)
    scenario.import_(scenario.statement([{"txn": "TB1", "order": "BIG1", "amount": "600.00"}]))
    scenario.run()
    config = ["--config", str(scenario.folder / "recon.toml")]
    refused = runner.invoke(app, [*config, "redeliver", "BIG1", "--yes"])
    assert refused.exit_code == 2 and "auto_repair_max" in refused.stderr
    assert [r[1] for r in shop_rows(scenario) if r[0] == "BIG1"] == [1]
    forced = runner.invoke(app, [*config, "redeliver", "BIG1", "--yes", "--force", "--reason", "checked with the bank"])
    assert forced.exit_code == 0, forced.output
    assert [r[1] for r in shop_rows(scenario) if r[0] == "BIG1"] == [4]
