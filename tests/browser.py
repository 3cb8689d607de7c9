"""A real headless Chromium (Debian's chromium + chromedriver) for the HTML report tests.

The driver and the browser are given by path, so Selenium Manager never runs and nothing is
downloaded; the flags below also switch off the browser's own background traffic.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROME_ARGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync",
    "--window-size=1280,900",
)

# Every row of a table's body with its data attributes, its cell texts and whether it is rendered.
_ROWS_JS = """
return Array.prototype.map.call(document.getElementById(arguments[0]).tBodies[0].rows, function (r) {
  return {code: r.getAttribute('data-code'), channel: r.getAttribute('data-channel'),
          visible: r.getClientRects().length > 0,
          cells: Array.prototype.map.call(r.cells, function (c) { return c.textContent; }),
          sort: Array.prototype.map.call(r.cells, function (c) { return c.getAttribute('data-sort'); })};
});
"""


def start_chrome() -> webdriver.Chrome:
    """Start headless Chromium; fail loudly (not skip) when the Debian packages are missing."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        raise RuntimeError(f"missing {', '.join(missing)}: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))


def rows(driver: webdriver.Chrome, table_id: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = driver.execute_script(_ROWS_JS, table_id)
    return result


def visible_rows(driver: webdriver.Chrome, table_id: str) -> list[dict[str, Any]]:
    return [r for r in rows(driver, table_id) if r["visible"]]


def column_index(driver: webdriver.Chrome, table_id: str, key: str) -> int:
    heads = driver.find_elements(By.CSS_SELECTOR, f"#{table_id} thead th")
    return [h.get_attribute("data-key") for h in heads].index(key)


def header(driver: webdriver.Chrome, table_id: str, key: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, f'#{table_id} thead th[data-key="{key}"]')


def tools(driver: webdriver.Chrome, table_id: str, selector: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, f'.tools[data-table="{table_id}"] {selector}')


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (and proof it is a PNG at all)."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", head
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)
