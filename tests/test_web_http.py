"""The finance console over real HTTP (uvicorn on 127.0.0.1, requests as the client): logins and roles,
CSRF on every form, the login rate limit, downloads and traversal, resolve/ignore, redelivery, export."""

from __future__ import annotations

import http.client
import io
import re
import sqlite3
import zipfile
from urllib.parse import unquote

import openpyxl
import pytest
from starlette.routing import Route

from tests.scenario import Scenario
from tests.web_world import (CHINESE_FILE, FORMULA_ORDER, HOSTILE_ORDER, Client, Console, console,
                             exception_id, logged_in)
from tests.web_world import shop, web  # noqa: F401 (module-scoped fixtures)

PAGES = ("/runs", "/exceptions", "/exceptions/1", "/repairs", "/jobs", "/exceptions/export.xlsx",
         "/reports/recon_2026-11-20_run1.xlsx")


def _events(shop: Scenario, exc_id: int) -> list[dict[str, object]]:
    return shop.query("SELECT actor, action, note FROM exception_events WHERE exception_id = ? ORDER BY event_id",
                      [exc_id])


def _status(shop: Scenario, exc_id: int) -> str:
    return str(shop.query("SELECT status FROM exceptions WHERE id = ?", [exc_id])[0]["status"])


def test_anonymous_visitors_see_the_login_page_and_no_data(web: Console, shop: Scenario) -> None:
    visitor = Client(web.url)
    for path in PAGES:
        answer = visitor.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"].startswith("/login?next=/"), path
        assert b"LOST1" not in answer.content and b"PK" not in answer.content[:2]
    target = exception_id(shop, "shop_only")
    refused = visitor.post(f"/exceptions/{target}/resolve", {"note": "anonymous"})
    assert refused.status_code == 403
    assert _status(shop, target) == "open" and len(_events(shop, target)) == 1
    login_page = visitor.get("/login?next=/exceptions")
    assert login_page.status_code == 200 and 'name="password"' in login_page.text
    assert "script-src" not in login_page.headers["content-security-policy"]
    assert "default-src 'none'" in login_page.headers["content-security-policy"]


def test_login_gives_an_http_only_lax_cookie_that_logout_and_tampering_end(web: Console) -> None:
    wrong = Client(web.url).login("fiona", "not-her-password")
    assert wrong.status_code == 401 and "fiona-password-1" not in wrong.text
    client = Client(web.url)
    answer = client.login("fiona")
    assert answer.status_code == 303 and answer.headers["location"] == "/runs"
    cookie = answer.headers["set-cookie"].lower()
    assert "recon_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    runs = client.get("/runs")
    assert runs.status_code == 200 and 'id="whoami">fiona' in runs.text
    forged = Client(web.url)
    forged.http.cookies.set("recon_session", str(client.http.cookies["recon_session"])[:-4] + "AAAA")
    assert forged.get("/runs").status_code == 303
    elsewhere = Client(web.url).post("/login", {"username": "fiona", "password": "fiona-password-1",
                                                "next": "//evil.example/phish"})
    assert elsewhere.status_code == 303 and elsewhere.headers["location"] == "/runs"
    out = client.post("/logout", {})
    assert out.status_code == 303 and client.get("/runs").status_code == 303


def test_secure_cookies_are_sent_over_https_only(shop: Scenario) -> None:
    web_config = shop.config.web.model_copy(update={"secure_cookies": True})
    with console(shop.config.model_copy(update={"web": web_config})) as secure:
        answer = Client(secure.url).get("/login")  # the login form's CSRF token starts a session
    cookie = answer.headers["set-cookie"].lower()
    assert answer.status_code == 200 and "secure" in cookie and "httponly" in cookie


