"""The benchmark harness at a small N: recon's counts equal the seeded differences and the baseline's, on the
first day and on a second day reconciled into the same store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_counts_agree_at_small_n(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench.run", "--orders", "3000", "--days", "2", "--workdir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("OK")
    assert "ratio" in done.stdout
    assert "2026-11-21: import" in done.stdout and "MISMATCH" not in done.stdout
