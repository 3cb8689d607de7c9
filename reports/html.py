"""The same content as the workbook, as one standalone HTML page (no network, autoescaped).

One file: inline CSS, inline SVG charts (reports.svg) and a few lines of inline JS that sort and
filter the tables. A Content-Security-Policy allows only that one script and that one style (by
hash) and no fetches at all, so even a slip in escaping could not run or load anything.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from recon.taxonomy import BY_CODE, CODES, UNPAID, label
from reports.atomic import write_atomically
from reports.labels import headings
from reports.model import EXCEPTION_COLUMNS, ReportData
from reports.svg import Bar, TrendPoint, bar_chart, colour_for, trend_chart

# A page with more open exceptions shows the first ones and says how many more the workbook has.
MAX_EXCEPTION_ROWS = 5_000
# Columns of EXCEPTION_COLUMNS the page leaves out (every row of this table is open).
HIDDEN_EXCEPTION_COLUMNS = ("status",)
REPAIR_COLUMNS = ("repair_id", "exception_id", "order_no", "channel_txn_id", "action", "state", "actor",
                  "reason", "created_at", "updated_at", "detail")
NUMERIC = ("id", "priority", "age_days", "repair_id", "exception_id", "count")
# Text columns that may wrap (at least ~11 characters wide); every other text column stays on one line.
WIDE = ("code", "suggested_action", "detail", "goods_title", "reason")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
CENT = Decimal("0.01")

# Words of this page only (reports.labels holds the headings shared with the workbook).
PAGE_TEXT: dict[str, dict[str, str]] = {
    "zh-CN": {
        "charts": "图表", "bars_title": "各渠道差异类型笔数", "trend_title": "近期匹配率趋势",
        "no_results": "本批次无对账结果", "no_trend": "暂无可计算的匹配率", "repairs": "补单记录",
        "no_repairs": "本批次无补单记录", "filter": "筛选", "filter_placeholder": "输入关键字筛选…",
        "all_codes": "全部差异类型", "all_channels": "全部渠道", "rows_shown": "显示 {shown} / {total} 行",
        "truncated": "仅显示前 {shown} 条；另有 {more} 条请见 Excel 报表。", "none": "无",
        "repair_id": "补单编号", "exception_id": "异常编号", "action": "操作", "state": "状态", "actor": "操作人",
        "reason": "原因", "created_at": "创建时间", "updated_at": "更新时间", "started_at": "开始时间", "priority_short": "P{p}",
        "no_exceptions": "没有待处理异常",
    },
    "en": {
        "charts": "Charts", "bars_title": "Results by code per channel", "trend_title": "Match rate, recent runs",
        "no_results": "no results in this run", "no_trend": "no match rate yet", "repairs": "Repairs",
        "no_repairs": "No repairs in this run.", "filter": "Filter", "filter_placeholder": "type to filter…",
        "all_codes": "all codes", "all_channels": "all channels", "rows_shown": "{shown} of {total} rows",
        "truncated": "Showing the first {shown}; {more} more are in the workbook.", "none": "none",
        "repair_id": "Repair", "exception_id": "Exception", "action": "Action", "state": "State", "actor": "Actor",
        "reason": "Reason", "created_at": "Created at", "updated_at": "Updated at", "started_at": "Started at", "priority_short": "P{p}",
        "no_exceptions": "No open exceptions.",
    },
}

_ENV = Environment(loader=PackageLoader("reports", "templates"), autoescape=select_autoescape(default=True),
                   trim_blocks=True, lstrip_blocks=True)


@dataclass(frozen=True)
class Cell:
    text: str
    sort: str | None   # numeric sort key for the page's JS; None for text cells
    css: str           # "num", "num neg", "text wide" (may wrap) or "text line" (one line)


@dataclass(frozen=True)
class Row:
    code: str
    channel: str
    css: str
    cells: list[Cell]


@dataclass(frozen=True)
class Table:
    id: str
    columns: list[tuple[str, str, bool]]   # (key, heading, numeric)
    rows: list[Row]
    codes: list[tuple[str, str]]           # (code, label) for the code filter; empty: no code filter
    channels: list[str]                    # for the channel filter; empty: no channel filter


def render(data: ReportData, out_dir: Path, lang: str) -> list[Path]:
    """Write ``recon_<date>_run<id>.html`` atomically; return its path."""
    target = out_dir / f"recon_{data.business_date.isoformat()}_run{data.run_id}.html"
    page = render_page(data, lang)
    return [write_atomically(target, lambda tmp: tmp.write_text(page, encoding="utf-8"))]


def render_page(data: ReportData, lang: str) -> str:
    """The whole page as one string."""
    language = "en" if lang == "en" else "zh-CN"
    h, t = headings(language), PAGE_TEXT[language]
    zone = ZoneInfo(data.zone)
    script, style = _raw("report.js.j2"), _raw("report.css.j2")
    shown = data.exceptions.head(MAX_EXCEPTION_ROWS)
    more = data.exceptions.height - shown.height
    return _ENV.get_template("report.html.j2").render(
        data=data, h=h, t=t, lang=language, zone_name=data.zone,
        started_at=_text(data.started_at, zone),
        match_rate=_percent(data.match_rate), by_priority=data.open_by_priority,
        summary=_summary_table(data, language, h),
        exceptions=_exceptions_table(data, shown, language, h, zone),
        repairs=_repairs_table(data, h, t, zone),
        total_exceptions=data.exceptions.height,
        truncated=t["truncated"].format(shown=shown.height, more=more) if more else "",
        bars=bar_chart(_bars(data, language), t["bars_title"], t["no_results"]),
        trend=trend_chart(sorted((TrendPoint(r, d, rate) for d, r, rate in data.trend_rates()), key=_run_of),
                          t["trend_title"], t["no_trend"], h["run"]),
        script=Markup(script), style=Markup(style),
        csp=f"default-src 'none'; script-src '{_hash(script)}'; style-src '{_hash(style)}'; "
            "img-src 'none'; base-uri 'none'; form-action 'none'",
    )


def _run_of(point: TrendPoint) -> int:
    return point.run_id


def _raw(name: str) -> str:
    """A template file's text as is (the page's own CSS and JS; nothing is substituted into them)."""
    loader = _ENV.loader
    assert loader is not None
    return loader.get_source(_ENV, name)[0]


def _hash(source: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode("ascii")


def _summary_table(data: ReportData, lang: str, h: dict[str, str]) -> Table:
    keys = ("channel", "code", "count", "amount", "difference")
    rows = [Row(r["code"], r["channel"], "", [
        Cell(r["channel"], None, _css("channel")), Cell(label(r["code"], lang), None, _css("code")),
        _number(r["count"]), _money(r["amount"]), _money(r["difference"]),
    ]) for r in data.counts]
    return Table("summary", [(k, h[k], k not in ("channel", "code")) for k in keys], rows,
                 _codes([r["code"] for r in data.counts], lang), list(data.channels))


def _exceptions_table(data: ReportData, shown: pl.DataFrame, lang: str, h: dict[str, str], zone: ZoneInfo) -> Table:
    columns = [c for c in EXCEPTION_COLUMNS if c not in HIDDEN_EXCEPTION_COLUMNS]
    rows = []
    for chunk in shown.iter_slices(10_000):
        for exc in chunk.iter_rows(named=True):
            cells = [_cell(c, exc[c], lang, h, zone) for c in columns]
            rows.append(Row(exc["code"], exc["channel"], f"p{exc['priority']}", cells))
    codes = sorted(set(data.exceptions["code"].to_list())) if data.exceptions.height else []
    return Table("exceptions", [(c, h[c], _is_numeric(c)) for c in columns], rows, _codes(codes, lang),
                 list(data.channels))


def _repairs_table(data: ReportData, h: dict[str, str], t: dict[str, str], zone: ZoneInfo) -> Table:
    columns = [c for c in REPAIR_COLUMNS if c in data.repairs.columns]
    rows = [Row("", "", "", [_cell(c, rep[c], "", h, zone) for c in columns])
            for rep in data.repairs.iter_rows(named=True)]
    return Table("repairs", [(c, t.get(c) or h[c], _is_numeric(c)) for c in columns], rows, [], [])


def _is_numeric(column: str) -> bool:
    return column in NUMERIC or column in ("shop_amount", "channel_amount", "difference")


def _codes(present: list[str], lang: str) -> list[tuple[str, str]]:
    """The codes present, in taxonomy order, with their labels."""
    wanted = set(present)
    return [(c.code, label(c.code, lang)) for c in (*CODES, UNPAID) if c.code in wanted]


def _css(column: str) -> str:
    return "text wide" if column in WIDE else "text line"


def _cell(column: str, value: Any, lang: str, h: dict[str, str], zone: ZoneInfo) -> Cell:
    if value is None:
        return Cell("", "" if _is_numeric(column) else None, "num" if _is_numeric(column) else _css(column))
    if column == "code":
        return Cell(label(value, lang), None, _css(column))
    if isinstance(value, bool):
        return Cell(h["yes"] if value else h["no"], None, _css(column))
    if isinstance(value, Decimal):
        return _money(value)
    if isinstance(value, int):
        return _number(value)
    return Cell(_text(value, zone), None, _css(column))


def _number(value: int) -> Cell:
    return Cell(str(value), str(value), "num neg" if value < 0 else "num")


def _money(value: Decimal | None) -> Cell:
    """Two decimals, or every significant decimal when there are more (USDT); the exact value sorts."""
    if value is None:
        return Cell("", "", "num")
    shown = value.quantize(CENT) if value == value.quantize(CENT) else value.normalize()
    return Cell(f"{shown:,f}", str(value), "num neg" if value < 0 else "num")


def _percent(rate: Decimal | None) -> str:
    return "" if rate is None else f"{(rate * 100).quantize(CENT)}%"


def _text(value: Any, zone: ZoneInfo) -> str:
    if isinstance(value, datetime):
        moment = value.astimezone(zone) if value.tzinfo is not None else value
        return moment.strftime(TIME_FORMAT)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _bars(data: ReportData, lang: str) -> list[Bar]:
    return [
        Bar(r["channel"], r["code"], label(r["code"], lang), int(r["count"]),
            colour_for(r["code"], BY_CODE[r["code"]].priority if r["code"] in BY_CODE else None),
            f"{r['channel']} · {label(r['code'], lang)} · {r['count']} · {_money(r['amount']).text}")
        for r in data.counts
    ]
