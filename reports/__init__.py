"""Report renderers. A new format is one module and one line in RENDERERS.

A renderer is ``render(data: ReportData, out_dir: Path, lang: str) -> list[Path]`` and writes each
file atomically (reports.atomic).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from recon.registry import LazyRegistry
from reports.model import ReportData, load_report, needs_results

Renderer = Callable[[ReportData, Path, str], list[Path]]

# format → renderer
RENDERERS: Mapping[str, Renderer] = LazyRegistry({
    "xlsx": "reports.xlsx:render",
    "html": "reports.html:render",
    "csv": "reports.exports:render_csv",
    "parquet": "reports.exports:render_parquet",
})

__all__ = ["RENDERERS", "ReportData", "Renderer", "load_report", "needs_results"]
