"""``[schedule]`` of recon.toml: when the daemon (or ``recon schedule --once`` from cron) reconciles.

Kept apart from recon.config so that module stays about shops, channels and reports.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

# When a channel's statement of day D is out, as a cron expression in the channel's own zone, fired
# on D+1. Alipay publishes the bill of D from about 09:00 the next day, WeChat Pay from about 10:00
# (their docs; earlier calls answer "not ready"). Epay and the chain are queried live, but an order
# paid at 23:59 may be booked after midnight: wait for the grace window. Stripe's balance
# transactions settle within hours; PayPal's transaction search lags up to three hours. An inbox
# channel (csv) waits for a person or a mail rule to drop the file in the morning.
DEFAULT_NIGHTLY: dict[str, str] = {
    "alipay": "30 9 * * *",
    "wechatpay": "30 10 * * *",
    "epay": "30 1 * * *",
    "usdt_trc20": "30 1 * * *",
    "stripe": "0 6 * * *",
    "paypal": "0 4 * * *",
    "csv": "0 11 * * *",
}


def parse_cron(expression: str) -> Any:
    """A five-field crontab expression as an APScheduler trigger (zone given later); ValueError if bad."""
    from apscheduler.triggers.cron import CronTrigger

    if len(expression.split()) != 5:
        raise ValueError(f"{expression!r} is not a crontab expression (five fields: minute hour day month weekday)")
    return CronTrigger.from_crontab(expression, timezone="UTC")


class ScheduleConfig(BaseModel):
    """Nightly per channel, an intraday sweep of pending orders, retries of bills not yet out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # channel id → crontab expression in that channel's zone; channels not named use DEFAULT_NIGHTLY.
    nightly: dict[str, str] = {}
    # After downtime, missed business dates this many days back (yesterday included) are reconciled.
    catch_up_days: int = Field(default=7, ge=1, le=92)
    # Never reconcile a date before this one (the day recon started keeping these books).
    start_date: date | None = None
    # A bill not out at the nightly time is asked for again after retry_first_minutes, doubling up
    # to retry_max_minutes, until retry_deadline_hours after the nightly time; then an alert.
    retry_first_minutes: int = Field(default=15, ge=1, le=1440)
    retry_max_minutes: int = Field(default=120, ge=1, le=1440)
    retry_deadline_hours: int = Field(default=14, ge=1, le=168)
    # The intraday sweep: shop orders still pending sweep_after_minutes after creation are queried at
    # their channel; each order is asked again with a doubling gap, for sweep_window_hours.
    sweep_interval_seconds: int = Field(default=60, ge=1, le=3600)
    sweep_after_minutes: int = Field(default=5, ge=0, le=1440)
    sweep_window_hours: int = Field(default=24, ge=1, le=168)
    sweep_max_orders: int = Field(default=200, ge=1, le=10000)
    # A job that could not start on time (the machine slept, a long run held the store) still runs
    # this late; later than that it waits for its next time (catch-up decides what is missing anyway).
    misfire_grace_seconds: int = Field(default=3600, ge=1, le=86400)

    @field_validator("nightly")
    @classmethod
    def _crons(cls, value: dict[str, str]) -> dict[str, str]:
        for channel, expression in value.items():
            try:
                parse_cron(expression)
            except ValueError as exc:
                raise ValueError(f"{channel}: {exc}") from None
        return value
