"""The finance console in a real headless Chromium (Debian's chromium + chromedriver): log in, filter,
download the workbook and open it, resolve with a note and see the event; and what must be refused."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.browser import start_chrome
from tests.scenario import Scenario
from tests.web_world import HOSTILE_ORDER, HOSTILE_TITLE, USERS, Console, console, exception_id
from tests.web_world import shop, web  # noqa: F401 (module-scoped fixtures)

WAIT = 20


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def driver(downloads: Path) -> Iterator[webdriver.Chrome]:
    chrome = start_chrome()
    chrome.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield chrome
    finally:
        chrome.quit()


def _wait_for(driver: webdriver.Chrome, css: str) -> None:
    WebDriverWait(driver, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, css))


def _log_in(driver: webdriver.Chrome, web: Console, name: str) -> None:
    driver.delete_all_cookies()
    driver.get(web.url + "/login")
    driver.find_element(By.ID, "username").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(USERS[name][1])
    driver.find_element(By.ID, "login-button").click()
    _wait_for(driver, "#whoami")


def _status(shop: Scenario, exc_id: int) -> str:
    return str(shop.query("SELECT status FROM exceptions WHERE id = ?", [exc_id])[0]["status"])


def _downloaded(folder: Path, suffix: str) -> Path:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        done = [p for p in folder.iterdir() if p.name.endswith(suffix)]
        if done and not any(p.name.endswith(".crdownload") for p in folder.iterdir()):
            return done[0]
        time.sleep(0.1)
    raise AssertionError(f"nothing ending in {suffix} was downloaded: {list(folder.iterdir())}")


def test_an_anonymous_browser_gets_the_login_page_then_where_it_was_going(driver: webdriver.Chrome,
                                                                          web: Console) -> None:
    driver.delete_all_cookies()
    driver.get(web.url + "/exceptions?code=shop_only")
    assert driver.current_url.startswith(web.url + "/login?next=")
    assert not driver.find_elements(By.ID, "exceptions") and "FORGED1" not in driver.page_source
    driver.find_element(By.ID, "username").send_keys("fiona")
    driver.find_element(By.ID, "password").send_keys(USERS["fiona"][1])
    driver.find_element(By.ID, "login-button").click()
    _wait_for(driver, "#exceptions")
    assert driver.current_url == web.url + "/exceptions?code=shop_only"
    rows = driver.find_elements(By.CSS_SELECTOR, "#exceptions tbody tr")
    assert [r.get_attribute("data-code") for r in rows] == ["shop_only"]


def test_finance_filters_downloads_the_workbook_and_resolves_with_a_note(driver: webdriver.Chrome, web: Console,
                                                                         shop: Scenario, downloads: Path) -> None:
    _log_in(driver, web, "fiona")
    assert driver.find_element(By.ID, "latest-rate").text.endswith("%")
    assert driver.find_elements(By.CSS_SELECTOR, '#latest-run a[data-format="xlsx"]')
    driver.find_element(By.LINK_TEXT, "异常").click()
    _wait_for(driver, "#filters")
    Select(driver.find_element(By.NAME, "code")).select_by_value("missing_callback")
    Select(driver.find_element(By.NAME, "channel")).select_by_value("pay")
    driver.find_element(By.ID, "apply-filters").click()
    WebDriverWait(driver, WAIT).until(lambda d: "code=missing_callback" in d.current_url)
    rows = driver.find_elements(By.CSS_SELECTOR, "#exceptions tbody tr")
    shown = {int(r.get_attribute("data-id") or 0) for r in rows}
    assert {r.get_attribute("data-code") for r in rows} == {"missing_callback"}
    assert shown == {exception_id(shop, "missing_callback", o) for o in ("LOST1", "LOST2")}

    driver.find_element(By.ID, "export").click()
    workbook = _downloaded(downloads, ".xlsx")
    assert workbook.name.startswith("异常明细_")
    book = openpyxl.load_workbook(workbook)
    sheet = book.worksheets[0]
    header = [c.value for c in sheet[1]]
    exported = [dict(zip(header, (c.value for c in row), strict=True)) for row in sheet.iter_rows(min_row=2)]
    assert {r["编号"] for r in exported} == shown
    assert {r["订单号"] for r in exported} == {"LOST1", "LOST2"} and {r["差异类型"] for r in exported} == {
        "掉单（渠道已付、店铺未确认）"}

    target = min(shown)
    driver.find_element(By.CSS_SELECTOR, f'#exceptions tr[data-id="{target}"] a').click()
    _wait_for(driver, "#close-form")
    driver.find_element(By.ID, "note").send_keys("补单已在后台手工完成 <ok>")
    driver.find_element(By.ID, "resolve-button").click()
    _wait_for(driver, "#flash")
    assert driver.find_element(By.ID, "status").text == "已处理"
    last = driver.find_elements(By.CSS_SELECTOR, "#events tbody tr")[-1]
    assert last.get_attribute("data-actor") == "fiona" and last.get_attribute("data-action") == "resolved"
    assert last.find_element(By.CSS_SELECTOR, ".note").text == "补单已在后台手工完成 <ok>"
    assert _status(shop, target) == "resolved"


def test_a_post_without_its_csrf_token_is_refused(driver: webdriver.Chrome, web: Console, shop: Scenario,
                                                  tmp_path: Path) -> None:
    _log_in(driver, web, "otto")
    target = exception_id(shop, "amount_mismatch")
    driver.get(f"{web.url}/exceptions/{target}")
    _wait_for(driver, "#close-form")
    driver.execute_script("document.querySelector('#close-form input[name=csrf_token]').remove()")
    driver.find_element(By.ID, "note").send_keys("no token")
    driver.find_element(By.ID, "resolve-button").click()
    _wait_for(driver, "#error-title")
    assert driver.find_element(By.ID, "error-title").text.startswith("表单已过期")
    # the same form from another site: the cookie stays home (SameSite=Lax) and there is no token either
    attacker = tmp_path / "attacker.html"
    attacker.write_text(f'<form method="post" action="{web.url}/exceptions/{target}/resolve">'
                        '<input name="note" value="cross-site"><button id="go">go</button></form>', encoding="utf-8")
    driver.get(attacker.as_uri())
    driver.find_element(By.ID, "go").click()
    _wait_for(driver, "#error-title")
    assert _status(shop, target) == "open"
    events = shop.query("SELECT action FROM exception_events WHERE exception_id = ?", [target])
    assert [e["action"] for e in events] == ["opened"]


def test_a_traversal_path_is_refused(driver: webdriver.Chrome, web: Console, downloads: Path) -> None:
    _log_in(driver, web, "fiona")
    before = set(downloads.iterdir())
    for path in ("/reports/..%2Frecon.toml", "/reports/%2E%2E%2Fsecret.csv", "/reports/leak.csv"):
        driver.get(web.url + path)
        _wait_for(driver, "#error-title")
        assert "[store]" not in driver.page_source and "not for download" not in driver.page_source
    time.sleep(0.5)
    assert set(downloads.iterdir()) == before


def test_a_hostile_product_name_and_order_number_render_as_text(driver: webdriver.Chrome, web: Console,
                                                                shop: Scenario) -> None:
    _log_in(driver, web, "fiona")
    driver.get(f"{web.url}/exceptions/{exception_id(shop, 'shop_only', 'FORGED1')}")
    _wait_for(driver, "#goods-title")
    assert driver.find_element(By.ID, "goods-title").text == HOSTILE_TITLE
    assert not driver.find_elements(By.CSS_SELECTOR, "#goods-title *")
    driver.get(f"{web.url}/exceptions?code=channel_only&status=")
    _wait_for(driver, "#exceptions")
    orders = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "#exceptions tbody td.mono")]
    assert HOSTILE_ORDER in orders
    assert not driver.find_elements(By.ID, "injected")
    assert driver.execute_script("return window.__pwned === undefined")
