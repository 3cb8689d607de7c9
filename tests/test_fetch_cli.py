"""`recon fetch` and `recon query` against a channel's API (the local sandbox), end to end."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from fetchers import FetchedStatement
from fetchers.sandbox import Payment, Sandbox
from fetchers.sandbox.epay import EpaySandbox
from recon.config import load_config
from recon.errors import InputError
from recon.fetching import store_fetched
from recon.store import open_store
from recon_cli import app
from tests.scenario import SAMPLES, Scenario

runner = CliRunner()
SH = ZoneInfo("Asia/Shanghai")
KEY = "epay-test-key-5f2c"
EPAY = """
[[channels]]
id = "ep"
kind = "epay"
shop_pay_ids = [14]
api = {{ pid = "1001" }}
api_base = "{base}"
credentials = {{ key = "env:TEST_EPAY_KEY" }}
"""


def test_fetch_stores_the_day_once_and_query_answers_now(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_EPAY_KEY", KEY)
    paid = [Payment("EP1", Decimal("12.00"), "2026112012000011111", datetime(2026, 11, 20, 12, 0, 5, tzinfo=SH)),
            Payment("EP2", Decimal("30.00"), "2026112013000022222", datetime(2026, 11, 20, 13, 0, 5, tzinfo=SH))]
    with Sandbox(EpaySandbox("1001", KEY, paid)) as sandbox:
        s = Scenario(tmp_path, more_channels=EPAY.format(base=sandbox.url("/epay")))
        s.order("EP1", "12.00", pay_id=14, trade_no="2026112012000011111")
        s.order("EP2", "30.00", pay_id=14, status=1)
        config = ["--config", str(tmp_path / "recon.toml")]
        first = runner.invoke(app, [*config, "fetch", "--date", "2026-11-20", "--channel", "ep", "--json"])
        again = runner.invoke(app, [*config, "fetch", "--date", "2026-11-20", "--channel", "ep"])
        query = runner.invoke(app, [*config, "query", "EP2", "--channel", "ep", "--json"])
        run = runner.invoke(app, [*config, "run", "--date", "2026-11-20", "--channel", "ep", "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout) == [{"channel": "ep", "mode": "api", "statements": 1, "rows_new": 2,
                                         "error": None, "retryable": False}]
    assert "0 new rows, 1 already held" in again.stdout
    assert json.loads(query.stdout)[0] | {"paid_at": None} == {
        "channel": "ep", "order_no": "EP2", "state": "paid", "raw_status": "1", "amount": "30.00", "currency": "CNY",
        "channel_txn_id": "2026112013000022222", "paid_at": None, "note": ""}
    assert json.loads(run.stdout)["counts"] == {"matched": 1, "missing_callback": 1}
    sources = s.query("SELECT DISTINCT source FROM channel_txn WHERE channel = 'ep'")
    assert len(sources) == 1 and len(sources[0]["source"]) == 64
    assert s.query("SELECT source FROM imports WHERE channel = 'ep'") == [{"source": "api:api.php?act=orders"}]
    assert KEY not in first.output + again.output + query.output + run.output


def test_a_fetched_bill_that_does_not_parse_is_quarantined_and_nothing_stored(tmp_path: Path) -> None:
    more = '\n[[channels]]\nid = "ali"\nkind = "alipay"\n'
    s = Scenario(tmp_path, more_channels=more)
    config = load_config(tmp_path / "recon.toml")
    bill = (SAMPLES / "demo" / "20881234567890120156_20261120_业务明细.csv").read_bytes()
    truncated = bill[: bill.index("#-----".encode()) + 10]  # cut before the footer totals
    fetched = FetchedStatement("alipay_day.csv", "api:alipay.data.dataservice.bill.downloadurl.query",
                               (date(2026, 11, 20), date(2026, 11, 20)), raw=truncated)
    with open_store(config, write=True) as con, pytest.raises(InputError, match="alipay_day.csv"):
        store_fetched(con, config, config.channel("ali"), fetched)
    kept = sorted(p.name for p in (tmp_path / "quarantine").iterdir())
    assert len(kept) == 2 and kept[0].endswith("ali_alipay_day.csv") and kept[1].endswith(".reason.txt")
    assert s.query("SELECT count(*) AS n FROM imports")[0]["n"] == 0
