"""Progress for long fetches, imports and catch-ups: a rich bar on a terminal, log lines otherwise."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

T = TypeVar("T")
log = logging.getLogger("recon.progress")


def interactive() -> bool:
    """A person is watching: stderr is a terminal (cron, systemd and pipes are not)."""
    return sys.stderr.isatty()


def steps(items: Iterable[T], label: str, total: int | None = None) -> Iterator[T]:
    """Yield ``items``; show a bar when a person watches, else log each step (structured when JSON)."""
    seq = list(items)
    count = total if total is not None else len(seq)
    if interactive() and count > 1:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
            task = bar.add_task(label, total=count)
            for item in seq:
                yield item
                bar.advance(task)
        return
    for number, item in enumerate(seq, 1):
        if count > 1:
            log.info("%s: %d of %d", label, number, count, extra={"step": label, "done": number - 1, "total": count})
        yield item
