"""The runs page: this morning's run first, every run with its counts, match rate and report files."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from recon.ledger_views import rows_of
from recon.taxonomy import CODES, EXCEPTION_CODES, UNPAID
from recon.web.auth import requires
from recon.web.pages.params import int_param, page_link
from recon.web.render import page
from recon.web.store_access import Source, StoreAccess
from reports.svg import TrendPoint, trend_chart

RUNS_PER_PAGE = 20
TREND_RUNS = 30
# recon_<date>_run<id>.xlsx|html and recon_<date>_run<id>_<part>.csv|parquet (reports/*.py)
REPORT_FILE = re.compile(r"^recon_(\d{4}-\d{2}-\d{2})_run(\d+)(?:_([a-z]+))?\.(xlsx|html|csv|parquet)$")
CODE_ORDER = [c.code for c in CODES] + [UNPAID.code]

_RUNS_SQL = """
SELECT run_id, business_date, channels, status, started_at, finished_at, coalesce(incomplete_channels, []) AS
       incomplete_channels, error
FROM runs WHERE coalesce(kind, 'reconcile') = 'reconcile'
ORDER BY run_id DESC LIMIT $limit OFFSET $offset
"""
# The workbook's match rate (reports.model): matched share of the results, unpaid orders left out.
_RATES_SQL = """
SELECT r.run_id, r.business_date, coalesce(sum(x.results) FILTER (WHERE x.code = 'matched'), 0) AS matched,
       coalesce(sum(x.results) FILTER (WHERE x.code <> 'unpaid'), 0) AS total
FROM (SELECT run_id, business_date FROM runs WHERE status = 'succeeded' AND coalesce(kind, 'reconcile') = 'reconcile'
      ORDER BY run_id DESC LIMIT $n) r
LEFT JOIN run_counts x USING (run_id)
GROUP BY ALL ORDER BY r.run_id
"""


@dataclass(frozen=True)
class ReportFile:
    name: str
    label: str

    @property
    def href(self) -> str:
        return "/reports/" + quote(self.name)


@dataclass
class RunRow:
    run: dict[str, Any]
    counts: list[tuple[str, int]] = field(default_factory=list)
    files: list[ReportFile] = field(default_factory=list)

    @property
    def match_rate(self) -> Decimal | None:
        got = dict(self.counts)
        total = sum(n for c, n in self.counts if c != UNPAID.code)
        return rate(got.get("matched", 0), total)


@dataclass(frozen=True)
class RunsView:
    rows: list[RunRow]
    total: int
    open_now: int
    trend: list[TrendPoint]
    source: Source


def rate(matched: int, total: int) -> Decimal | None:
    return (Decimal(matched) / Decimal(total)).quantize(Decimal("0.0001")) if total else None


def report_files(folder: Path) -> dict[int, list[ReportFile]]:
    """run id → its files in the report folder, workbook first."""
    found: dict[int, list[ReportFile]] = defaultdict(list)
    try:
        names = sorted(p.name for p in folder.iterdir() if p.is_file())
    except OSError:
        return {}
    order = {"xlsx": 0, "html": 1, "csv": 2, "parquet": 3}
    for name in names:
        m = REPORT_FILE.match(name)
        if m:
            label = m[4] if m[3] is None else f"{m[4]} ({m[3]})"
            found[int(m[2])].append(ReportFile(name, label))
    for files in found.values():
        files.sort(key=lambda f: (order[f.name.rsplit(".", 1)[1]], f.name))
    return found


def _load(store: StoreAccess, folder: Path, page_no: int) -> RunsView:
    with store.reading() as (con, source):
        runs = rows_of(con.execute(_RUNS_SQL, {"limit": RUNS_PER_PAGE, "offset": (page_no - 1) * RUNS_PER_PAGE}))
        [(total,)] = con.execute("SELECT count(*) FROM runs WHERE coalesce(kind, 'reconcile') = 'reconcile'").fetchall()
        ids = [r["run_id"] for r in runs]
        counts = con.execute("SELECT run_id, code, sum(results) FROM run_counts WHERE list_contains($ids, run_id) "
                             "GROUP BY ALL", {"ids": ids}).fetchall() if ids else []
        [(open_now,)] = con.execute("SELECT count(*) FROM exceptions WHERE status = 'open'").fetchall()
        rates = con.execute(_RATES_SQL, {"n": TREND_RUNS}).fetchall()
    by_run: dict[int, dict[str, int]] = defaultdict(dict)
    for run_id, code, n in counts:
        by_run[run_id][code] = int(n)
    files = report_files(folder)
    rows = []
    for run in runs:
        got = by_run.get(run["run_id"], {})
        ordered = [(c, got[c]) for c in CODE_ORDER if c in got] + sorted((c, n) for c, n in got.items()
                                                                        if c not in CODE_ORDER)
        rows.append(RunRow(run, ordered, files.get(run["run_id"], [])))
    trend = [TrendPoint(int(r), d, rate(int(m), int(n))) for r, d, m, n in rates]
    return RunsView(rows, int(total), int(open_now), trend, source)


async def home(_request: Request) -> Response:
    return RedirectResponse("/runs", status_code=303)


@requires("view")
async def runs_page(request: Request) -> Response:
    state = request.app.state
    page_no = int_param(request, "page", 1, minimum=1)
    view = await run_in_threadpool(_load, state.store, state.reports_dir, page_no)
    request.state.source = view.source
    t = state.text
    chart: Markup = trend_chart(view.trend, t["trend_title"], t["no_trend"], t["run_word"])
    pages = max(1, -(-view.total // RUNS_PER_PAGE))
    return page(request, "runs.html.j2", title=t["runs_title"], view=view, chart=chart, page_no=page_no,
                exception_codes=EXCEPTION_CODES,
                pages=pages, link=page_link(request), latest=view.rows[0] if view.rows and page_no == 1 else None)


routes = [Route("/runs", runs_page)]
