"""Fuzzing every input recon reads: whatever bytes a statement parser or JSON a channel API is handed, the only
exception that reaches the user is one of recon's own (InputError naming the file, FetchError naming the
channel), and what is accepted is well-formed canonical rows. Then the classifier over random worlds of three
days: each run partitions the day's rows and orders, and both sides' sums add up.

Examples: ``RECON_FUZZ_EXAMPLES`` (default 100) per parser, a fifth as many per API (two fetches each), an
eighth as many classifier worlds (three runs each); raise it for more on demand.
"""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetchers import CANONICAL_SCHEMA, FETCHERS, PARSERS
from fetchers.sandbox import Sandbox
from fetchers.sandbox.epay import EpaySandbox
from fetchers.sandbox.paypal import PaypalSandbox
from fetchers.sandbox.stripe import StripeSandbox
from fetchers.sandbox.trongrid import TronGridSandbox
from recon.config import ChannelConfig, CsvMapping, load_config
from recon.errors import FetchError, InputError, ReconError
from recon.fetching import fetch_channel
from recon.importer import import_file
from recon.lock import store_lock
from recon.pipeline import run
from recon.store import open_store
from tests.parser_helpers import ALIPAY_CSV, ALIPAY_ZIP, WECHAT_ALL, WECHAT_REFUND, sample
from tests.reliability.hostile_files import (
    API_CHANNELS,
    API_DAY,
    EDITS,
    WALLET,
    ApiWorld,
    Mutating,
    sandbox_payments,
)
from tests.scenario import Scenario

