"""``recon schedule``: the APScheduler 3 daemon that keeps the books.

Jobs (stable ids, re-added with ``replace_existing`` at every boot, kept in memory: what is owed is
decided by the store's ``runs`` table, never by the scheduler's memory, so a restart neither drops
nor repeats a date):

* ``nightly:<channel>``: cron in the channel's zone, after its bill is out; catches up that channel.
* ``retry``: every few minutes, and once at boot; catches up every channel (missed nights after
  downtime, bills that were not out yet, with backoff and a deadline).
* ``sweep``: every ``sweep_interval_seconds``; asks about unpaid orders and repairs lost payments.

One worker thread: every job needs the store's single writer anyway. ``coalesce`` folds a backlog
of fires into one, ``max_instances=1`` keeps a slow job from overlapping itself, and a fire later
than ``misfire_grace_seconds`` is skipped (the next catch-up covers it). SIGTERM/SIGINT: no new job
starts, the current step (one reconciliation, one order of a sweep) finishes, then the process exits.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger

from jobs.calendar import nightly_expression, nightly_trigger
from jobs.catch_up import catch_up
from jobs.sweep import sweep
from recon.config import Config
from recon.errors import LockBusy, ReconError
from recon.lock import daemon_lock
from recon.repair.run import NO_ORDER_QUERY

log = logging.getLogger("recon.jobs")

# How often the retry job looks for owed dates (each look takes the store lock for a moment).
RETRY_CHECK = timedelta(minutes=5)

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class JobSpec:
    id: str
    kind: str  # nightly | retry | sweep
    channel: str | None
    trigger: Any  # an APScheduler trigger
    description: str


def job_specs(config: Config) -> list[JobSpec]:
    """The daemon's jobs for ``config``, in a stable order (also what ``recon jobs`` lists)."""
    specs = [JobSpec(f"nightly:{ch.id}", "nightly", ch.id, nightly_trigger(config, ch),
                     f"cron {nightly_expression(config, ch)} ({ch.zone})") for ch in config.channels]
    check = min(RETRY_CHECK, timedelta(minutes=config.schedule.retry_first_minutes))
    specs.append(JobSpec("retry", "retry", None, IntervalTrigger(seconds=int(check.total_seconds()), timezone=UTC),
                         f"every {int(check.total_seconds() // 60)} min, and at start"))
    if any(ch.fetches and ch.kind not in NO_ORDER_QUERY for ch in config.channels):
        seconds = config.schedule.sweep_interval_seconds
        specs.append(JobSpec("sweep", "sweep", None, IntervalTrigger(seconds=seconds, timezone=UTC),
                             f"every {seconds} s"))
    return specs


class Daemon:
    """The scheduler, its jobs and its graceful stop; ``clock`` is injectable for tests."""

    def __init__(self, config: Config, clock: Clock = lambda: datetime.now(UTC)) -> None:
        self.config = config
        self.clock = clock
        self.stop = threading.Event()
        self.executor = ThreadPoolExecutor(max_workers=1)
        grace = config.schedule.misfire_grace_seconds
        self.scheduler = BlockingScheduler(
            timezone=UTC, executors={"default": self.executor},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": grace},
        )

    def add_jobs(self) -> None:
        """(Re-)register every job under its stable id; the boot catch-up runs first."""
        now = self.clock()
        for spec in job_specs(self.config):
            if self.scheduler.get_job(spec.id) is not None:  # not yet started: replace_existing cannot see it
                self.scheduler.remove_job(spec.id)
            first = now if spec.kind in ("retry", "sweep") else None
            kwargs: dict[str, Any] = {"next_run_time": first} if first else {}
            self.scheduler.add_job(self._job, spec.trigger, args=[spec], id=spec.id, name=spec.description,
                                   replace_existing=True, **kwargs)

    def _job(self, spec: JobSpec) -> None:
        """One fire; never raises (a failing job is logged and tried at its next time)."""
        if self.stop.is_set():
            return
        try:
            if spec.kind == "sweep":
                sweep(self.config, self.clock(), apply=self.config.repair.auto_repair, stop=self.stop,
                      command="recon schedule: sweep")
            else:
                channels = [spec.channel] if spec.channel else None
                catch_up(self.config, self.clock(), channels, self.stop, job_id=spec.id)
        except LockBusy as exc:
            log.info("%s: %s; trying again at its next time", spec.id, exc, extra={"job": spec.id})
        except ReconError as exc:
            log.error("%s: %s", spec.id, exc, extra={"job": spec.id})
        except Exception:  # noqa: BLE001 (the daemon outlives a bug in one job; the trace is logged)
            log.exception("%s: unexpected error", spec.id, extra={"job": spec.id})

    def request_stop(self, signum: int, _frame: FrameType | None = None) -> None:
        name = signal.Signals(signum).name
        log.info("%s: finishing the current step, then stopping", name, extra={"signal": name})
        self.stop.set()
        self.scheduler.shutdown(wait=False)

    def run(self) -> None:
        """Block until SIGTERM/SIGINT; one daemon per store (a second exits 75 naming the first)."""
        with daemon_lock(self.config.store_path, "recon schedule"):
            for s in (signal.SIGTERM, signal.SIGINT):
                signal.signal(s, self.request_stop)
            self.add_jobs()
            for job in self.scheduler.get_jobs():
                log.info("job %s: %s", job.id, job.name, extra={"job": job.id})
            self.scheduler.start()  # returns after shutdown()
            self.executor.shutdown(wait=True)  # the step in progress finishes
        log.info("scheduler stopped")
