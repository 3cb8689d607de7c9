"""Read ahead: the next item of a slow producer made on a thread while the caller works on this one."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
_END = object()


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """The items of ``items``, in order, the next one produced on a worker thread meanwhile.

    For producers and consumers that let go of the GIL (polars reading a file, DuckDB storing a frame):
    on two cores they then run side by side. Only the worker advances ``items``, one step at a time, so a
    generator never runs on two threads at once; at most one item waits beyond the one handed out. An
    error raised by ``items`` is raised here, at the place of the item it stopped.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="read-ahead") as worker:
        coming = worker.submit(next, items, _END)
        while True:
            item = coming.result()
            if item is _END:
                return
            coming = worker.submit(next, items, _END)
            yield item  # type: ignore[misc]
