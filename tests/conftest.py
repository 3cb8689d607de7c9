from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run, so CI is reproducible; RECON_FUZZ_RANDOM=1 explores.
settings.register_profile("reproducible", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("explore" if os.environ.get("RECON_FUZZ_RANDOM") else "reproducible")

from tests.scenario import Scenario


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts without RECON_CONFIG and restores os.environ afterwards."""
    saved = dict(os.environ)
    monkeypatch.delenv("RECON_CONFIG", raising=False)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def scenario(tmp_path: Path) -> Scenario:
    return Scenario(tmp_path)
