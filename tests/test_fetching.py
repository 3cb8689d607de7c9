"""Fetching a date: inbox folders drain into the store, refused files go to quarantine with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recon import fetching

from recon_cli import app
from tests.scenario import Scenario

runner = CliRunner()


def inbox_scenario(tmp_path: Path) -> Scenario:
    s = Scenario(tmp_path, channel_extra='inbox = "inbox/pay"\n')
    (tmp_path / "inbox" / "pay").mkdir(parents=True)
    return s


def test_inbox_files_are_imported_and_moved_bad_ones_quarantined(tmp_path: Path) -> None:
    s = inbox_scenario(tmp_path)
    s.order("O1", "10.00", trade_no="T1")
    good = s.statement([{"txn": "T1", "order": "O1", "amount": "10.00"}], name="inbox/pay/a_good.csv")
    bad = s.statement([{"txn": "T2", "order": "O2", "amount": "abc"}], name="inbox/pay/b_bad.csv")
    # The good bill downloaded twice: the second copy, read ahead with the others, finds the first one stored.
    again = tmp_path / "inbox" / "pay" / "c_good (1).csv"
    again.write_bytes(good.read_bytes())
    result = runner.invoke(app, ["--config", str(tmp_path / "recon.toml"), "fetch", "--date", "2026-11-20", "--json"])
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body[0]["mode"] == "inbox" and body[0]["rows_new"] == 1
    assert "b_bad.csv:2: amount: 'abc' is not an amount" in body[0]["error"]
    done = tmp_path / "inbox" / "pay" / "done"
    assert not good.exists() and (done / "a_good.csv").exists()
    assert not again.exists() and (done / again.name).exists()
    assert s.query("SELECT count(*) AS n FROM imports")[0]["n"] == 1
    assert not bad.exists()
    kept = sorted((tmp_path / "quarantine").iterdir())
    assert [p.name.split("_", 1)[1] for p in kept] == ["pay_b_bad.csv", "pay_b_bad.csv.reason.txt"]
    assert "is not an amount" in kept[1].read_text(encoding="utf-8")
    assert s.query("SELECT count(*) AS n FROM channel_txn")[0]["n"] == 1


def test_run_fetches_from_the_inbox_unless_told_not_to(tmp_path: Path) -> None:
    s = inbox_scenario(tmp_path)
    s.order("O1", "10.00", trade_no="T1")
    s.statement([{"txn": "T1", "order": "O1", "amount": "10.00"}], name="inbox/pay/day.csv")
    config = ["--config", str(tmp_path / "recon.toml")]
    skipped = runner.invoke(app, [*config, "run", "--date", "2026-11-20", "--no-fetch", "--json"])
    assert json.loads(skipped.stdout)["counts"] == {"pending": 1}
    fetched = runner.invoke(app, [*config, "run", "--date", "2026-11-20", "--json"])
    assert fetched.exit_code == 0, fetched.output
    body = json.loads(fetched.stdout)
    assert body["counts"] == {"matched": 1}
    assert body["fetch"] == [{"channel": "pay", "mode": "inbox", "rows_new": 1, "error": None}]


def test_a_refused_hand_import_keeps_a_copy_in_quarantine(scenario: Scenario) -> None:
    bad = scenario.statement([{"txn": "T2", "order": "O2", "amount": "abc"}], name="bad.csv")
    result = runner.invoke(app, ["--config", str(scenario.folder / "recon.toml"), "import", "-c", "pay", str(bad)])
    assert result.exit_code == 1
    assert "(a copy is kept in" in result.stderr
    assert bad.exists()
    [kept] = [p for p in (scenario.folder / "quarantine").iterdir() if p.name.endswith("pay_bad.csv")]
    assert kept.read_bytes() == bad.read_bytes()


def test_inbox_files_taken_away_while_it_drains_stop_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A person or a sync tool moves files out of the inbox while the nightly run drains it: one before recon reads
    it, one after it is stored. The first is an error naming it, the second is imported, the rest drain on."""
    s = inbox_scenario(tmp_path)
    s.order("O1", "10.00", trade_no="T1")
    s.order("O3", "30.00", trade_no="T3")
    gone = s.statement([{"txn": "T2", "order": "O2", "amount": "2.00"}], name="inbox/pay/a_gone.csv")
    taken = s.statement([{"txn": "T1", "order": "O1", "amount": "10.00"}], name="inbox/pay/b_taken.csv")
    stays = s.statement([{"txn": "T3", "order": "O3", "amount": "30.00"}], name="inbox/pay/c_stays.csv")
    listed = fetching.read_statements
    stored = fetching.store_import

    def read_after_one_is_gone(files: list[tuple[Path, str]]) -> object:
        gone.unlink()
        return listed(files)

    def store_then_take_away(*args: object, **kwargs: object) -> object:
        outcome = stored(*args, **kwargs)  # type: ignore[arg-type]
        if taken.exists():
            taken.unlink()
        return outcome

    monkeypatch.setattr(fetching, "read_statements", read_after_one_is_gone)
    monkeypatch.setattr(fetching, "store_import", store_then_take_away)
    result = runner.invoke(app, ["--config", str(tmp_path / "recon.toml"), "fetch", "--date", "2026-11-20", "--json"])
    assert result.exit_code == 1, result.output
    body = json.loads(result.stdout)
    assert "a_gone.csv" in body[0]["error"] and "cannot read" in body[0]["error"]
    assert body[0]["rows_new"] == 2
    assert not stays.exists() and (tmp_path / "inbox" / "pay" / "done" / "c_stays.csv").exists()
    assert not (tmp_path / "quarantine").exists()
    assert s.query("SELECT count(*) AS n FROM channel_txn")[0]["n"] == 2
