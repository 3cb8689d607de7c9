"""Imports are all or nothing: a kill -9 while storing leaves no trace, and the file then counts exactly once.

Each crash is a real SIGKILL of a child `recon import` / `recon fetch`: at the kill point inside the open
transaction (``RECON_CRASH_AT=import_mid_store``), right after the commit (``import_after_commit``), at the
second file of a batch, from outside while it is paused mid-write, and from outside at a random moment.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from fetchers.sandbox import Payment, Sandbox
from fetchers.sandbox.stripe import StripeSandbox
from recon_cli import app
from tests.reliability.hostile_files import dump_store, recon_child, wait_measured
from tests.scenario import ROOT, Scenario

runner = CliRunner()
CRASHED = -signal.SIGKILL


def rows(prefix: str, n: int, first: int = 1) -> list[dict[str, str]]:
    return [{"txn": f"{prefix}{i}", "order": f"O{prefix}{i}", "amount": f"{i}.00"} for i in range(first, first + n)]


def recon_import(s: Scenario, *paths: Path, crash: str | None = None) -> tuple[int, str]:
    """`recon import -c pay` of ``paths``: in a child process that kills itself at ``crash``, or, for the
    rerun after a crash, in process (a new command all the same, and much quicker to start)."""
    args = ["--config", str(s.folder / "recon.toml"), "import", "-c", "pay", *map(str, paths)]
    if crash:
        child = recon_child(*args, env={"RECON_CRASH_AT": crash})
        return child.code, child.stdout + child.stderr
    result = runner.invoke(app, args)
    return result.exit_code, result.stdout + result.stderr


def check_ledger(s: Scenario) -> None:
    """The imports ledger agrees with the rows: every row and duplicate belongs to a recorded import, and each
    import's counts are what it holds; archived originals are whole (named by their content's hash)."""
    imports = s.query("SELECT import_id, rows_total, rows_new, rows_duplicate FROM imports")
    held = {r["import_id"]: r["n"] for r in s.query("SELECT import_id, count(*) AS n FROM channel_txn GROUP BY 1")}
    dupes = {r["import_id"]: r["n"] for r in s.query("SELECT import_id, count(*) AS n FROM import_duplicates "
                                                     "GROUP BY 1")}
    recorded = {r["import_id"] for r in imports}
    assert set(held) <= recorded and set(dupes) <= recorded, "rows of an import that is not in the ledger"
    for r in imports:
        assert held.get(r["import_id"], 0) == r["rows_new"] and dupes.get(r["import_id"], 0) == r["rows_duplicate"]
        assert r["rows_new"] + r["rows_duplicate"] == r["rows_total"]
    for path in s.config.archive_dir.rglob("*"):
        if path.is_file():
            assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, f"partial archive file {path}"


def imported(s: Scenario, path: Path) -> list[dict[str, object]]:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return s.query("SELECT import_id, rows_total, rows_new, rows_duplicate FROM imports WHERE sha256 = ?", [digest])


@pytest.fixture
def shop(scenario: Scenario) -> Scenario:
    """A store already holding one statement (T1..T3), so that a crash has something to damage."""
    scenario.import_(scenario.statement(rows("T", 3), name="first.csv"))
    return scenario


def test_kill_mid_store_leaves_no_trace_then_the_file_counts_once(shop: Scenario) -> None:
    before = dump_store(shop.config.store_path)
    # T3 repeats a row of first.csv: the import writes a duplicate record too before it dies
    path = shop.statement(rows("T", 3, first=3) + rows("U", 2), name="second.csv")
    code, _ = recon_import(shop, path, crash="import_mid_store")
    assert code == CRASHED
    assert dump_store(shop.config.store_path) == before
    check_ledger(shop)

    code, output = recon_import(shop, path)
    assert code == 0, output
    assert "second.csv: import #" in output and "5 rows, 4 new, 1 duplicate" in output
    assert "line 2: duplicate of first.csv:4" in output
    again, output = recon_import(shop, path)
    assert again == 0 and "already imported" in output
    [row] = imported(shop, path)
    assert (row["rows_total"], row["rows_new"], row["rows_duplicate"]) == (5, 4, 1)
    assert shop.query("SELECT count(*) AS n FROM channel_txn")[0]["n"] == 3 + 4
    check_ledger(shop)


def test_kill_right_after_the_commit_keeps_the_import_whole_and_once(shop: Scenario) -> None:
    path = shop.statement(rows("V", 4), name="third.csv")
    code, _ = recon_import(shop, path, crash="import_after_commit")
    assert code == CRASHED
    [row] = imported(shop, path)
    assert row["rows_new"] == 4
    code, output = recon_import(shop, path)
    assert code == 0 and f"already imported (import #{row['import_id']})" in output
    assert shop.query("SELECT count(*) AS n FROM channel_txn")[0]["n"] == 3 + 4
    check_ledger(shop)


def test_kill_at_the_second_file_of_a_batch_then_rerun_the_batch(shop: Scenario) -> None:
    first = shop.statement(rows("W", 2), name="w.csv")
    second = shop.statement(rows("X", 2) + rows("W", 1), name="x.csv")  # W1 overlaps w.csv
    code, _ = recon_import(shop, first, second, crash="import_mid_store:2")
    assert code == CRASHED
    assert len(imported(shop, first)) == 1 and imported(shop, second) == []
    code, output = recon_import(shop, first, second)
    assert code == 0, output
    assert "w.csv: already imported" in output and "line 4: duplicate of w.csv:2" in output
    assert [len(imported(shop, p)) for p in (first, second)] == [1, 1]
    keys = shop.query("SELECT channel_txn_id FROM channel_txn ORDER BY 1")
    assert [k["channel_txn_id"] for k in keys] == ["T1", "T2", "T3", "W1", "W2", "X1", "X2"]
    check_ledger(shop)


def _start_import(s: Scenario, path: Path, env: dict[str, str] | None = None,
                  stderr: int = subprocess.PIPE) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "from recon_cli import main; main()", "--config",
                             str(s.folder / "recon.toml"), "import", "-c", "pay", str(path)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, **(env or {})})


def test_sigkill_from_outside_while_paused_mid_write(shop: Scenario) -> None:
    before = dump_store(shop.config.store_path)
    path = shop.statement(rows("Y", 50), name="paused.csv")
    child = _start_import(shop, path, {"RECON_PAUSE_AT": "import_mid_store", "RECON_PAUSE_SECONDS": "30"})
    assert child.stderr is not None
    assert child.stderr.readline().decode().strip() == "paused at import_mid_store"
    os.kill(child.pid, signal.SIGKILL)
    code, _ = wait_measured(child, 30)
    child.stderr.close()
    assert code == CRASHED
    assert dump_store(shop.config.store_path) == before
    assert recon_import(shop, path)[0] == 0
    assert imported(shop, path)[0]["rows_new"] == 50
    check_ledger(shop)


def test_sigkill_from_outside_at_a_random_moment_is_all_or_nothing(shop: Scenario) -> None:
    """60 000 rows take about 3.5 s here (half of it starting up); the kill lands anywhere in that span
    (``RECON_KILL_SEED=<n>`` replays a moment), and whatever it hit, the import is whole or absent."""
    seed = int(os.environ.get("RECON_KILL_SEED", random.randrange(1 << 30)))
    n = 60_000
    path = shop.statement(rows("Z", n), name="large.csv")
    delay = random.Random(seed).uniform(1.0, 3.5)
    child = _start_import(shop, path, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    os.kill(child.pid, signal.SIGKILL)  # not Popen.send_signal: it would reap a child that already finished
    wait_measured(child, 60)
    held = shop.query("SELECT count(*) AS n FROM channel_txn WHERE channel_txn_id LIKE 'Z%'")[0]["n"]
    ledger = imported(shop, path)
    assert (held, len(ledger)) in ((0, 0), (n, 1)), f"half an import after a kill at {delay:.2f} s (seed {seed})"
    check_ledger(shop)
    code, output = recon_import(shop, path)
    assert code == 0, output
    assert shop.query("SELECT count(*) AS n FROM channel_txn WHERE channel_txn_id LIKE 'Z%'")[0]["n"] == n
    assert len(imported(shop, path)) == 1
    check_ledger(shop)


def test_inbox_file_counts_once_after_crashed_fetches(tmp_path: Path) -> None:
    """A fetch killed mid-store leaves the file in the inbox and nothing stored; one killed after the commit but
    before the move to done/ leaves it stored and still in the inbox; the next fetch knows it by its content and
    only moves it."""
    s = Scenario(tmp_path, channel_extra='inbox = "inbox/pay"\n')
    (tmp_path / "inbox" / "pay").mkdir(parents=True)
    path = s.statement(rows("I", 3), name="inbox/pay/day.csv")
    fetch = ["--config", str(tmp_path / "recon.toml"), "fetch", "--date", "2026-11-20"]
    for crash, stored in (("import_mid_store", 0), ("import_after_commit", 1)):
        assert recon_child(*fetch, env={"RECON_CRASH_AT": crash}).code == CRASHED
        assert path.exists() and len(imported(s, path)) == stored
        check_ledger(s)
    done = runner.invoke(app, fetch)
    assert done.exit_code == 0, done.output
    assert not path.exists() and (tmp_path / "inbox" / "pay" / "done" / "day.csv").exists()
    assert len(imported(s, tmp_path / "inbox" / "pay" / "done" / "day.csv")) == 1
    assert s.query("SELECT count(*) AS n FROM channel_txn")[0]["n"] == 3
    check_ledger(s)


def test_a_day_fetched_again_adds_only_what_is_new_and_records_the_repeats(tmp_path: Path) -> None:
    """API records carry no line numbers: a second pull of a day that brings a late record (and one record twice,
    as when a page boundary moves) stores the new one once and records the repeats."""
    noon = datetime(2024, 3, 1, 12, tzinfo=ZoneInfo("Asia/Shanghai"))
    paid = [Payment(f"S{i}", Decimal("5.00"), f"pi_{i}", noon + timedelta(minutes=i), currency="USD")
            for i in range(3)]
    stripe = StripeSandbox(paid[:2], secret_key="sk_test_refetch")
    (tmp_path / "key").write_text("sk_test_refetch", encoding="utf-8")
    with Sandbox(stripe) as sandbox:
        s = Scenario(tmp_path, more_channels=f'\n[[channels]]\nid = "st"\nkind = "stripe"\ncurrency = "USD"\n'
                                             f'api_base = "{sandbox.url("/stripe")}"\n'
                                             f'credentials = {{ secret_key = "file:{tmp_path / "key"}" }}\n')
        fetch = ["--config", str(tmp_path / "recon.toml"), "fetch", "--date", "2024-03-01", "--channel", "st"]
        first = runner.invoke(app, fetch)
        assert first.exit_code == 0, first.output
        stripe.payments = [*paid, paid[2]]  # a late payment, listed twice
        again = runner.invoke(app, fetch)
        assert again.exit_code == 0, again.output
    imports = s.query("SELECT rows_total, rows_new, rows_duplicate FROM imports WHERE channel = 'st' ORDER BY 1")
    assert [(r["rows_total"], r["rows_new"], r["rows_duplicate"]) for r in imports] == [(2, 2, 0), (4, 1, 3)]
    assert s.query("SELECT count(*) AS n FROM channel_txn WHERE channel = 'st'")[0]["n"] == 3
    assert {r["duplicate_of"] for r in s.query("SELECT duplicate_of FROM import_duplicates")} == {
        "stripe_balance_transactions_2024-03-01.json:?"}
    check_ledger(s)
