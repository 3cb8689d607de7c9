"""``recon schedule`` as cron and systemd run it: a child process, real signals, a real sandbox."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from tests.processes import Recon
from tests.schedule_world import EPAY_KEY, SH, EpayShop, epay_panel

ENV = {"EP_KEY": EPAY_KEY, "RECON_LOG_JSON": "1"}
TODAY = datetime.now(UTC).astimezone(SH).date()


def shop_with(tmp_path: Path, sandbox: object, panel: object, schedule: str, repair: str = "") -> EpayShop:
    world = EpayShop(tmp_path, sandbox, panel, schedule=schedule)  # type: ignore[arg-type]
    if repair:
        with open(tmp_path / "recon.toml", "a", encoding="utf-8") as fh:
            fh.write("\n[repair]\n" + repair)
    return world


def yesterdays_shop(tmp_path: Path, panel: tuple[object, object]) -> tuple[EpayShop, Path, str]:
    """A shop with one order paid yesterday on the panel; its config path and the date."""
    day = TODAY - timedelta(days=1)
    shop = shop_with(tmp_path, *panel, schedule=f"start_date = {day}\n")
    shop.paid_order(day)
    return shop, shop.scenario.folder / "recon.toml", str(day)


def paused_run(config: Path, day: str, seconds: int) -> Recon:
    """``recon run`` of ``day`` on channel ep, waiting ``seconds`` just before its commit."""
    run = Recon(config, "run", "--date", day, "--channel", "ep",
                env={**ENV, "RECON_PAUSE_AT": "before_commit", "RECON_PAUSE_SECONDS": str(seconds)})
    run.wait_for("paused at before_commit")
    return run


@pytest.fixture
def panel() -> Iterator[tuple[object, object]]:
    with epay_panel() as pair:
        yield pair


def test_the_daemon_recovers_a_lost_payment_within_one_sweep_interval(tmp_path: Path,
                                                                      panel: tuple[object, object]) -> None:
    shop = shop_with(tmp_path, *panel, schedule=f"start_date = {TODAY}\nsweep_interval_seconds = 2\n",
                     repair="auto_repair = true\n")
    shop.scenario.stock(2)
    daemon = Recon(shop.scenario.folder / "recon.toml", "schedule", env=ENV)
    try:
        daemon.wait_for(r'"job": "retry".*"ran": 0', timeout=30)  # booted; nothing owed before today
        lost = shop.unpaid_order(minutes_ago=6)
        shop.pay(lost)
        paid = time.monotonic()
        while shop.shop_status(lost) != 4 and time.monotonic() - paid < 20:
            time.sleep(0.1)
        took = time.monotonic() - paid
        assert shop.shop_status(lost) == 4, daemon.stderr
        # One interval (2 s) plus the pass itself: the channel query, the re-query, the repair.
        assert took < 2 + 4, f"recovered after {took:.1f} s"
        recovered = daemon.wait_for(r"recovered_after_seconds", timeout=10)
        assert lost in recovered and json.loads(recovered)["recovered_after_seconds"] < 10
    finally:
        daemon.signal(signal.SIGTERM)
        code, _ = daemon.finish()
    assert code == 0, daemon.stderr


def test_sigterm_lets_the_run_in_progress_finish_and_the_restart_catches_up_the_rest(
        tmp_path: Path, panel: tuple[object, object]) -> None:
    first_day = TODAY - timedelta(days=3)
    shop = shop_with(tmp_path, *panel, schedule=f'start_date = {first_day}\nnightly = {{ pay = "0 0 1 1 *" }}\n')
    for i in range(3):
        shop.paid_order(first_day + timedelta(days=i))
    config = shop.scenario.folder / "recon.toml"
    daemon = Recon(config, "schedule", env={**ENV, "RECON_PAUSE_AT": "before_commit", "RECON_PAUSE_SECONDS": "2"})
    daemon.wait_for("paused at before_commit")
    daemon.signal(signal.SIGTERM)
    code, _ = daemon.finish(timeout=20)
    assert code == 0, daemon.stderr
    runs = shop.runs()
    assert [(r["status"], r["business_date"]) for r in runs] == [("succeeded", first_day)]
    assert "finishing the current step" in daemon.stderr

    again = Recon(config, "schedule", env=ENV)
    again.wait_for(r'"job": "retry".*"ran": 2')
    again.signal(signal.SIGINT)
    assert again.finish()[0] == 0
    per_date = Counter(r["business_date"] for r in shop.runs() if "ep" in r["channels"])
    assert per_date == {first_day + timedelta(days=i): 1 for i in range(3)}
    assert {r["status"] for r in shop.runs()} == {"succeeded"}


def test_sigterm_rolls_back_a_one_shot_run_and_nothing_is_half_written(tmp_path: Path,
                                                                      panel: tuple[object, object]) -> None:
    shop, config, day = yesterdays_shop(tmp_path, panel)
    run = paused_run(config, day, 30)
    run.signal(signal.SIGTERM)
    code, _ = run.finish(timeout=15)
    assert code == 1 and "stopped by SIGTERM" in run.stderr
    assert [r["status"] for r in shop.runs()] == ["aborted"]
    assert shop.scenario.query("SELECT count(*) AS n FROM results") == [{"n": 0}]
    rerun = Recon(config, "run", "--date", day, "--channel", "ep", env=ENV)
    assert rerun.finish()[0] == 0, rerun.stderr
    assert [r["status"] for r in shop.runs()] == ["aborted", "succeeded"]


def test_cron_and_the_daemon_started_together_run_each_date_once(tmp_path: Path,
                                                                  panel: tuple[object, object]) -> None:
    first_day = TODAY - timedelta(days=3)
    # Both channels' nightly runs just after midnight: all three dates are due whatever the time of day the
    # test runs (with the default times, yesterday's csv date is not due before 11:00 in Shanghai).
    nightly = 'nightly = { ep = "1 0 * * *", pay = "1 0 * * *" }\n'
    shop = shop_with(tmp_path, *panel, schedule=f"start_date = {first_day}\n{nightly}")
    for i in range(3):
        shop.paid_order(first_day + timedelta(days=i))
    config = shop.scenario.folder / "recon.toml"
    daemon = Recon(config, "schedule", env=ENV)
    cron = Recon(config, "schedule", "--once", "--json", env=ENV)
    cron_code, cron_out = cron.finish(timeout=60)
    assert cron_code in (0, 3, 75), cron.stderr
    if cron_code == 75:
        assert "locked by PID" in cron.stderr or json.loads(cron_out)["busy"]
    # The daemon's boot catch-up either ran what cron left, or found the store busy and waits.
    daemon.wait_for(r'locked by PID.*"job": "retry"|"job": "retry".*"ran"', timeout=60)
    jobs = Recon(config, "jobs", "--json", env=ENV)
    code, out = jobs.finish(timeout=30)
    daemon.signal(signal.SIGTERM)
    assert daemon.finish()[0] == 0
    assert code == 0 and "run" not in {o["action"] for o in json.loads(out)["owed"]}
    per_date = Counter((r["business_date"], c) for r in shop.runs() for c in r["channels"])
    # ep: the three complete dates once each; pay (nobody imported its statement): one attempt per
    # date, the next one waits for the backoff whoever came second.
    assert per_date == {(first_day + timedelta(days=i), ch): 1 for i in range(3) for ch in ("ep", "pay")}


def test_a_second_daemon_is_refused_naming_the_first(tmp_path: Path, panel: tuple[object, object]) -> None:
    shop = shop_with(tmp_path, *panel, schedule=f"start_date = {TODAY}\n")
    config = shop.scenario.folder / "recon.toml"
    first = Recon(config, "schedule", env=ENV)
    try:
        first.wait_for(r'"job": "retry".*"ran": 0')
        second = Recon(config, "schedule", env=ENV)
        code, _ = second.finish()
        assert code == 75
        assert f"PID {first.proc.pid}" in second.stderr and "started 20" in second.stderr
        jobs = Recon(config, "jobs", "--json", env=ENV)
        code, out = jobs.finish()
        status = json.loads(out)
        assert code == 0 and status["daemon"] == {"running": True, "pid": first.proc.pid,
                                                  "started_at": status["daemon"]["started_at"]}
        assert [j["id"] for j in status["jobs"]] == ["nightly:pay", "nightly:ep", "retry", "sweep"]
    finally:
        first.signal(signal.SIGTERM)
        first.finish()


def test_a_killed_run_leaves_no_lock_and_is_recorded_aborted(tmp_path: Path, panel: tuple[object, object]) -> None:
    shop, config, day = yesterdays_shop(tmp_path, panel)
    killed = paused_run(config, day, 60)
    killed.signal(signal.SIGKILL)
    killed.finish()
    after = Recon(config, "--verbose", "run", "--date", day, "--channel", "ep", env=ENV)
    code, _ = after.finish()
    assert code == 0, after.stderr
    assert f"taking over a lock left by PID {killed.proc.pid}" in after.stderr
    runs = shop.runs()
    assert [(r["status"], r["pid"]) for r in runs][0] == ("aborted", killed.proc.pid)
    assert runs[1]["status"] == "succeeded"


def test_readers_keep_working_while_a_run_holds_the_store(tmp_path: Path, panel: tuple[object, object]) -> None:
    shop, config, day = yesterdays_shop(tmp_path, panel)
    shop.paid_order(date.fromisoformat(day), "9.00", shop_knows=False)  # a lost payment: one open exception
    assert Recon(config, "run", "--date", day, "--channel", "ep", env=ENV).finish()[0] == 3
    holder = paused_run(config, day, 30)
    try:
        started = time.monotonic()
        reader = Recon(config, "exceptions", "list", "--json", env=ENV)
        code, out = reader.finish(timeout=20)
        assert code == 0, reader.stderr
        assert time.monotonic() - started < 10
        assert [e["code"] for e in json.loads(out)] == ["missing_callback"]
        assert "snapshot of the last finished run" in reader.stderr
        jobs = Recon(config, "jobs", "--json", env=ENV)
        assert jobs.finish(timeout=20)[0] == 0
    finally:
        holder.signal(signal.SIGKILL)
        holder.finish()


def test_progress_logs_are_json_lines_when_asked(tmp_path: Path, panel: tuple[object, object]) -> None:
    first_day = TODAY - timedelta(days=2)
    shop = shop_with(tmp_path, *panel, schedule=f"start_date = {first_day}\n")
    once = Recon(shop.scenario.folder / "recon.toml", "schedule", "--once", env=ENV)
    code, out = once.finish(timeout=60)
    assert code in (0, 3), once.stderr
    entries = [json.loads(line) for line in once.lines]  # every line is one JSON object
    assert all({"ts", "level", "logger", "msg"} <= set(e) for e in entries)
    assert any(e.get("business_date") == str(first_day) for e in entries)
    assert datetime.fromisoformat(str(entries[0]["ts"])).utcoffset() == timedelta(0)
    assert f"ep {first_day}: run #" in out