def test_failed_logins_are_limited_per_user_and_per_address(web: Console) -> None:
    for i in range(5):  # five guesses at rita's password, each from another address
        assert Client(web.url, f"10.1.0.{i}").login("rita", f"guess-{i}").status_code == 401
    limited = Client(web.url, "10.1.0.99").login("rita")  # her real password, a fresh address
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    assert "rita-password-1" not in limited.text
    for i in range(5):  # one address guessing at five names
        assert Client(web.url, "10.2.0.1").login(f"nobody{i}", "guess").status_code == 401
    assert Client(web.url, "10.2.0.1").login("otto").status_code == 429
    assert Client(web.url, "10.2.0.2").login("otto").status_code == 303


def test_exceptions_filter_by_date_channel_code_priority_sort_and_page(web: Console, shop: Scenario) -> None:
    finance = logged_in(web.url, "fiona")

    def ids(query: str) -> list[int]:
        page = finance.get("/exceptions" + query)
        assert page.status_code == 200, query
        return [int(i) for i in re.findall(r'<tr data-id="(\d+)"', page.text)]

    everything = {int(r["id"]) for r in shop.exceptions()}
    first, second = ids("?status="), ids("?status=&page=2")
    assert len(first) == 5 and set(first) | set(second) == everything and not set(first) & set(second)
    assert 'rel="next"' in finance.get("/exceptions?status=").text
    assert set(ids("?status=&from=2026-11-20&to=2026-11-20&channel=pay")) <= everything
    assert ids("?status=&from=2026-11-21") == [] and ids("?status=&channel=other") == []
    assert ids("?status=&priority=1") == [exception_id(shop, "shop_only")]
    assert ids("?status=&code=amount_mismatch") == [exception_id(shop, "amount_mismatch")]
    by_difference = {int(r["id"]): (r["channel_amount"] or 0) - (r["shop_amount"] or 0) for r in shop.exceptions()}
    descending = ids("?status=&sort=difference&dir=desc") + ids("?status=&sort=difference&dir=desc&page=2")
    assert [by_difference[i] for i in descending] == sorted(by_difference.values(), reverse=True)
    assert finance.get("/exceptions?status=&page=x").status_code == 400


def test_pages_speak_english_when_the_reports_do(shop: Scenario) -> None:
    english = shop.config.model_copy(update={"reports": shop.config.reports.model_copy(update={"language": "en"})})
    with console(english) as web:
        operator = logged_in(web.url, "otto")
        runs = operator.get("/runs").text
        assert "Latest run" in runs and '<svg class="chart trend"' in runs and 'data-code="matched"' in runs
        detail = operator.get(f"/exceptions/{exception_id(shop, 'missing_callback', 'LOST2')}").text
        assert "Shop order" in detail and "file pay_2026-11-20.csv, line 4" in detail and "Redeliver" in detail
        jobs = operator.get("/jobs").text
        assert 'data-job="nightly:pay"' in jobs and "cron 0 11 * * * (Asia/Shanghai)" in jobs
        assert re.search(r'class="next-fire">\d{4}-\d\d-\d\d 11:00:00<', jobs)
        assert operator.get("/repairs").status_code == 200
        assert operator.get("/exceptions/99999").status_code == 404


def test_every_post_refuses_a_missing_or_wrong_csrf_token(web: Console, shop: Scenario) -> None:
    operator = logged_in(web.url, "otto")
    target = exception_id(shop, "missing_callback", "LOST2")
    posts = [r.path.replace("{id:int}", str(target)) for r in web.app.routes
             if isinstance(r, Route) and r.methods and "POST" in r.methods]
    assert {"/login", "/logout", f"/exceptions/{target}/resolve", f"/exceptions/{target}/ignore",
            f"/exceptions/{target}/redeliver"} <= set(posts)
    form = {"note": "n", "reason": "r", "confirm": "yes", "username": "otto", "password": "otto-password-1"}
    for path in posts:
        assert operator.post(path, form, csrf=False).status_code == 403, path
        assert operator.post(path, {**form, "csrf_token": "forged"}, csrf=False).status_code == 403, path
    assert _status(shop, target) == "open" and len(_events(shop, target)) == 1
    assert shop.query("SELECT count(*) AS n FROM repairs")[0]["n"] == 0
    assert operator.get("/runs").status_code == 200  # still logged in: the refused logout did nothing


