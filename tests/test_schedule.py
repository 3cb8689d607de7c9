"""The scheduler's calendar and catch-up, driven by an injected clock: exactly one run per
(channel, business date), missed nights caught up after downtime and a restart, zones with and
without DST, late bills retried with backoff until a deadline and then one alert."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from jobs.calendar import latest_due_date, nightly_trigger
from jobs.catch_up import catch_up
from jobs.daemon import Daemon, job_specs
from recon.config import load_config
from tests.alert_servers import Answer, RecordingServer
from tests.scenario import Scenario
from tests.schedule_world import EPAY_KEY, SH, EpayShop, beijing, epay_panel

NY = ZoneInfo("America/New_York")


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EpayShop]:
    monkeypatch.setenv("EP_KEY", EPAY_KEY)
    with epay_panel() as (sandbox, panel):
        yield EpayShop(tmp_path, sandbox, panel, schedule='start_date = 2026-11-10\n')


def runs_per_date(shop: EpayShop, channel: str = "ep") -> Counter[date]:
    return Counter(r["business_date"] for r in shop.runs() if channel in r["channels"])


def test_three_missed_nights_are_caught_up_once_each_across_a_restart(shop: EpayShop) -> None:
    days = [date(2026, 11, 10) + timedelta(days=i) for i in range(4)]
    orders = {d: [shop.paid_order(d, "12.00"), shop.paid_order(d, "30.00", at="23:59:30")] for d in days}

    first = catch_up(shop.config, beijing("2026-11-11 01:45"), ["ep"], job_id="nightly:ep")
    assert [(c, d, o) for c, d, _, o in first.ran] == [("ep", days[0], "succeeded")]

    # Down from the 11th to the 14th. After the restart (a new config, a new process's view) the
    # three missed nights run, oldest first, once each.
    after_downtime = beijing("2026-11-14 09:00")
    second = catch_up(shop.config, after_downtime, ["ep"], job_id="retry")
    assert [d for _, d, _, _ in second.ran] == days[1:]
    assert all(o == "succeeded" for *_, o in second.ran)
    for again in (after_downtime, after_downtime + timedelta(hours=1)):
        assert catch_up(load_config(shop.scenario.folder / "recon.toml"), again, ["ep"]).ran == []
    assert runs_per_date(shop) == {d: 1 for d in days}
    # Each date was really reconciled: its two orders (one paid at 23:59:30) matched on that date.
    matched = shop.scenario.query("SELECT business_date, order_no FROM results WHERE channel = 'ep' AND code = 'matched'")
    assert {(r["business_date"], r["order_no"]) for r in matched} == {(d, sn) for d in days for sn in orders[d]}


def test_a_day_belongs_to_beijing_time_not_utc(shop: EpayShop) -> None:
    trigger = nightly_trigger(shop.config, shop.config.channel("ep"))  # 30 1 * * * in Asia/Shanghai
    # 01:45 in Beijing on the 21st is 17:45 UTC on the 20th: the 20th is over in Beijing and due.
    assert latest_due_date(trigger, beijing("2026-11-21 01:45")) == date(2026, 11, 20)
    assert latest_due_date(trigger, beijing("2026-11-21 01:15")) == date(2026, 11, 19)
    late = shop.paid_order(date(2026, 11, 20), "8.00", at="23:59:59")
    report = catch_up(shop.config, beijing("2026-11-21 01:45"), ["ep"])
    assert date(2026, 11, 20) in [d for _, d, _, _ in report.ran]
    row = shop.scenario.query("SELECT business_date FROM results WHERE order_no = ? AND code = 'matched'", [late])
    assert [r["business_date"] for r in row] == [date(2026, 11, 20)]


def _dst_world(tmp_path: Path, cron: str, first: date, days: int) -> Scenario:
    scenario = Scenario(tmp_path, channel_extra='zone = "America/New_York"')
    with open(tmp_path / "recon.toml", "a", encoding="utf-8") as fh:
        fh.write(f'\n[schedule]\nstart_date = {first.isoformat()}\nnightly = {{ pay = "{cron}" }}\n')
    scenario.config = load_config(tmp_path / "recon.toml")
    for i in range(days):
        day = first + timedelta(days=i)
        sn = f"NY{day:%m%d}"
        scenario.order(sn, "5.00", trade_no=f"T{sn}", created=f"{day} 10:00:00")
        scenario.import_(scenario.statement([{"txn": f"T{sn}", "order": sn, "amount": "5.00",
                                              "time": f"{day} 10:00:30"}]))
    return scenario


@pytest.mark.parametrize(("cron", "first", "clock_from"), [
    ("30 2 * * *", date(2026, 3, 7), datetime(2026, 3, 7, 12, tzinfo=NY)),    # 02:30 does not exist on 03-08
    ("30 1 * * *", date(2026, 10, 31), datetime(2026, 10, 31, 12, tzinfo=NY)),  # 01:30 happens twice on 11-01
])
def test_a_dst_zone_gets_one_run_per_date_when_clocks_jump(tmp_path: Path, cron: str, first: date,
                                                           clock_from: datetime) -> None:
    scenario = _dst_world(tmp_path, cron, first, days=2)
    ran_at: dict[date, datetime] = {}
    clock = clock_from.astimezone(UTC)
    while clock < clock_from.astimezone(UTC) + timedelta(days=2):
        for _, day, _, outcome in catch_up(scenario.config, clock, ["pay"]).ran:
            assert outcome == "succeeded" and day not in ran_at
            ran_at[day] = clock
        clock += timedelta(hours=1)
    assert sorted(ran_at) == [first, first + timedelta(days=1)]
    for day, when in ran_at.items():
        # Run on the morning after the date, never a day late, never twice.
        assert when.astimezone(NY).date() == day + timedelta(days=1), (day, when.astimezone(NY))
    runs = scenario.query("SELECT business_date, count(*) AS n FROM runs GROUP BY ALL")
    assert {r["business_date"]: r["n"] for r in runs} == {d: 1 for d in ran_at}


def test_a_late_bill_is_retried_with_backoff_then_alerted_once(tmp_path: Path) -> None:
    with RecordingServer() as hooks:
        hooks.on("/hook", Answer(200, {"ok": True}))
        scenario = Scenario(tmp_path)  # channel "pay": a statement someone must import
        with open(tmp_path / "recon.toml", "a", encoding="utf-8") as fh:
            fh.write('\n[schedule]\nstart_date = 2026-11-20\nnightly = { pay = "0 11 * * *" }\n'
                     'retry_first_minutes = 10\nretry_max_minutes = 40\nretry_deadline_hours = 3\n'
                     f'\n[[alerts.webhooks]]\nkind = "json"\nurl = "env:HOOK_URL"\n')
        import os
        os.environ["HOOK_URL"] = f"{hooks.base}/hook"
        config = load_config(tmp_path / "recon.toml")
        fire = beijing("2026-11-21 11:00")
        tried: list[datetime] = []
        clock = fire
        while clock <= fire + timedelta(hours=4):
            report = catch_up(config, clock, ["pay"])
            tried += [clock for *_, outcome in report.ran if outcome == "incomplete"]
            clock += timedelta(minutes=5)
        gaps = [int((b - a).total_seconds() // 60) for a, b in zip(tried, tried[1:], strict=False)]
        assert gaps == [10, 20, 40, 40, 40], gaps  # doubling from 10 minutes, capped at 40
        assert tried[-1] < fire + timedelta(hours=3)
        alerts = hooks.to("/hook")
        assert len(alerts) == 1
        body = alerts[0].json()
        assert body["event"] == "bill_missing" and body["channel"] == "pay" and body["business_date"] == "2026-11-20"
        assert body["attempts"] == len(tried)
        assert scenario.query("SELECT outcome FROM job_runs WHERE outcome = 'gave_up'") == [{"outcome": "gave_up"}]


def test_jobs_are_registered_under_stable_ids_and_re_adding_them_duplicates_nothing(shop: EpayShop) -> None:
    config = shop.config
    daemon = Daemon(config, clock=lambda: beijing("2026-11-14 09:00"))
    daemon.add_jobs()
    daemon.add_jobs()  # registered twice before the start
    runner = threading.Thread(target=daemon.scheduler.start, kwargs={"paused": True}, daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 10
        while not daemon.scheduler.running and time.monotonic() < deadline:
            time.sleep(0.01)
        daemon.add_jobs()  # and again while running, as a restart of the job set would
        ids = sorted(job.id for job in daemon.scheduler.get_jobs())
        assert ids == sorted(spec.id for spec in job_specs(config)) == ["nightly:ep", "nightly:pay", "retry", "sweep"]
        nightly = daemon.scheduler.get_job("nightly:ep")
        assert nightly.coalesce and nightly.max_instances == 1
        assert nightly.misfire_grace_time == config.schedule.misfire_grace_seconds
        assert nightly.next_run_time.astimezone(SH).strftime("%H:%M") == "01:30"  # Epay's default, Beijing time
    finally:
        daemon.scheduler.shutdown(wait=False)
        runner.join(10)
    assert not config.store_path.exists()  # paused: nothing ran


def test_recon_jobs_shows_each_job_its_next_fire_its_last_outcome_and_what_is_owed(shop: EpayShop) -> None:
    from typer.testing import CliRunner

    from recon_cli import app

    shop.paid_order(date(2026, 11, 10))
    catch_up(shop.config, beijing("2026-11-11 02:00"), job_id="nightly:ep")
    result = CliRunner().invoke(app, ["--config", str(shop.scenario.folder / "recon.toml"), "jobs", "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    jobs = {j["id"]: j for j in status["jobs"]}
    assert jobs["nightly:ep"]["trigger"] == "cron 30 1 * * * (Asia/Shanghai)"
    assert datetime.fromisoformat(jobs["nightly:ep"]["next_fire"]).astimezone(SH).strftime("%H:%M") == "01:30"
    assert jobs["nightly:ep"]["last"]["outcome"] == "succeeded"
    assert jobs["nightly:ep"]["last"]["business_date"] == "2026-11-10"
    assert jobs["nightly:pay"]["last"] is None  # its nightly time (11:00) had not come at 02:00
    assert jobs["sweep"]["trigger"] == "every 60 s" and jobs["sweep"]["last"] is None
    assert status["daemon"]["running"] is False
    # `recon jobs` looks at the real clock: the last catch_up_days dates up to yesterday are owed.
    yesterday = datetime.now(UTC).astimezone(SH).date() - timedelta(days=1)
    window = {str(yesterday - timedelta(days=i)) for i in range(shop.config.schedule.catch_up_days)}
    owed = {(o["channel"], o["business_date"]): o["action"] for o in status["owed"]}
    assert {d for (ch, d), action in owed.items() if ch == "ep" and action == "run"} == window
    text = CliRunner().invoke(app, ["--config", str(shop.scenario.folder / "recon.toml"), "jobs"])
    assert text.exit_code == 0 and "daemon: not running" in text.stdout and "nightly:ep" in text.stdout