EXAMPLES = int(os.environ.get("RECON_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
FIXTURES = Path(__file__).parents[1] / "fixtures"

# ------------------------------------------------------------------------------------------ statement files

CSV_MAPPING = CsvMapping(
    skip_lines=1, footer_markers=["合计"], amount_unit="minor", refunds_written_positive=True,
    columns={"occurred_at": "time", "channel_txn_id": "id", "amount": "amount", "kind": "kind"},
    kind_map={"pay": "payment", "ref": "refund"},
)
CHANNELS = {
    "alipay": [ChannelConfig(id="ali", kind="alipay")],
    "wechatpay": [ChannelConfig(id="wx", kind="wechatpay")],
    # New York: its wall clock skips 02:00-03:00 on 2024-03-10 and repeats 01:00-02:00 on 2024-11-03
    "csv": [ChannelConfig(id="bank", kind="csv", mapping=CSV_MAPPING),
            ChannelConfig(id="ny", kind="csv", zone="America/New_York", mapping=CSV_MAPPING)],
    "stripe": [ChannelConfig(id="st", kind="stripe", currency="USD")],
    "paypal": [ChannelConfig(id="pp", kind="paypal", currency="USD", zone="America/Los_Angeles")],
}
CSV_SAMPLE = ("export\ntime,id,amount,kind\n2024-03-10 01:59:59,001,100,pay\n2024-03-10 03:00:00,002,100,ref\n"
              "合计,,,\n").encode()
SEEDS = {
    "alipay": [sample(ALIPAY_CSV), sample(ALIPAY_ZIP)],
    "wechatpay": [sample(WECHAT_ALL), sample(WECHAT_REFUND)],
    "csv": [CSV_SAMPLE],
    "stripe": [p.read_bytes() for p in sorted((FIXTURES / "stripe").glob("*.csv"))],
    "paypal": [(FIXTURES / "paypal" / "STL-20240820.01.009.SYNTHETIC.CSV").read_bytes()],
}
# Bytes that matter to the formats: separators, padding, markers, record types, line ends, bad encodings,
# digits of other scripts, times that do not exist, and a cell longer than a line may be.
TOKENS = [b",", b",`", b"`", b"\t", b'"', b"\n", b"\r\n", b"\r", b"#", b"-", b".", b"..", b"-0", b"9" * 30,
          b"\x80\xff", b"\x00", b"\x0c", "\u2028".encode(), "\ufeff".encode(), "元".encode("gbk"),
          "笔".encode("gbk"), b"PK\x03\x04", "١٢".encode(), "１２".encode(), "²".encode(), b"1e400", b"NaN",
          b"99999999999999.999999", b"100000000000000", b'"SB",', b'"SF",', b'"FF",7', b'"CH",', b"CR", b"DR",
          b"T1107", b"JPY", b"XXX", b"2024-03-10 02:30:00", b"2024-11-03 01:30:00", b"2024-02-30 10:00:00",
          b"0000-00-00 00:00:00", b"9999-12-31 23:59:59", b"refund", b"payout", b"x" * 140_000]


def _edit_bytes(seed: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    data = bytearray(seed)
    for position, cut, insert in edits:
        at = position % (len(data) + 1)
        data[at:at + cut] = insert
    return bytes(data)


def _edit_lines(seed: bytes, edits: list[tuple[str, int, int, bytes]]) -> bytes:
    """Line-level edits: drop, repeat or swap lines, or replace one comma-separated cell of a line."""
    lines = seed.split(b"\n")
    for op, i, j, token in edits:
        i, j = i % len(lines), j % len(lines)
        if op == "drop" and len(lines) > 1:
            del lines[i]
        elif op == "repeat":
            lines.insert(i, lines[i])
        elif op == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        else:
            cells = lines[i].split(b",")
            cells[j % len(cells)] = token
            lines[i] = b",".join(cells)
    return b"\n".join(lines)


def _inputs(kind: str) -> st.SearchStrategy[bytes]:
    token = st.sampled_from(TOKENS) | st.binary(max_size=6)
    byte_edit = st.tuples(st.integers(0, 1 << 16), st.integers(0, 40), token)
    line_edit = st.tuples(st.sampled_from(["drop", "repeat", "swap", "cell"]), st.integers(0, 99),
                          st.integers(0, 99), token)
    seeds = st.sampled_from(SEEDS[kind])
    as_text = st.text(alphabet=st.sampled_from(list(",`\t\"\n\r#-.0123456789 :总交易单数业务明细列表结束合计笔元SBFCHR")))
    return st.one_of(st.builds(_edit_bytes, seeds, st.lists(byte_edit, min_size=1, max_size=4)),
                     st.builds(_edit_lines, seeds, st.lists(line_edit, min_size=1, max_size=4)),
                     st.binary(max_size=300), as_text.map(str.encode))


def _only_input_errors(kind: str, raw: bytes) -> None:
    lines = raw.count(b"\n") + raw.count(b"\r") + 1
    for channel in CHANNELS[kind]:
        try:
            parsed = PARSERS[kind](Path("fuzz.bin"), raw, channel)
        except InputError as error:
            assert error.file == "fuzz.bin" and error.problem
            # a line of the file, or the one just past its end where a missing line was expected
            assert error.line is None or 1 <= error.line <= lines + 1, str(error)
            continue
        rows = parsed.rows
        assert rows.schema == pl.Schema(CANONICAL_SCHEMA)
        # a row without its time or business date would never be reconciled: it must be refused instead
        assert rows.select(pl.col("natural_key", "occurred_at", "business_date", "kind", "amount")
                           .null_count()).row(0) == (0, 0, 0, 0, 0), rows


@pytest.mark.parametrize("kind", sorted(PARSERS))
def test_every_parser_raises_only_input_errors(kind: str) -> None:
    @FUZZ
    @given(raw=_inputs(kind))
    def one_file(raw: bytes) -> None:
        _only_input_errors(kind, raw)

    one_file()


def test_every_registered_parser_has_seeds_that_parse() -> None:
    """The mutations start from valid files, so a rejection above is about the edit, not the seed; and a parser
    added to PARSERS without seeds here fails this test."""
    assert set(SEEDS) == set(CHANNELS) == set(PARSERS)
    for kind, seeds in SEEDS.items():
        for seed in seeds:
            for channel in CHANNELS[kind]:
                assert PARSERS[kind](Path("seed"), seed, channel).rows.height > 0, (kind, channel.id)


# -------------------------------------------------------------------------------------------- channel APIs

@pytest.fixture(scope="module")
def api_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiWorld]:
    folder = tmp_path_factory.mktemp("api")
    (folder / "secrets").mkdir()
    for name, value in {"epay": "fuzzEpayKey0123", "stripe": "sk_test_fuzz", "paypal": "fuzz-secret"}.items():
        (folder / "secrets" / name).write_text(value, encoding="utf-8")
    channels = {
        "epay": Mutating(EpaySandbox("1001", "fuzzEpayKey0123", sandbox_payments("CNY"))),
        "usdt": Mutating(TronGridSandbox(WALLET, sandbox_payments("USDT", with_order_no=False))),
        "stripe": Mutating(StripeSandbox(sandbox_payments("USD"), secret_key="sk_test_fuzz")),
        "paypal": Mutating(PaypalSandbox(sandbox_payments("USD"), client_id="fuzz-client",
                                         client_secret="fuzz-secret")),
    }
    with Sandbox(*channels.values()) as sandbox:
        (folder / "recon.toml").write_text(
            '[store]\npath = "recon.duckdb"\n[shop]\nkind = "sqlite"\npath = "shop.sqlite"\nschema = "dujiaoka"\n'
            + API_CHANNELS.format(base=sandbox.base_url, secrets=folder / "secrets"), encoding="utf-8")
        config = load_config(folder / "recon.toml")
        with store_lock(config.store_path), open_store(config, write=True) as con:
            yield ApiWorld(config, con, channels)


def test_every_api_fetcher_is_fuzzed(api_world: ApiWorld) -> None:
    """Alipay's and WeChat Pay's APIs answer signed JSON and hand over bills that the parsers above read;
    every other fetcher turns JSON records into rows itself and is fuzzed below."""
    fuzzed = {api_world.config.channel(c).kind for c in api_world.channels}
    assert set(FETCHERS) - fuzzed == {"alipay", "wechatpay"}


@pytest.mark.parametrize("channel_id", ["epay", "usdt", "stripe", "paypal"])
def test_api_records_give_rows_or_a_fetch_error(channel_id: str, api_world: ApiWorld) -> None:
    """Each example fetches the day as the sandbox serves it, then again with the drawn edits (a day fetched
    twice whose answer changed in between, as when a late record arrives)."""
    channel = api_world.config.channel(channel_id)
    mutating = api_world.channels[channel_id]

    @settings(FUZZ, max_examples=max(EXAMPLES // 5, 10))
    @given(edits=EDITS)
    def one_answer(edits: list[tuple[list[int] | str, Any]]) -> None:
        for table in ("import_duplicates", "channel_txn", "imports"):
            api_world.con.execute(f"DELETE FROM {table} WHERE channel = ?", [channel_id])
        mutating.edits = []
        clean = fetch_channel(api_world.con, api_world.config, channel, API_DAY)
        assert clean.error is None and clean.imports[0].rows_new > 0, clean.error
        mutating.edits = edits
        outcome = fetch_channel(api_world.con, api_world.config, channel, API_DAY)  # raises anything not recon's
        if outcome.error is not None:
            assert isinstance(outcome.error, ReconError) and str(outcome.error)
            if isinstance(outcome.error, FetchError):
                assert outcome.error.channel == channel_id
            return
        # a stored row without its time or business date would never be reconciled
        broken = api_world.con.execute(
            "SELECT count(*) FROM channel_txn WHERE channel = ? AND (occurred_at IS NULL OR business_date IS NULL "
            "OR natural_key IS NULL OR amount IS NULL OR kind IS NULL)", [channel_id]).fetchone()
        assert broken == (0,)

    try:
        one_answer()
    finally:
        mutating.edits = []


# ----------------------------------------------------------------------------------------------- classifier
# tests/test_classification_properties.py checks one day, one file, order numbers on every row. Here: three days
# run in order, overlapping and repeated files, and rows matched to orders by amount, with the shop side's sum.

DAYS = (date(2026, 11, 19), date(2026, 11, 20), date(2026, 11, 21))
SHANGHAI = ZoneInfo("Asia/Shanghai")
PRICES = ["10.00", "10.01", "0.01", "9.99"]  # near each other: amount matching must be exact
MONEY_IN = {2, 3, 4, 5, 6}  # dujiaoka statuses under which the shop believes the money came in
CREATED = ["2026-11-20 10:00:00", "2026-11-19 23:40:00", "2026-11-20 00:00:00", "2026-11-20 23:50:00",
           "2026-11-19 12:00:00", "2026-11-21 09:00:00", "2026-11-20 23:59:59"]
TIMES = ["2026-11-20 12:00:00", "2026-11-19 23:59:59", "2026-11-20 00:00:00", "2026-11-20 23:59:59",
         "2026-11-21 00:00:00", "2026-11-21 10:00:00", "2026-11-19 08:00:00"]
MATCH_MINUTES = 40


@dataclass(frozen=True)
class Order:
    sn: str
    price: str
    status: int
    pay_id: int
    created: str


@dataclass(frozen=True)
class World:
    """Shop orders and channel rows over three days, imported as two overlapping files (maybe one twice)."""

    orders: list[Order]
    rows: list[dict[str, str]]
    overlap: tuple[int, int]  # file one is rows[:b], file two rows[a:]
    again: bool  # file one imported a second time
    matching: bool  # rows without an order number are matched by amount (as on-chain USDT transfers are)


def _later(stamp: str, minutes: int) -> str:
    at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S") + timedelta(minutes=minutes)  # noqa: DTZ007 wall clock
    return at.strftime("%Y-%m-%d %H:%M:%S")


@st.composite
def worlds(draw: st.DrawFn) -> World:
    matching = draw(st.booleans())
    orders = [Order(f"Ord{n}", draw(st.sampled_from(PRICES)), draw(st.sampled_from([4, 1, -1, 2, 6])),
                    draw(st.sampled_from([1, 1, 2])), draw(st.sampled_from(CREATED)))
              for n in draw(st.lists(st.integers(1, 9), unique=True, max_size=8))]

    def row(order: str, amount: str, time: str, kind: str = "payment") -> dict[str, str]:
        kind = draw(st.sampled_from([kind, kind, kind, "refund"]))
        return {"txn": f"T{draw(st.integers(1, 9))}", "order": order, "kind": kind, "time": time,
                "amount": f"-{amount}" if kind == "refund" else amount,
                "status": draw(st.sampled_from(["success"] * 6 + ["refunded", "pending", "failed"]))}

    rows = []
    for o in orders:
        for _ in range(draw(st.sampled_from([1, 0, 1, 2]))):
            rows.append(row(draw(st.sampled_from([o.sn, o.sn.upper(), o.sn.lower()])),
                            draw(st.sampled_from([o.price] * 4 + PRICES)), draw(st.sampled_from(TIMES))))
        if matching and draw(st.booleans()):  # a transfer naming no order, some minutes after the order
            minutes = draw(st.sampled_from([1, 10, 39, 41, 90, -1]))
            rows.append(row("", draw(st.sampled_from([o.price, o.price, "7.00"])), _later(o.created, minutes)))
    rows += [row(draw(st.sampled_from(["", "GHOST1"])), "7.00", draw(st.sampled_from(TIMES)))
             for _ in range(draw(st.integers(0, 3)))]
    rows = draw(st.permutations(rows))[:16]
    cut = sorted(draw(st.tuples(st.integers(0, len(rows)), st.integers(0, len(rows)))))
    return World(orders, rows, (cut[0], cut[1]), draw(st.booleans()), matching)


def _local(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI)


def _check_run(w: World, day: date, results: list[dict[str, Any]], txns: list[dict[str, Any]],
               carried: set[str]) -> None:
    """One run's results against the world: a partition of the day's rows and orders, and the money of both sides."""
    orders = {o.sn.upper(): o for o in w.orders}
    today = [t for t in txns if t["business_date"] == day]
    by_id = {t["txn_id"]: t for t in today}
    # (1) every channel row of the day in exactly one result, every unit and every order once
    assert Counter(i for r in results for i in r["txn_ids"]) == Counter(list(by_id))
    assert len({r["unit_key"] for r in results}) == len(results)
    elsewhere = {t["order_no"].upper() for t in txns if t["order_no"] and t["business_date"] != day}
    named = {t["order_no"].upper() for t in today if t["order_no"]}
    created_today = {k for k, o in orders.items()
                     if o.pay_id == 1 and _local(o.created).date() == day and k not in elsewhere}
    with_order = [r["unit_key"] for r in results if r["shop_status"] is not None]
    assert ((named & set(orders)) | created_today) <= set(with_order) <= set(orders)
    for r in results:
        rows = [by_id[i] for i in r["txn_ids"]]
        # a row naming an order is in that order's unit; a row naming none is alone or matched by amount
        for t in rows:
            if t["order_no"]:
                assert r["unit_key"] == t["order_no"].upper()
            elif not r["unit_key"].startswith("txn:"):
                o = orders[r["unit_key"]]
                assert w.matching and t["kind"] == "payment" and t["amount"] == Decimal(o.price) and o.pay_id == 1
                assert _local(o.created) <= t["occurred_at"] <= _local(o.created) + timedelta(minutes=MATCH_MINUTES)
        assert sum(1 for t in rows if not t["order_no"]) <= 1 or r["unit_key"].startswith("txn:")
        # (2) money: the channel side is the unit's settled rows; the shop side is the order's price when the
        # shop believes it was paid and its money belongs to this day
        assert r["channel_amount"] == sum((t["amount"] for t in rows if t["status"] in ("success", "refunded")),
                                          Decimal(0))
        o = orders.get(r["unit_key"]) if r["shop_status"] is not None else None
        paid_here = any(t["kind"] == "payment" and t["status"] in ("success", "refunded") for t in rows)
        counted = o is not None and o.status in MONEY_IN and (
            paid_here or not rows or _local(o.created).date() == day or r["unit_key"] in carried)
        assert r["shop_amount"] == (Decimal(o.price) if counted and o else Decimal(0)), r
        assert r["diff"] == r["channel_amount"] - r["shop_amount"]
    settled = sum((t["amount"] for t in today if t["status"] in ("success", "refunded")), Decimal(0))
    assert sum((r["channel_amount"] for r in results), Decimal(0)) == settled


# The same csv channel again, matching rows without an order number by amount as USDT does.
MATCHING_CHANNEL = f"""
[[channels]]
id = "chain"
kind = "csv"
shop_pay_ids = [1]
amount_match_minutes = {MATCH_MINUTES}
[channels.mapping.columns]
channel_txn_id = "txn"
order_no = "order"
kind = "kind"
occurred_at = "time"
amount = "amount"
currency = "currency"
fee = "fee"
status = "status"
"""


@pytest.fixture(scope="module")
def ledger_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Scenario, Any]]:
    """One shop and store for every example, emptied before each (a fresh store per example is slow)."""
    s = Scenario(tmp_path_factory.mktemp("classify"), more_channels=MATCHING_CHANNEL)
    with store_lock(s.config.store_path), s.store() as con:
        yield s, con


def _empty(s: Scenario, con: Any) -> None:
    with sqlite3.connect(s.shop_path) as shop:
        shop.execute("DELETE FROM orders")
    tables = con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
                         "AND table_name <> 'schema_version'").fetchall()
    for (table,) in tables:
        con.execute(f'DELETE FROM "{table}"')


@settings(FUZZ, max_examples=max(EXAMPLES // 8, 10))
@given(w=worlds())
def test_every_run_partitions_rows_and_orders_and_sums_both_sides(w: World,
                                                                  ledger_world: tuple[Scenario, Any]) -> None:
    """Three days, each run once in order, over overlapping and repeated imports, refunds, duplicates, times on
    both sides of midnight and, half the time, rows matched to orders by amount (USDT's way)."""
    s, con = ledger_world
    _empty(s, con)
    channel = "chain" if w.matching else "pay"
    for o in w.orders:
        s.order(o.sn, o.price, status=o.status, pay_id=o.pay_id, created=o.created)
    first, second = s.statement(w.rows[:w.overlap[1]]), s.statement(w.rows[w.overlap[0]:])
    for path in [first, second] + [first] * w.again:
        import_file(con, s.config, channel, path)
    txns = _rows(con, "SELECT txn_id, order_no, kind, amount, status, occurred_at, business_date FROM channel_txn")
    assert len(txns) == len({(r["kind"], r["txn"]) for r in w.rows})  # one row per record, however often imported
    for day in DAYS:
        carried = {r["key"] for r in _rows(con, "SELECT key FROM exceptions WHERE code = 'pending' AND "
                                                "status = 'open' AND business_date < ?", [day])}
        summary = run(con, s.config, day, [channel], "fuzz")
        _check_run(w, day, _rows(con, "SELECT * FROM results WHERE run_id = ?", [summary.run_id]), txns, carried)


def _rows(con: Any, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
