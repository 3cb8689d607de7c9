"""The bundled sample day: a dujiaoka shop, an Alipay bill, a WeChat bill, a card processor's CSV,
and an Epay panel fetched over its API from the local sandbox (running only while the demo runs).

Every difference code of DESIGN §4 appears at least once (see samples/make_demo.py for the story).
"""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from fetchers.sandbox import Payment, Refund, Sandbox
from fetchers.sandbox.epay import EpaySandbox
from jobs.reconcile import reconcile
from recon.config import Config, load_config
from recon.errors import UsageError
from recon.importer import ImportOutcome, import_file
from recon.lock import store_lock
from recon.pipeline import RunSummary
from recon.store import open_store
from reports import ReportData

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
DEMO_DATE = date(2026, 11, 20)
# channel id → its statement files, in the order they arrived
DEMO_FILES = {
    "ali": ["20881234567890120156_20261120_业务明细.csv"],
    "wx": ["wechatpay_tradebill_ALL_2026-11-20.csv"],
    "card": ["card_2026-11-20_morning.csv", "card_2026-11-20_full.csv"],
}
DEMO_CONFIG = """\
# The demo's configuration: the same keys a real shop uses (see `recon init`).
[store]
path = "recon.duckdb"

[shop]
kind = "sqlite"
path = "shop.sqlite"
schema = "dujiaoka"

[[channels]]
id = "ali"
kind = "alipay"
shop_pay_ids = [1]
merchant_id = "20881234567890120156"
auto_repair_max = 500
fee_rate = 0.006

[[channels]]
id = "wx"
kind = "wechatpay"
shop_pay_ids = [8]
auto_repair_max = 500
fee_rate = 0.006

[[channels]]
id = "epay"
kind = "epay"
shop_pay_ids = [14]
auto_repair_max = 500
api = {{ pid = "1001" }}
# The demo's Epay panel is the local sandbox, up only while `recon demo` runs.
api_base = "{epay_base}"
credentials = {{ key = "env:RECON_DEMO_EPAY_KEY" }}

[[channels]]
id = "card"
kind = "csv"
shop_pay_ids = [21]
fee_rate = 0.03
[channels.mapping]
columns = {{ channel_txn_id = "id", order_no = "metadata_order_no", kind = "type", occurred_at = "created_local", amount = "amount", currency = "currency", fee = "fee" }}
kind_map = {{ charge = "payment", refund = "refund" }}
natural_key = ["channel_txn_id"]

[reports]
out_dir = "reports"
formats = ["xlsx", "html"]
"""


EPAY_KEY_VARIABLE = "RECON_DEMO_EPAY_KEY"
_SH = ZoneInfo("Asia/Shanghai")


def epay_payments() -> list[Payment]:
    """What the Epay panel recorded on the sample day (the shop's side is in samples/demo/shop.sql)."""
    def at(hh: int, mm: int, ss: int) -> datetime:
        return datetime(2026, 11, 20, hh, mm, ss, tzinfo=_SH)

    return [
        Payment("E1MATCHED0000001", Decimal("20.00"), "2026112010300012345", at(10, 30, 20),
                extra={"api_trade_no": "2026112022001400000000000901"}),
        Payment("E2LOSTNOTIFY0002", Decimal("58.00"), "2026112015000067890", at(15, 0, 40),
                extra={"api_trade_no": "4200000001202611200000000902"}),
        Payment("E3REFUNDED00003", Decimal("9.90"), "2026112016000054321", at(16, 0, 30),
                refunds=[Refund("R1", Decimal("9.90"), at(17, 0, 0))]),
    ]


def build_shop(target: Path) -> None:
    """The demo shop: dujiaoka's tables in SQLite, filled with the sample day."""
    con = sqlite3.connect(target)
    try:
        con.executescript((SAMPLES / "dujiaoka_sqlite.sql").read_text(encoding="utf-8"))
        con.executescript((SAMPLES / "demo" / "shop.sql").read_text(encoding="utf-8"))
        con.commit()
    finally:
        con.close()


def prepare(workdir: Path, epay_base: str) -> Config:
    """Copy the samples into ``workdir`` and write its recon.toml (an existing demo folder is reused)."""
    if not (SAMPLES / "demo").is_dir():
        raise UsageError(f"the bundled samples are not at {SAMPLES}: install recon from its source folder "
                         "(pip install -e .)")
    statements = workdir / "statements"
    statements.mkdir(parents=True, exist_ok=True)
    for names in DEMO_FILES.values():
        for name in names:
            shutil.copyfile(SAMPLES / "demo" / name, statements / name)
    if not (workdir / "shop.sqlite").exists():
        build_shop(workdir / "shop.sqlite")
    (workdir / "recon.toml").write_text(DEMO_CONFIG.format(epay_base=epay_base), encoding="utf-8")
    return load_config(workdir / "recon.toml")


def run_demo(workdir: Path) -> tuple[list[ImportOutcome], RunSummary, ReportData]:
    """Import the sample statements, fetch the Epay day from the sandbox, reconcile, write the reports."""
    key = secrets.token_hex(16)
    previous = os.environ.get(EPAY_KEY_VARIABLE)
    os.environ[EPAY_KEY_VARIABLE] = key
    try:
        return _run(workdir, key)
    finally:
        if previous is None:
            os.environ.pop(EPAY_KEY_VARIABLE, None)
        else:
            os.environ[EPAY_KEY_VARIABLE] = previous


def _run(workdir: Path, key: str) -> tuple[list[ImportOutcome], RunSummary, ReportData]:
    with Sandbox(EpaySandbox("1001", key, epay_payments())) as sandbox:
        config = prepare(workdir, sandbox.url("/epay"))
        outcomes = []
        with store_lock(config.store_path, "recon demo"), open_store(config, write=True) as con:
            for channel, names in DEMO_FILES.items():
                for name in names:
                    outcomes.append(import_file(con, config, channel, workdir / "statements" / name))
        summary, data = reconcile(config, DEMO_DATE, None, f"recon demo (run --date {DEMO_DATE})")
    return outcomes, summary, data
