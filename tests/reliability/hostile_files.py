"""Hostile statement files, the store as comparable data, and `recon` run as a measured child process.

Every hostile file is made from a good sample by one edit (or generated outright, like the zip bombs and
the single enormous line), with the line its error must name.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
from hypothesis import strategies as st

from fetchers.sandbox.server import Payment, Refund, SandboxChannel, SandboxRequest, SandboxResponse
from fetchers.statement_zip import MAX_RATIO
from recon.config import Config
from tests.parser_helpers import ALIPAY_CSV, alipay_bytes, alipay_text, sample, wechat_bytes, wechat_text
from tests.scenario import ROOT, Scenario

# The Alipay sample's account is this PID + "0156"; the WeChat sample's 商户号 is this mchid.
ALIPAY_PID = "2088021109625633"
WECHAT_MCHID = "1601959334"
CHANNELS = f"""
[[channels]]
id = "ali"
kind = "alipay"
shop_pay_ids = [2]
merchant_id = "{ALIPAY_PID}"

[[channels]]
id = "wx"
kind = "wechatpay"
shop_pay_ids = [8]
merchant_id = "{WECHAT_MCHID}"
"""
HTML_PAGE = b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n<body>nginx</body></html>\n"
GIB = 1 << 30


def world(folder: Path) -> Scenario:
    """A scenario with the csv channel ``pay`` and the merchant-bound channels ``ali`` and ``wx``."""
    return Scenario(folder, more_channels=CHANNELS)


@dataclass(frozen=True)
class Hostile:
    """A file ``recon import --channel <channel>`` must refuse at ``line`` (None: a zip has no lines)."""

    channel: str
    name: str
    make: Callable[[], bytes]
    line: int | None
    says: str


def _good_csv() -> str:
    return ("txn,order,kind,time,amount,currency,fee,status\n"
            "T1,O1,payment,2026-11-20 10:00:00,10.00,CNY,,success\n"
            "T2,O2,payment,2026-11-20 11:00:00,20.00,CNY,,success\n"
            "T3,O3,payment,2026-11-20 12:00:00,30.00,CNY,,success\n")


def _csv_cut_mid_line() -> bytes:
    text = _good_csv()
    return text[: text.index("T3,O3,payment") + len("T3,O3,pay")].encode()


def _csv_gbk_inside_utf8() -> bytes:
    return _good_csv().replace("O2,payment", "O2,退款", 1).encode("gbk")


def _alipay_cut_mid_line() -> bytes:
    text = alipay_text()
    at = text.index("service_1568613406000")  # a payment row on line 10
    return alipay_bytes(text[: at + 8])


def _alipay_edit(old: str, new: str) -> Callable[[], bytes]:
    def make() -> bytes:
        text = alipay_text()
        assert old in text
        return alipay_bytes(text.replace(old, new, 1))
    return make


def _wechat_edit(old: str, new: str, count: int = 1) -> Callable[[], bytes]:
    def make() -> bytes:
        text = wechat_text()
        assert old in text
        return wechat_bytes(text.replace(old, new, count))
    return make


def _wechat_misencoded() -> bytes:
    raw = wechat_bytes(wechat_text())
    at = raw.index(b"S20210128165824499930")  # line 4
    return raw[:at] + b"\x80\xff" + raw[at:]


@functools.cache
def deflated_zeros(size: int) -> bytes:
    """A raw deflate stream of ``size`` zero bytes (a multiple of 16 MiB), made in well under a second.

    One 16 MiB block is compressed after a full flush (no history) and repeated: identical input after a
    reset gives identical bytes, and a stream of such blocks plus an empty final block is valid deflate.
    """
    chunk = 1 << 24
    assert size % chunk == 0
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = packer.compress(bytes(chunk)) + packer.flush(zlib.Z_FULL_FLUSH)
    return block * (size // chunk) + zlib.compressobj(9, zlib.DEFLATED, -15).flush()


def zip_of(name: str, deflated: bytes, declared_size: int, crc: int) -> bytes:
    """A one-entry zip whose headers declare ``declared_size`` and ``crc`` for the ``deflated`` stream."""
    encoded = name.encode("utf-8")
    flags, method, stamp = 0x800, 8, (0, 0x21)  # UTF-8 name, deflate, 1980-01-01
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, method, *stamp, crc, len(deflated), declared_size,
                        len(encoded), 0) + encoded
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, flags, method, *stamp, crc, len(deflated),
                          declared_size, len(encoded), 0, 0, 0, 0, 0, 0) + encoded
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(deflated), 0)
    return local + deflated + central + end


def zip_bomb_honest() -> bytes:
    """1 GiB of zeros squeezed into about 1 MB, with true sizes in the headers."""
    crc, zeros = 0, bytes(1 << 24)
    for _ in range(GIB >> 24):
        crc = zlib.crc32(zeros, crc)
    return zip_of(ALIPAY_CSV, deflated_zeros(GIB), GIB, crc)


def zip_bomb_lying() -> bytes:
    """The same 1 GiB stream, but the headers claim only as much as the expansion-ratio guard lets through.

    The CRC is that of the claimed prefix, so the archive reads back without a complaint: whatever reads it must
    stop at the claimed size instead of inflating the whole stream first.
    """
    deflated = deflated_zeros(GIB)
    claimed = MAX_RATIO * len(deflated)
    return zip_of(ALIPAY_CSV, deflated, claimed, zlib.crc32(bytes(claimed)))


def write_one_line(path: Path, size: int) -> Path:
    """A file of ``size`` bytes without a single line break, written in 1 MiB pieces."""
    piece = b"9," * (1 << 19)
    with open(path, "wb") as fh:
        for _ in range(size // len(piece)):
            fh.write(piece)
        fh.write(piece[: size % len(piece)])
    return path


# Each case: what a user could really be handed, and the line its error must point at.
CASES: dict[str, Hostile] = {
    "csv cut mid-line": Hostile("pay", "cut.csv", _csv_cut_mid_line, 4, "expected 8 fields"),
    "csv with GBK bytes in a UTF-8 bill": Hostile("pay", "gbk.csv", _csv_gbk_inside_utf8, 3, "cannot be decoded"),
    "csv html error page": Hostile("pay", "page.csv", lambda: HTML_PAGE, 1, "missing column(s)"),
    "csv amount in other digits": Hostile(
        "pay", "digits.csv", lambda: _good_csv().replace(",20.00,", ",٢٠.٠٠,").encode(), 3, "is not an amount"),
    "csv row without an amount": Hostile(
        "pay", "blank.csv", lambda: _good_csv().replace(",20.00,", ",,").encode(), 3, "a row without an amount"),
    "alipay cut mid-line": Hostile("ali", "cut.csv", _alipay_cut_mid_line, 10, "end marker is missing"),
    "alipay footer total mismatch": Hostile(
        "ali", "total.csv", _alipay_edit("#交易合计：6笔，商家实收共0.06元", "#交易合计：6笔，商家实收共0.05元"), 17,
        "footer 交易合计 says 6 rows totalling 0.05"),
    "alipay html error page": Hostile("ali", "page.csv", lambda: HTML_PAGE, 1, "not an Alipay bill"),
    "alipay bill of another merchant": Hostile(
        "ali", "other.csv", _alipay_edit("#账号：[20880211096256330156]", "#账号：[20889999999999990156]"), 2,
        f"bill of merchant 20889999999999990156, but channel 'ali' is merchant {ALIPAY_PID}"),
    "alipay damaged zip": Hostile("ali", "cut.zip", lambda: sample(
        "alipay_20190916_trade_bill_GBKnames_noUTF8flag.SEMI_SYNTHETIC.zip")[:700], None, "not a readable zip"),
    "wechat summary count mismatch": Hostile(
        "wx", "count.csv", _wechat_edit("`3,`0.03", "`4,`0.03"), 6, "summary says 4 rows, the bill holds 3"),
    "wechat mis-encoded": Hostile("wx", "bytes.csv", _wechat_misencoded, 4, "cannot be decoded"),
    "wechat summary cut off": Hostile(
        "wx", "cut.csv", lambda: wechat_bytes(wechat_text()[: wechat_text().index("总交易单数")]), 4,
        "summary block (总交易单数) is missing"),
    "wechat bill of another merchant": Hostile(
        "wx", "other.csv", _wechat_edit(f"`{WECHAT_MCHID},", "`1900000109,", -1), 2,
        f"bill of merchant 1900000109, but channel 'wx' is merchant {WECHAT_MCHID}"),
    "wechat rows of two merchants": Hostile(
        "wx", "mixed.csv", _wechat_edit(f"`{WECHAT_MCHID},", "`1900000109,", 2), 4,
        "rows of more than one 商户号"),
}


def dump_store(store: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every table of the store, rows sorted, for a before/after comparison."""
    con = duckdb.connect(str(store), read_only=True)
    try:
        tables = [t for (t,) in con.execute("SELECT table_name FROM information_schema.tables "
                                            "WHERE table_schema = 'main' ORDER BY table_name").fetchall()]
        return {t: sorted(con.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}
    finally:
        con.close()


def files_under(folder: Path) -> dict[str, bytes]:
    """Relative path → bytes of every file under ``folder`` (empty when it does not exist)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@dataclass(frozen=True)
class ChildRun:
    code: int  # exit code; -9 when killed by SIGKILL
    stdout: str
    stderr: str
    peak_rss: int  # bytes: the child's own maximum resident set size


# The child reports its own high-water mark: after exec, ru_maxrss (wait4, RUSAGE_CHILDREN) still
# carries the RSS of the forked copy of this test process, which grows over a long test session.
_MEASURED_LAUNCH = """\
import atexit, os
def _high_water():
    with open("/proc/self/status", encoding="ascii") as status, open(os.environ["RECON_TEST_HWM"], "w") as out:
        out.write(next(line for line in status if line.startswith("VmHWM:")).split()[1])
atexit.register(_high_water)
from recon_cli import main
main()
"""


def recon_child(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> ChildRun:
    """Run the `recon` console entry point in a child process and measure that child's peak memory
    (its own VmHWM, in bytes)."""
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr, \
            tempfile.TemporaryDirectory() as scratch:
        high_water = Path(scratch) / "vmhwm"
        child = subprocess.Popen([sys.executable, "-c", _MEASURED_LAUNCH, *args],
                                 stdout=stdout, stderr=stderr, cwd=ROOT,
                                 env={**os.environ, "COLUMNS": "250", "RECON_TEST_HWM": str(high_water),
                                      **(env or {})})
        status, _usage = wait_measured(child, timeout)
        stdout.seek(0)
        stderr.seek(0)
        peak = int(high_water.read_text(encoding="ascii")) * 1024 if high_water.exists() else 0
        return ChildRun(status, stdout.read().decode("utf-8", "replace"), stderr.read().decode("utf-8", "replace"),
                        peak)


def wait_measured(child: subprocess.Popen[bytes], timeout: float) -> tuple[int, resource.struct_rusage]:
    """Exit code and resource usage of ``child``; it is killed (by its own PID) when it overstays."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            child.kill()
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
            raise AssertionError(f"recon did not finish within {timeout} s")
        time.sleep(0.02)
    child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, usage


# ------------------------------------------------------------------------------------ hostile API answers

API_DAY = date(2024, 3, 1)
WALLET = "TXYZopYRdj2D9XRtbG411XZZ3kM5VkAeBf"
DELETE = object()  # an edit that removes the key or list item instead of replacing it


class Mutating:
    """A sandbox channel that serves what the real one serves, with the drawn edits applied to its JSON."""

    def __init__(self, inner: SandboxChannel) -> None:
        self.inner = inner
        self.prefix = inner.prefix
        self.edits: list[tuple[list[int] | str, Any]] = []

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        response = self.inner.handle(request)
        if request.path.endswith("/oauth2/token") or "json" not in response.headers.get("Content-Type", ""):
            return response
        payload = json.loads(response.body)
        for where, value in self.edits:  # a field name (every occurrence) or a path of indexes
            payload = edit_field(payload, where, value) if isinstance(where, str) else edit_path(payload, where, value)
        return SandboxResponse(response.status, json.dumps(payload, ensure_ascii=False).encode(), response.headers)


def edit_path(node: Any, path: list[int], value: Any) -> Any:
    """Replace (or delete) the node that ``path`` picks: each step chooses a key or item by index modulo."""
    if not path or not isinstance(node, dict | list) or not node:
        return value
    step, rest = path[0], path[1:]
    if isinstance(node, list):
        at = step % len(node)
        if not rest and value is DELETE:
            return node[:at] + node[at + 1:]
        return [*node[:at], edit_path(node[at], rest, value), *node[at + 1:]]
    key = sorted(node)[step % len(node)]
    if not rest and value is DELETE:
        return {k: v for k, v in node.items() if k != key}
    return {**node, key: edit_path(node[key], rest, value)}


def edit_field(node: Any, name: str, value: Any) -> Any:
    """Replace (or delete) the value of every key ``name``, at any depth."""
    if isinstance(node, list):
        return [edit_field(item, name, value) for item in node]
    if not isinstance(node, dict):
        return node
    edited = {k: value if k == name else edit_field(v, name, value) for k, v in node.items()}
    return {k: v for k, v in edited.items() if v is not DELETE}


# The fields of the four APIs' answers, so that edits find them often.
FIELDS = ["data", "transaction_details", "transaction_info", "token_info", "block_timestamp", "value", "decimals",
          "transaction_id", "to", "from", "type", "money", "endtime", "addtime", "status", "refundmoney", "trade_no",
          "out_trade_no", "amount", "created", "fee", "currency", "source", "reporting_category", "id", "has_more",
          "metadata", "transaction_amount", "fee_amount", "transaction_initiation_date", "transaction_event_code",
          "total_pages", "last_refreshed_datetime", "meta", "fingerprint", "payer_info", "code", "success",
          "transaction_status", "paypal_reference_id", "invoice_id", "payment_intent", "charge", "address"]
HOSTILE_JSON = st.one_of(
    st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70), st.floats(), st.text(max_size=12),
    st.sampled_from(["", "0", "-1", "١٢", "1e5", "NaN", "Infinity", "99999999999999999999", "0.0000001",
                     "2024-03-01 12:00:00", "0000-00-00 00:00:00", "9999-12-31 23:59:59", "2024-03-01T12:00:00+0000",
                     "10000-01-01T00:00:00+0000", "T0006", "T1107", "Transfer", "charge", "refund", "USD", "JPY",
                     "1", "2", "3", WALLET, "x" * 300, DELETE, 2 ** 63, -(2 ** 63), 10 ** 18, 253402300800000,
                     1709251200, 1709251200000, "²", "99999999999999999999", "9" * 5000, "1.0000001", -5, 100.5]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
EDITS = st.lists(st.tuples(st.sampled_from(FIELDS) | st.lists(st.integers(0, 50), min_size=1, max_size=6),
                           HOSTILE_JSON), min_size=1, max_size=3)


def sandbox_payments(currency: str, with_order_no: bool = True) -> list[Payment]:
    """Four payments at noon of API_DAY (Shanghai), one of them partly refunded an hour later."""
    noon = datetime(2024, 3, 1, 12, tzinfo=ZoneInfo("Asia/Shanghai"))
    return [Payment(f"F{i}" if with_order_no else "", Decimal(f"{i}.50"),
                    f"20240301115{i:014d}" if with_order_no else f"{i:064x}", noon + timedelta(minutes=7 * i),
                    currency=currency, fee=Decimal("0.10"),
                    refunds=[Refund(f"re_{i}", Decimal("1.00"), noon + timedelta(hours=1))] if i == 2 else [],
                    extra={"addtime": (noon + timedelta(minutes=7 * i - 1)).strftime("%Y-%m-%d %H:%M:%S")})
            for i in range(1, 5)]


API_CHANNELS = f"""
[[channels]]
id = "epay"
kind = "epay"
api_base = "{{base}}/epay"
api = {{{{ pid = "1001" }}}}
credentials = {{{{ key = "file:{{secrets}}/epay" }}}}

[[channels]]
id = "usdt"
kind = "usdt_trc20"
currency = "USDT"
api_base = "{{base}}/trongrid"
api = {{{{ wallet = "{WALLET}" }}}}

[[channels]]
id = "stripe"
kind = "stripe"
currency = "USD"
api_base = "{{base}}/stripe"
credentials = {{{{ secret_key = "file:{{secrets}}/stripe" }}}}

[[channels]]
id = "paypal"
kind = "paypal"
currency = "USD"
api_base = "{{base}}/paypal"
api = {{{{ client_id = "fuzz-client" }}}}
credentials = {{{{ client_secret = "file:{{secrets}}/paypal" }}}}
"""


@dataclass
class ApiWorld:
    """A store open for writing, configured with the four channels served by ``channels``."""

    config: Config
    con: duckdb.DuckDBPyConnection
    channels: dict[str, Mutating]