def test_resolve_and_ignore_need_a_note_and_record_who(web: Console, shop: Scenario) -> None:
    finance = logged_in(web.url, "fiona")
    target = exception_id(shop, "amount_mismatch")
    empty = finance.post(f"/exceptions/{target}/resolve", {"note": "   "})
    assert empty.status_code == 303 and _status(shop, target) == "open"
    assert "请填写备注" in finance.get(f"/exceptions/{target}").text  # the flash asks for a note
    done = finance.post(f"/exceptions/{target}/resolve", {"note": "buyer paid 5.00 more by bank <transfer>"})
    assert done.status_code == 303 and _status(shop, target) == "resolved"
    assert _events(shop, target)[-1] == {"actor": "fiona", "action": "resolved",
                                         "note": "buyer paid 5.00 more by bank <transfer>"}
    page = finance.get(f"/exceptions/{target}").text
    assert "buyer paid 5.00 more by bank &lt;transfer&gt;" in page and 'id="close-form"' not in page
    again = finance.post(f"/exceptions/{target}/ignore", {"note": "twice"})
    assert again.status_code == 303 and _status(shop, target) == "resolved" and len(_events(shop, target)) == 2
    other = exception_id(shop, "channel_only", FORMULA_ORDER)
    assert finance.post(f"/exceptions/{other}/ignore", {"note": "test payment of our own"}).status_code == 303
    assert _status(shop, other) == "ignored" and _events(shop, other)[-1]["actor"] == "fiona"


def test_only_an_operator_redelivers_with_a_reason_through_the_repair_protocol(web: Console,
                                                                               shop: Scenario) -> None:
    target = exception_id(shop, "missing_callback", "LOST1")
    finance = logged_in(web.url, "fiona")
    assert 'id="redeliver-form"' not in finance.get(f"/exceptions/{target}").text
    assert finance.post(f"/exceptions/{target}/redeliver", {"reason": "r", "confirm": "yes"}).status_code == 403
    operator = logged_in(web.url, "otto")
    assert 'id="redeliver-form"' in operator.get(f"/exceptions/{target}").text
    assert operator.post(f"/exceptions/{target}/redeliver", {"reason": "", "confirm": "yes"}).status_code == 303
    assert operator.post(f"/exceptions/{target}/redeliver", {"reason": "buyer wrote in"}).status_code == 303
    assert shop.query("SELECT count(*) AS n FROM repairs")[0]["n"] == 0  # no reason, no confirmation: nothing
    done = operator.post(f"/exceptions/{target}/redeliver", {"reason": "buyer wrote in", "confirm": "yes"})
    assert done.status_code == 303
    [journal] = shop.query("SELECT actor, reason, state, action FROM repairs")
    assert journal == {"actor": "otto", "reason": "buyer wrote in", "state": "applied", "action": "complete"}
    con = sqlite3.connect(shop.shop_path)
    [(status, info)] = con.execute("SELECT status, info FROM orders WHERE order_sn = 'LOST1'").fetchall()
    con.close()
    assert status == 4 and str(info).startswith("CARD-")
    assert _status(shop, target) == "repaired"
    events = _events(shop, target)
    assert {"repaired", "redelivery"} <= {str(e["action"]) for e in events}
    assert all(e["actor"] == "otto" for e in events if e["action"] in ("repaired", "redelivery"))
    assert "buyer wrote in" in str(next(e["note"] for e in events if e["action"] == "redelivery"))
    journal_page = operator.get("/repairs").text
    assert "LOST1" in journal_page and "buyer wrote in" in journal_page and "<form method=\"post\"" not in journal_page


def _raw_get(web: Console, client: Client, path: str) -> tuple[int, bytes]:
    """A GET with the path exactly as written (requests would normalise dot segments)."""
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=30)
    cookie = "; ".join(f"{k}={v}" for k, v in client.http.cookies.items())
    conn.request("GET", path, headers={"Cookie": cookie})
    answer = conn.getresponse()
    body = answer.read()
    conn.close()
    return answer.status, body


