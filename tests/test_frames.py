"""Column helpers of the import and the shop load: repeated keys, wall-clock times as instants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from recon.frames import repeated, utc_from_wall

KEYS = st.lists(st.one_of(st.none(), st.sampled_from(["T1", "T2", "t1", "T3", "", "订单1"]), st.text(max_size=6)),
                max_size=40)


@given(KEYS)
def test_repeated_marks_exactly_the_keys_that_occur_twice(keys: list[str | None]) -> None:
    series = pl.Series("natural_key", keys, dtype=pl.String)
    assert repeated(series).to_list() == series.is_duplicated().to_list()


def test_no_key_repeats_in_a_file_of_distinct_keys() -> None:
    series = pl.Series("natural_key", [f"2026112022001{i:015d}" for i in range(10_000)])
    assert not repeated(series).any()
    assert repeated(series).len() == 10_000


ZONES = ["Asia/Shanghai", "America/New_York", "Europe/London", "Australia/Lord_Howe", "UTC", "Asia/Kolkata"]


@given(st.sampled_from(ZONES),
       st.lists(st.datetimes(min_value=datetime(1985, 1, 1), max_value=datetime(2040, 1, 1)), min_size=1, max_size=30),
       st.integers(min_value=0, max_value=3))
def test_wall_clock_times_become_the_instants_the_zone_rules_give(zone: str, walls: list[datetime],
                                                                   spread_days: int) -> None:
    """Fixed offset or not, gap or repeated hour: the same instants as the zone's rules looked up one by one."""
    base = walls[0]
    times = [base + timedelta(minutes=17 * i, days=spread_days * (i % 2)) for i in range(len(walls))] + walls[:1]
    frame = pl.DataFrame({"wall": times}, schema={"wall": pl.Datetime("us")})
    got = frame.select(utc_from_wall(frame, "wall", zone))["wall"].to_list()
    expected = frame.select(pl.col("wall").dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null")
                            .dt.convert_time_zone("UTC"))["wall"].to_list()
    assert got == expected


def test_a_day_in_china_is_eight_hours_ahead_and_a_skipped_hour_elsewhere_is_null() -> None:
    shanghai = pl.DataFrame({"wall": [datetime(2026, 11, 20, 0, 0), datetime(2026, 11, 20, 23, 59, 59)]})
    assert shanghai.select(utc_from_wall(shanghai, "wall", "Asia/Shanghai"))["wall"].to_list() == [
        datetime(2026, 11, 19, 16, 0, tzinfo=UTC), datetime(2026, 11, 20, 15, 59, 59, tzinfo=UTC)]
    spring = pl.DataFrame({"wall": [datetime(2026, 3, 8, 1, 30), datetime(2026, 3, 8, 2, 30),
                                    datetime(2026, 3, 8, 3, 30)]})
    assert spring.select(utc_from_wall(spring, "wall", "America/New_York"))["wall"].to_list() == [
        datetime(2026, 3, 8, 6, 30, tzinfo=UTC), None, datetime(2026, 3, 8, 7, 30, tzinfo=UTC)]
