"""One writer at a time, as a user sees it (DESIGN §7): real ``recon run`` processes on a real store.

The shop is a dujiaoka database on the live MariaDB; a test session holding ``LOCK TABLES … WRITE`` on
its tables makes a run wait while it reads the shop — mid-way, holding the store lock — for as long as
the test needs, like a slow shop database would.

* Two runs started together: one runs, the other exits 75 at once naming the holder's PID and start time.
* A run killed -9 mid-way leaves a stale lock: the next run takes over, succeeds, and the killed run is
  recorded ``aborted`` in the ``runs`` table.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.dujiaoka_db import ShopDb as DjDb
from tests.reliability.history import Ledger, assert_ledger_consistent
from tests.repair_world import DAY, World
from tests.shopdb import ShopDb, mariadb_dujiaoka  # noqa: F401 (fixture)

LOCKED = 75
RUN = ("run", "--date", DAY, "--no-fetch", "--json")
# An instant as ISO 8601 with its zone (the lock holder's start time in the refusal).
INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})")


@pytest.fixture
def world(tmp_path: Path, mariadb_dujiaoka: ShopDb) -> World:  # noqa: F811
    w = World(tmp_path, DjDb("mysql", mariadb_dujiaoka.connect, mariadb_dujiaoka.name),
              f'kind = "dujiaoka"\ndsn = "{mariadb_dujiaoka.dsn}"')
    imported = w.cli("import", "--channel", "pay", str(w.statement))
    assert imported.exit_code == 0, imported.output
    return w


@contextmanager
def shop_held(world: World) -> Iterator[None]:
    """The shop's tables write-locked by another session: a run reading them waits until the block ends."""
    con = world.db.connect()
    try:
        con.cursor().execute("LOCK TABLES orders WRITE, goods WRITE, pays WRITE, carmis WRITE")
        yield
        con.cursor().execute("UNLOCK TABLES")
    finally:
        con.close()


def wait_reading_the_shop(world: World, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """Until ``proc``'s run waits on the held shop tables (it holds the store lock by then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        waiting = world.db.run("SELECT count(*) FROM information_schema.PROCESSLIST WHERE DB = ? AND STATE LIKE ?",
                               (world.db.name, "Waiting for table%"))
        if int(waiting[0][0]):
            return
        time.sleep(0.05)
    raise AssertionError("the run never reached the shop")


@contextmanager
def reaped(procs: list[subprocess.Popen[str]]) -> Iterator[list[subprocess.Popen[str]]]:
    """The processes, killed and waited for if the test ends before they do."""
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=30)


def first_to_exit(procs: list[subprocess.Popen[str]], timeout: float = 60) -> subprocess.Popen[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                return proc
        time.sleep(0.02)
    raise AssertionError("neither run ended")


def runs(world: World) -> list[dict[str, object]]:
    return world.store("SELECT run_id, pid, status, started_at, finished_at, error FROM runs ORDER BY run_id")


def test_two_runs_started_together_one_runs_and_the_other_exits_75_naming_the_holder(world: World) -> None:
    asked = datetime.now(UTC).replace(microsecond=0)
    with reaped([]) as procs:
        with shop_held(world):
            procs += [world.process(*RUN), world.process(*RUN)]
            refused = first_to_exit(procs)
            holder = procs[1] if refused is procs[0] else procs[0]
            out, err = refused.communicate(timeout=10)
            assert refused.returncode == LOCKED, (refused.returncode, out, err)
            wait_reading_the_shop(world, holder)  # the holder is mid-way, not finished
        held_out, held_err = holder.communicate(timeout=120)
    assert holder.returncode == 3, (held_out, held_err)  # done; DJ-BIG, DJ-DIFF, … need a person

    assert out == ""  # the refused run printed no summary: it did nothing
    assert re.search(rf"\bPID {holder.pid}\b", err), err
    stamps = INSTANT.findall(err)
    assert len(stamps) == 1, err
    started = datetime.fromisoformat(stamps[0].replace("Z", "+00:00"))
    assert asked - timedelta(seconds=1) <= started <= datetime.now(UTC), (started, err)

    (only,) = runs(world)  # the refused run left no trace in the store
    assert (only["pid"], only["status"]) == (holder.pid, "succeeded"), only
    assert abs(only["started_at"] - started) < timedelta(seconds=5), (only, started)  # type: ignore[operator]


def test_a_run_killed_mid_way_leaves_a_stale_lock_the_next_run_recovers_and_records_aborted(world: World) -> None:
    with reaped([]) as procs, shop_held(world):
        killed = world.process(*RUN)
        procs.append(killed)
        wait_reading_the_shop(world, killed)
        killed.kill()
        killed.communicate(timeout=10)
    assert killed.returncode == -9

    rc, out, err = world.run_process(*RUN)
    assert rc == 3, (rc, out, err)
    first, second = runs(world)
    assert (first["pid"], first["status"]) == (killed.pid, "aborted"), first
    assert first["finished_at"] is not None and first["error"], first
    assert second["status"] == "succeeded" and second["pid"] != killed.pid, second
    # the killed run's work was rolled back whole: its run id has no results and opened nothing
    assert world.store("SELECT count(*) AS n FROM results WHERE run_id = ?", [first["run_id"]]) == [{"n": 0}]
    ledger = Ledger.read(world.folder / "recon.duckdb")
    assert ledger.exceptions and {e["first_seen_run"] for e in ledger.exceptions} == {second["run_id"]}
    assert_ledger_consistent(ledger)
    # and the lock is free again: another run goes through
    assert world.run_process(*RUN)[0] == 3


def test_a_run_killed_during_its_repairs_is_recorded_aborted(world: World) -> None:
    rc, out, err = world.run_process("run", "--date", DAY, "--no-fetch", "--apply", crash_at="after_intent:2")
    assert rc == -9, (rc, out, err)
    rc, out, err = world.run_process(*RUN)
    assert rc == 3, (rc, out, err)
    assert [r["status"] for r in runs(world)] == ["aborted", "succeeded"]
