"""When each channel's business date is due: its nightly trigger, fire times and retry backoff.

Cron expressions are read in the channel's own zone (Alipay and WeChat publish by Beijing time), and
the business date a nightly fire reconciles is the day before the fire, in that zone. All instants
handled here are aware; ``now`` is always passed in, so tests drive the calendar with any clock.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from recon.config import ChannelConfig, Config
from recon.schedule_config import DEFAULT_NIGHTLY

# A weekly or monthly expression fires at most this many days after the date it reconciles.
LONGEST_WAIT_DAYS = 35


def nightly_expression(config: Config, channel: ChannelConfig) -> str:
    return config.schedule.nightly.get(channel.id) or DEFAULT_NIGHTLY[channel.kind]


def nightly_trigger(config: Config, channel: ChannelConfig) -> CronTrigger:
    return CronTrigger.from_crontab(nightly_expression(config, channel), timezone=ZoneInfo(channel.zone))


def fire_time_for(trigger: CronTrigger, day: date) -> datetime:
    """The nightly fire that reconciles ``day``: the first fire at or after the end of ``day``."""
    zone = trigger.timezone
    start = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    fire = trigger.get_next_fire_time(None, start)
    assert fire is not None, "a crontab trigger always fires again"
    return fire


def latest_due_date(trigger: CronTrigger, now: datetime) -> date | None:
    """The newest business date whose nightly fire time has passed at ``now``."""
    day = now.astimezone(trigger.timezone).date() - timedelta(days=1)
    for _ in range(LONGEST_WAIT_DAYS):
        if fire_time_for(trigger, day) <= now:
            return day
        day -= timedelta(days=1)
    return None


def candidate_dates(config: Config, trigger: CronTrigger, now: datetime) -> list[date]:
    """Business dates the scheduler owes a run at ``now``, oldest first, within the catch-up horizon."""
    latest = latest_due_date(trigger, now)
    if latest is None:
        return []
    earliest = latest - timedelta(days=config.schedule.catch_up_days - 1)
    if config.schedule.start_date is not None:
        earliest = max(earliest, config.schedule.start_date)
    return [earliest + timedelta(days=i) for i in range((latest - earliest).days + 1)]


def retry_delay(config: Config, attempts: int) -> timedelta:
    """Wait after the ``attempts``-th try of a bill not yet out: doubling, capped."""
    minutes = config.schedule.retry_first_minutes * 2 ** max(attempts - 1, 0)
    return timedelta(minutes=min(minutes, config.schedule.retry_max_minutes))


def retry_deadline(config: Config, trigger: CronTrigger, day: date) -> datetime:
    return fire_time_for(trigger, day) + timedelta(hours=config.schedule.retry_deadline_hours)
