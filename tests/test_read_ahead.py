"""read_ahead: the export shop's next slice read while the run stores this one."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from recon.ahead import read_ahead
from recon.errors import ShopError


def test_items_come_in_order_made_on_another_thread_at_most_one_ahead() -> None:
    made: list[int] = []
    threads: set[int] = set()

    def producer() -> Iterator[int]:
        for i in range(5):
            threads.add(threading.get_ident())
            made.append(i)
            yield i

    seen = []
    for item in read_ahead(producer()):
        assert len(made) <= item + 2  # this one and the next, never two ahead
        seen.append(item)
    assert seen == [0, 1, 2, 3, 4]
    assert threads and threading.get_ident() not in threads


def test_an_error_of_the_producer_reaches_the_caller_after_the_items_before_it() -> None:
    def producer() -> Iterator[int]:
        yield 1
        raise ShopError("shop export orders.csv: line 3 has a bad amount")

    seen = []
    with pytest.raises(ShopError, match="line 3"):
        for item in read_ahead(producer()):
            seen.append(item)
    assert seen == [1]


def test_a_caller_that_stops_early_stops_the_producer() -> None:
    made: list[int] = []

    def producer() -> Iterator[int]:
        for i in range(100):
            made.append(i)
            yield i

    for item in read_ahead(producer()):
        if item == 2:
            break
    assert made == [0, 1, 2, 3]
