"""The errors recon raises, each saying whether trying again can help.

    ReconError                      base; ``retryable`` and ``exit_code`` on every class
    ├── ConfigError                 bad recon.toml value (names the key path)          exit 2
    ├── UsageError                  bad command-line use                                exit 2
    ├── InputError                  a statement file we will not import (file, line)   exit 1
    ├── ShopError                   the shop database could not be read as configured  exit 1
    ├── StoreError                  the DuckDB store is unusable or of a newer version exit 1
    ├── NotFound                    an id that is not in the store                     exit 1
    ├── FetchError                  a channel refused or answered nonsense             exit 1
    │   ├── SignatureError          a response whose signature or hash does not verify exit 1, never accepted
    │   ├── TransientFetchError     timeouts, 429 and 5xx after bounded retries        exit 1, retryable
    │   └── NotReady                the channel has not published that bill yet        exit 1, retryable
    ├── LockBusy                    another writer holds the store (PID, start time)   exit 75, retryable
    └── Interrupted                 SIGTERM/SIGINT: the step in progress rolled back   exit 1, retryable
"""

from __future__ import annotations

from pathlib import Path


class ReconError(Exception):
    """Base of every error recon reports to a user."""

    retryable: bool = False
    exit_code: int = 1


class ConfigError(ReconError):
    """A configuration value is missing or wrong; the message names its key path."""

    exit_code = 2

    def __init__(self, key: str, problem: str, source: Path | str | None = None) -> None:
        self.key = key
        self.problem = problem
        self.source = str(source) if source else None
        where = f"{self.source}: " if self.source else ""
        super().__init__(f"{where}{key}: {problem}")


class UsageError(ReconError):
    """The command line asks for something that cannot be done."""

    exit_code = 2


class InputError(ReconError):
    """A statement file is rejected; nothing of it was imported."""

    def __init__(self, file: Path | str, problem: str, line: int | None = None) -> None:
        self.file = str(file)
        self.line = line
        self.problem = problem
        at = f"{self.file}:{line}" if line is not None else self.file
        super().__init__(f"{at}: {problem}")


class ShopError(ReconError):
    """The shop's orders could not be read."""


class StoreError(ReconError):
    """The store cannot be used."""


class NotFound(ReconError):
    """The thing asked for is not in the store."""


class FetchError(ReconError):
    """A channel's API refused the request or answered something we cannot use."""

    def __init__(self, channel: str, problem: str) -> None:
        self.channel = channel
        super().__init__(f"channel {channel}: {problem}")


class SignatureError(FetchError):
    """A response's signature (or a bill's published hash) does not verify: nothing of it is used."""


class TransientFetchError(FetchError):
    """The channel did not answer usefully after bounded retries; a later attempt may succeed."""

    retryable = True


class NotReady(FetchError):
    """The channel has not published the requested bill yet (e.g. WeChat STATEMENT_CREATING)."""

    retryable = True


class LockBusy(ReconError):
    """Another process is writing to the store; try again when it has finished."""

    retryable = True
    exit_code = 75


class Interrupted(ReconError):
    """The process was asked to stop (SIGTERM, SIGINT); the step in progress was rolled back."""

    retryable = True

    def __init__(self, signal_name: str) -> None:
        self.signal_name = signal_name
        super().__init__(f"stopped by {signal_name}; the step in progress was rolled back, nothing half-written")