def test_downloads_are_report_files_inside_the_report_folder_only(web: Console, shop: Scenario) -> None:
    finance = logged_in(web.url, "fiona")
    runs = finance.get("/runs").text
    expected = {
        "recon_2026-11-20_run1.xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "recon_2026-11-20_run1.html": "text/html; charset=utf-8",
        "recon_2026-11-20_run1_exceptions.csv": "text/csv; charset=utf-8",
        "recon_2026-11-20_run1_results.parquet": "application/vnd.apache.parquet",
    }
    for name, content_type in expected.items():
        assert f'href="/reports/{name}"' in runs
        answer = finance.get(f"/reports/{name}")
        assert answer.status_code == 200 and answer.headers["content-type"] == content_type, name
        assert answer.headers["content-disposition"] == f"attachment; filename=\"{name}\"; filename*=UTF-8''{name}"
        assert "sandbox" in answer.headers["content-security-policy"]
    book = openpyxl.load_workbook(io.BytesIO(finance.get("/reports/recon_2026-11-20_run1.xlsx").content))
    assert book.sheetnames[0] == "汇总"
    chinese = finance.get("/reports/" + CHINESE_FILE)
    disposition = chinese.headers["content-disposition"]
    assert chinese.status_code == 200 and chinese.content.decode("utf-8") == "说明,值\n"
    assert unquote(disposition.split("filename*=UTF-8''")[1]) == CHINESE_FILE
    assert disposition.encode("latin-1")  # the header itself stays ASCII
    for path in ("/reports/../recon.toml", "/reports/%2e%2e/recon.toml", "/reports/..%2Frecon.toml",
                 "/reports/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "/reports//etc/passwd", "/reports/%2Fetc%2Fpasswd",
                 "/reports/leak.csv", "/reports/.partial.csv", "/reports/..%5Crecon.toml",
                 "/reports/recon_2026-11-20_run1.xlsx%00.csv"):
        status, body = _raw_get(web, finance, path)
        assert status in (400, 404), path
        assert b"not for download" not in body and b"[store]" not in body and b"root:" not in body, path


def test_the_export_is_the_filtered_view_in_a_formula_safe_workbook(web: Console, shop: Scenario) -> None:
    finance = logged_in(web.url, "fiona")
    listed = finance.get("/exceptions?code=channel_only&status=").text
    export = finance.get("/exceptions/export.xlsx?code=channel_only&status=")
    assert export.status_code == 200
    assert export.headers["content-type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    disposition = export.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="exceptions_')
    assert unquote(disposition.split("filename*=UTF-8''")[1]).startswith("异常明细_")
    book = openpyxl.load_workbook(io.BytesIO(export.content))
    sheet = book.worksheets[0]
    header = [c.value for c in sheet[1]]
    rows = [dict(zip(header, (c.value for c in row), strict=True)) for row in sheet.iter_rows(min_row=2)]
    assert sorted(r["订单号"] for r in rows) == sorted([HOSTILE_ORDER, FORMULA_ORDER])
    assert all(f'data-id="{r["编号"]}"' in listed for r in rows)
    assert {r["渠道金额"] for r in rows} == {5, 7}
    with zipfile.ZipFile(io.BytesIO(export.content)) as archive:
        sheets = [n for n in archive.namelist() if n.startswith("xl/worksheets/")]
        assert sheets and not any(b"<f>" in archive.read(n) for n in sheets)
    filters = {row[0].value: row[1].value for row in book.worksheets[1].iter_rows()}
    assert filters["导出人"] == "fiona" and filters["行数"] == 2
    empty = finance.get("/exceptions/export.xlsx?status=&from=2030-01-01")
    nothing = openpyxl.load_workbook(io.BytesIO(empty.content)).worksheets[0]
    assert empty.status_code == 200 and nothing.max_row == 1 and nothing["A1"].value == "编号"
    assert finance.get("/exceptions?sort=drop_table").status_code == 400
    assert finance.get("/exceptions?from=2026-13-01").status_code == 400
