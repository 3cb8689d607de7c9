"""The repeated-key test the import and the shop load use to find a file's or a batch's repeated keys."""

from __future__ import annotations

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from recon.frames import repeated

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
