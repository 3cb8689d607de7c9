"""The standalone HTML report in a real headless Chromium: content, charts, sorting, filtering,
a phone-width layout, hostile text that stays text, and no network references at all."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from recon.demo import run_demo
from recon.store import open_store
from recon.taxonomy import label
from reports import ReportData, load_report
from reports import html as html_report
from reports.svg import Bar, bar_chart
from tests.browser import column_index, header, png_size, rows, start_chrome, tools, visible_rows
from tests.scenario import DAY, Scenario

HOSTILE = ("<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "{{7*7}}", '"><b>x</b>')


@dataclass(frozen=True)
class Page:
    data: ReportData
    path: Path

    @property
    def url(self) -> str:
        return self.path.as_uri()


def _page(data: ReportData, folder: Path, lang: str = "en") -> Page:
    [path] = html_report.render(data, folder, lang)
    return Page(data, path)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> ReportData:
    _, _, data = run_demo(tmp_path_factory.mktemp("demo"))
    return data


@pytest.fixture(scope="module")
def demo_page(demo: ReportData, tmp_path_factory: pytest.TempPathFactory) -> Page:
    return _page(demo, tmp_path_factory.mktemp("demo_html"))


@pytest.fixture(scope="module")
def driver() -> Iterator[webdriver.Chrome]:
    chrome = start_chrome()
    try:
        yield chrome
    finally:
        chrome.quit()


def _history(data: ReportData) -> ReportData:
    """The demo run with six earlier runs (one without any result) and two repairs."""
    runs = [(run, date(2026, 11, 14 + run)) for run in range(1, 7)]
    trend = pl.DataFrame(
        [{"run_id": r, "business_date": d, "code": c, "count": n}
         for r, d in runs if r != 3 for c, n in (("matched", 10 + r), ("shop_only", 7 - r))]
        + [{"run_id": 3, "business_date": date(2026, 11, 17), "code": None, "count": 0}],
        schema={"run_id": pl.Int64, "business_date": pl.Date, "code": pl.String, "count": pl.Int64},
    )
    at = datetime(2026, 11, 21, 2, 0, tzinfo=timezone.utc)
    repairs = pl.DataFrame(
        [{"repair_id": i, "idempotency_key": f"k{i}", "exception_id": 10 + i, "shop": "dujiaoka",
          "order_no": f"R-ORDER-{i}", "channel_txn_id": f"T{i}", "action": "complete_order", "state": "done",
          "actor": "recon", "reason": "auto", "created_at": at, "updated_at": at + timedelta(seconds=i),
          "detail": "ok"} for i in (1, 2)],
        schema=data.repairs.schema,
    )
    return replace(data, trend=trend, repairs=repairs)


def test_header_summary_and_every_code_label(driver: webdriver.Chrome, demo_page: Page) -> None:
    data = demo_page.data
    driver.get(demo_page.url)
    assert driver.find_element(By.ID, "run-id").text == f"#{data.run_id}"
    assert driver.find_element(By.ID, "business-date").text == "2026-11-20"
    assert driver.find_element(By.ID, "channels").text == ", ".join(data.channels)
    assert driver.find_element(By.ID, "match-rate").text == f"{(data.match_rate or 0) * 100:.2f}%"
    priorities = driver.find_elements(By.CSS_SELECTOR, "#by-priority li")
    assert {int(p.get_attribute("data-priority") or 0): p.find_element(By.TAG_NAME, "strong").text
            for p in priorities} == {p: str(n) for p, n in data.open_by_priority.items()}
    summary = rows(driver, "summary")
    assert [(r["channel"], r["code"]) for r in summary] == [(c["channel"], c["code"]) for c in data.counts]
    for row, count in zip(summary, data.counts, strict=True):
        assert row["cells"][:3] == [count["channel"], label(count["code"], "en"), str(count["count"])]
        assert Decimal(row["sort"][3]) == count["amount"] and Decimal(row["sort"][4]) == count["difference"]
    assert driver.find_element(By.ID, "exceptions-total").text == str(data.exceptions.height)
    assert len(rows(driver, "exceptions")) == data.exceptions.height
    text = driver.find_element(By.TAG_NAME, "body").text
    for code in {c["code"] for c in data.counts}:
        assert label(code, "en") in text, code
    assert driver.find_element(By.ID, "no-repairs").text == "No repairs in this run."
    # nothing was fetched: no resource entries at all besides the page itself
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0


def test_charts_have_one_bar_per_count_and_one_point_per_run(
        driver: webdriver.Chrome, demo: ReportData, tmp_path: Path) -> None:
    page = _page(_history(demo), tmp_path)
    driver.get(page.url)
    bars = driver.find_elements(By.CSS_SELECTOR, "#bar-chart svg rect.bar")
    assert [(b.find_element(By.XPATH, "..").get_attribute("data-channel"), b.get_attribute("data-count"))
            for b in bars] == [(c["channel"], str(c["count"])) for c in demo.counts]
    widths = [float(b.get_attribute("width") or 0) for b in bars]
    longest = max(c["count"] for c in demo.counts)
    assert all(w > 0 for w in widths) and widths[[c["count"] for c in demo.counts].index(longest)] == max(widths)
    points = driver.find_elements(By.CSS_SELECTOR, "#trend-chart svg circle.point")
    rates = sorted((run, rate) for _, run, rate in page.data.trend_rates() if rate is not None)
    assert len(rates) == 5  # run 3 had nothing to reconcile: no point
    assert [(int(p.get_attribute("data-run") or 0), Decimal(p.get_attribute("data-rate") or "")) for p in points] == rates
    heights = [float(p.get_attribute("cy") or 0) for p in points]
    assert heights == sorted(heights, reverse=True)  # the rate rises run after run: the line climbs
    assert len(driver.find_elements(By.CSS_SELECTOR, "#trend-chart svg polyline.line")) == 1
    repairs = rows(driver, "repairs")
    assert [r["cells"][2] for r in repairs] == ["R-ORDER-1", "R-ORDER-2"]
    assert "2026-11-21 10:00:02" in repairs[1]["cells"]  # shown in the report's zone (Asia/Shanghai)


def test_clicking_a_header_sorts_numerically_both_ways(driver: webdriver.Chrome, demo_page: Page) -> None:
    driver.get(demo_page.url)
    index = column_index(driver, "exceptions", "difference")
    expected = sorted(demo_page.data.exceptions["difference"].to_list())
    assert any(d < 0 for d in expected) and len(set(expected)) > 3
    header(driver, "exceptions", "difference").click()
    assert [Decimal(r["sort"][index]) for r in rows(driver, "exceptions")] == expected
    assert header(driver, "exceptions", "difference").get_attribute("aria-sort") == "ascending"
    header(driver, "exceptions", "difference").click()
    assert [Decimal(r["sort"][index]) for r in rows(driver, "exceptions")] == expected[::-1]
    # a text column sorts as text; the summary's amounts sort as numbers too
    header(driver, "exceptions", "order_no").click()
    orders = [r["cells"][column_index(driver, "exceptions", "order_no")] for r in rows(driver, "exceptions")]
    assert [o for o in orders if o] == sorted((o for o in orders if o), key=str.lower)
    header(driver, "summary", "amount").click()
    amounts = [Decimal(r["sort"][3]) for r in rows(driver, "summary")]
    assert amounts == sorted(c["amount"] for c in demo_page.data.counts)


def test_typing_in_the_filter_leaves_only_matching_rows(driver: webdriver.Chrome, demo_page: Page) -> None:
    driver.get(demo_page.url)
    wanted = demo_page.data.exceptions.filter(pl.col("code") == "amount_mismatch")["order_no"][0]
    box = tools(driver, "exceptions", ".filter")
    box.send_keys(wanted[-8:].lower())
    shown = visible_rows(driver, "exceptions")
    assert shown and all(any(wanted[-8:].lower() in c.lower() for c in r["cells"]) for r in shown)
    assert wanted in [c for r in shown for c in r["cells"]]
    assert len(shown) < demo_page.data.exceptions.height
    total = demo_page.data.exceptions.height
    assert tools(driver, "exceptions", ".shown").text == f"{len(shown)} of {total} rows"
    box.send_keys("no such thing")
    assert visible_rows(driver, "exceptions") == []


def test_choosing_a_code_and_a_channel_narrows_the_rows(driver: webdriver.Chrome, demo_page: Page) -> None:
    driver.get(demo_page.url)
    frame = demo_page.data.exceptions
    Select(tools(driver, "exceptions", ".code-filter")).select_by_value("missing_callback")
    shown = visible_rows(driver, "exceptions")
    assert {r["code"] for r in shown} == {"missing_callback"}
    assert len(shown) == frame.filter(pl.col("code") == "missing_callback").height > 1
    assert all(label("missing_callback", "en") in r["cells"] for r in shown)
    Select(tools(driver, "exceptions", ".channel-filter")).select_by_value("ali")
    expected = frame.filter((pl.col("code") == "missing_callback") & (pl.col("channel") == "ali")).height
    assert len(visible_rows(driver, "exceptions")) == expected >= 1
    Select(tools(driver, "exceptions", ".code-filter")).select_by_value("")
    assert {r["channel"] for r in visible_rows(driver, "exceptions")} == {"ali"}
    Select(tools(driver, "summary", ".code-filter")).select_by_value("matched")
    assert {r["channel"] for r in visible_rows(driver, "summary")} == {"ali", "wx", "epay", "card"}


def test_screenshot_and_a_phone_width_without_page_overflow(
        driver: webdriver.Chrome, demo_page: Page, tmp_path: Path) -> None:
    driver.get(demo_page.url)
    shot = tmp_path / "report.png"
    assert driver.save_screenshot(str(shot))
    width, height = png_size(shot)
    assert width > 600 and height > 400 and shot.stat().st_size > 20_000
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 375, "height": 812, "deviceScaleFactor": 2, "mobile": True})
    try:
        driver.get(demo_page.url)
        # innerWidth 375 proves the viewport meta (without it a mobile browser lays out 980 px)
        assert driver.execute_script("return window.innerWidth") == 375
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        assert driver.execute_script("return document.body.scrollWidth <= window.innerWidth")
        wrap = driver.execute_script(
            "var w = document.querySelector('#exceptions').parentElement;"
            "return [w.clientWidth, w.scrollWidth, getComputedStyle(w).overflowX];")
        assert wrap[0] <= 375 and wrap[1] > wrap[0] and wrap[2] == "auto"  # the table scrolls inside its box
        chart = driver.find_element(By.CSS_SELECTOR, "#bar-chart svg").size
        assert 0 < chart["width"] <= 375
        phone = tmp_path / "report-phone.png"
        assert driver.save_screenshot(str(phone)) and png_size(phone)[0] > 0
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


@pytest.fixture(scope="module")
def hostile_page(tmp_path_factory: pytest.TempPathFactory) -> Page:
    """Hostile order numbers on both sides, hostile goods titles and buyer contacts in the shop."""
    folder = tmp_path_factory.mktemp("hostile")
    scenario = Scenario(folder)
    for text in HOSTILE:
        scenario.order(f"{text} S", "10.00")
    con = sqlite3.connect(scenario.shop_path)
    for text in HOSTILE:
        con.execute("UPDATE orders SET title = ?, email = ? WHERE order_sn = ?", [text, text, f"{text} S"])
    con.commit()
    con.close()
    scenario.order("OK1", "5.00")
    scenario.import_(scenario.statement([{"txn": "T-OK", "order": "OK1", "amount": "5.00"}]
                                        + [{"txn": f"H{i}", "order": t, "amount": "3.00"}
                                           for i, t in enumerate(HOSTILE)]))
    assert scenario.run().counts == {"matched": 1, "shop_only": 4, "channel_only": 4}
    with open_store(scenario.config, write=False) as store:
        data = load_report(store, DAY, None, "Asia/Shanghai")
    return _page(data, folder / "out")


def test_hostile_text_renders_as_text(driver: webdriver.Chrome, hostile_page: Page) -> None:
    driver.get(hostile_page.url)
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 - reading it is what raises
    counts = driver.execute_script(
        "return [document.scripts.length, document.images.length, document.getElementsByTagName('b').length,"
        " document.querySelectorAll('[onerror]').length];")
    assert counts == [1, 0, 0, 0]
    cells = [c for r in rows(driver, "exceptions") for c in r["cells"]]
    columns = [h.get_attribute("data-key") for h in driver.find_elements(By.CSS_SELECTOR, "#exceptions thead th")]
    for text in HOSTILE:
        assert text in cells and f"{text} S" in cells  # channel side and shop side order numbers
        for key in ("buyer_contact", "goods_title"):
            assert text in [r["cells"][columns.index(key)] for r in rows(driver, "exceptions")]
    visible = driver.find_element(By.ID, "exceptions").text
    assert "<script>alert(1)</script>" in visible and "{{7*7}}" in visible
    # {{7*7}} is never worked out: no cell shows 49, times aside (they come from the clock: 12:32:49 is no sign)
    clock = {"created_at", "occurred_at", "first_seen"}
    assert not [cell for r in rows(driver, "exceptions") for key, cell in zip(columns, r["cells"], strict=True)
                if key not in clock and "49" in cell]
    # the filter treats typed markup as text, too
    tools(driver, "exceptions", ".filter").send_keys("<img")
    assert len(visible_rows(driver, "exceptions")) == 2  # the channel's row and the shop's order
    page = hostile_page.path.read_text(encoding="utf-8")
    assert page.count("<script") == 1 and "<img" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_large_run_shows_the_first_rows_and_says_how_many_more(
        driver: webdriver.Chrome, demo: ReportData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(html_report, "MAX_EXCEPTION_ROWS", 5)
    page = _page(demo, tmp_path)
    driver.get(page.url)
    assert len(rows(driver, "exceptions")) == 5
    assert driver.find_element(By.ID, "exceptions-total").text == str(demo.exceptions.height)
    more = demo.exceptions.height - 5
    assert driver.find_element(By.ID, "truncated").text == f"Showing the first 5; {more} more are in the workbook."


def test_chinese_page_translates_codes(driver: webdriver.Chrome, demo: ReportData, tmp_path: Path) -> None:
    page = _page(demo, tmp_path, "zh-CN")
    driver.get(page.url)
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN"
    text = driver.find_element(By.TAG_NAME, "body").text
    assert "掉单（渠道已付、店铺未确认）" in text and "待处理异常" in text
    assert driver.find_element(By.ID, "no-repairs").text == "本批次无补单记录"


def test_the_page_references_nothing_outside_itself(demo_page: Page) -> None:
    page = demo_page.path.read_text(encoding="utf-8")
    assert not re.search(r"https?://", page, re.IGNORECASE)
    assert not re.search(r"\b(src|href|action|xlink:href)\s*=|url\(|@import", page, re.IGNORECASE)
    assert page.count("<script") == 1 and page.count("<style") == 1
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp and "default-src &#39;none&#39;" in csp.group(1) and "unsafe" not in csp.group(1)


def test_svg_text_is_escaped() -> None:
    chart = str(bar_chart([Bar('"><script>x</script>', "c", "<b>label</b>", 3, "#000", "a & b")], "t<", "none"))
    assert "<script>" not in chart and "<b>" not in chart
    assert "&lt;b&gt;label&lt;/b&gt;" in chart and "a &amp; b" in chart and "t&lt;" in chart
