"""Report renderers. A new format is one module and one line in RENDERERS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from reports import html, xlsx
from reports.model import ReportData, load_report

# format → renderer(data, out_dir, lang) -> written path
RENDERERS: dict[str, Callable[[ReportData, Path, str], Path]] = {
    "xlsx": xlsx.render,
    "html": html.render,
}

__all__ = ["RENDERERS", "ReportData", "load_report"]
