"""A shop paid through an Epay panel (the local sandbox) day after day, for the scheduler tests."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fetchers.sandbox import Payment, Sandbox
from fetchers.sandbox.epay import EpaySandbox
from recon.config import Config, load_config
from tests.scenario import Scenario

SH = ZoneInfo("Asia/Shanghai")
EPAY_KEY = "k-schedule-7f3a"
PID = "1001"


def epay_channel(url: str, extra: str = "") -> str:
    return ('\n[[channels]]\nid = "ep"\nkind = "epay"\nshop_pay_ids = [14]\nauto_repair_max = 500\n'
            f'api = {{ pid = "{PID}" }}\napi_base = "{url}"\ncredentials = {{ key = "env:EP_KEY" }}\n{extra}')


class EpayShop:
    """A Scenario with an extra ``ep`` channel served by a running Epay sandbox."""

    def __init__(self, folder: Path, sandbox: Sandbox, panel: EpaySandbox, schedule: str = "",
                 channel_extra: str = "") -> None:
        self.panel = panel
        self.scenario = Scenario(folder, more_channels=epay_channel(sandbox.url("/epay"), channel_extra)
                                 + ("\n[schedule]\n" + schedule if schedule else ""))
        self.payments: list[Payment] = []
        self._n = 0

    @property
    def config(self) -> Config:
        return load_config(self.scenario.folder / "recon.toml")

    def paid_order(self, day: date, amount: str = "12.00", at: str = "12:00:00", shop_knows: bool = True,
                   created_minutes_before: int = 1) -> str:
        """An order paid at ``day at`` (Beijing time) on the panel; the shop completed it unless not told."""
        self._n += 1
        sn = f"EP{day:%m%d}{self._n:03d}"
        paid_at = datetime.combine(day, datetime.strptime(at, "%H:%M:%S").time(), SH)
        txn = f"{paid_at:%Y%m%d%H%M%S}{10000 + self._n}"
        created = (paid_at - timedelta(minutes=created_minutes_before)).astimezone(SH)
        self.payments.append(Payment(sn, Decimal(amount), txn, paid_at))
        self.panel.reset(self.payments)
        self.scenario.order(sn, amount, status=4 if shop_knows else 1, pay_id=14, trade_no=txn if shop_knows else "",
                            created=created.strftime("%Y-%m-%d %H:%M:%S"))
        return sn

    def unpaid_order(self, minutes_ago: float, amount: str = "10.00") -> str:
        """A shop order (goods 1) created ``minutes_ago`` (real time), still waiting for payment."""
        self._n += 1
        sn = f"SW{self._n:04d}"
        created = (datetime.now(UTC) - timedelta(minutes=minutes_ago)).astimezone(SH)
        self.scenario.order(sn, amount, status=1, pay_id=14, created=created.strftime("%Y-%m-%d %H:%M:%S"))
        return sn

    def pay(self, sn: str, amount: str = "10.00", status: str = "paid") -> Payment:
        """The buyer pays ``sn`` on the panel now; the shop never hears of it (the notify is lost)."""
        paid_at = datetime.now(UTC).replace(microsecond=0)
        payment = Payment(sn, Decimal(amount), f"{paid_at.astimezone(SH):%Y%m%d%H%M%S}{20000 + self._n}", paid_at,
                          status=status)
        self.payments.append(payment)
        self.panel.reset(self.payments)
        return payment

    def runs(self) -> list[dict[str, Any]]:
        return self.scenario.query("SELECT * FROM runs WHERE kind = 'reconcile' ORDER BY run_id")

    def shop_status(self, sn: str) -> int:
        con = sqlite3.connect(self.scenario.shop_path)
        try:
            return int(con.execute("SELECT status FROM orders WHERE order_sn = ?", [sn]).fetchone()[0])
        finally:
            con.close()


def beijing(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SH).astimezone(UTC)


@contextmanager
def epay_panel() -> Iterator[tuple[Sandbox, EpaySandbox]]:
    panel = EpaySandbox(PID, EPAY_KEY)
    with Sandbox(panel) as sandbox:
        yield sandbox, panel
