"""The same content as the workbook, as one standalone HTML page (no network, autoescaped)."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from reports.atomic import write_atomically
from reports.labels import headings
from reports.model import EXCEPTION_COLUMNS, ReportData
from recon.taxonomy import label

_ENV = Environment(loader=PackageLoader("reports", "templates"), autoescape=select_autoescape(default=True),
                   trim_blocks=True, lstrip_blocks=True)


def render(data: ReportData, out_dir: Path, lang: str) -> list[Path]:
    """Write ``recon_<date>_run<id>.html`` atomically; return its path."""
    target = out_dir / f"recon_{data.business_date.isoformat()}_run{data.run_id}.html"
    page = _ENV.get_template("report.html.j2").render(
        data=data, h=headings(lang), columns=EXCEPTION_COLUMNS, label=lambda c: label(c, lang),
        lang="en" if lang == "en" else "zh-CN",
    )
    return [write_atomically(target, lambda tmp: tmp.write_text(page, encoding="utf-8"))]
