"""Network faults and unverifiable answers through the real fetchers: `recon fetch` and `recon query`
against the sandbox's WeChat Pay, Alipay and Epay, each failing the way real channels fail.

What must hold: a bounded number of attempts (counted at the server), a bounded time, exit code 1 with
a clear message, and nothing of a failed or unverifiable answer in the store.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from fetchers.http import MAX_ATTEMPTS
from fetchers.sandbox import Payment, SandboxRequest, SandboxResponse
from tests.reliability.hostile_world import (
    DAY_TEXT,
    FULL,
    PREFIX,
    READ_TIMEOUT,
    RESPONSE_DEADLINE,
    SHOP_SIDE,
    WX_ORDER,
    Channels,
    Skewed,
    channels,  # noqa: F401 (fixture)
    cli,
    fast_http,
    shop_with_lost_orders,
    store_text,
)

# The backoff before attempts 2, 3 and 4 (fetchers.http: 0.5 s doubling, capped at 8 s).
BACKOFF = [0.5, 1.0, 2.0]
# Every attempt may use its read timeout or its response deadline (overshot by at most one piece of a
# trickled body); setting up the folder and the CLI come on top.
BOUND_SECONDS = MAX_ATTEMPTS * (READ_TIMEOUT + RESPONSE_DEADLINE + 0.25) + 4.0
FAULTS = ("500", "429", "timeout", "reset", "slow_body")
# Every fault against every channel with FULL; by default every fault against WeChat Pay and one each
# against Alipay and Epay (the retry rules are shared, the channels' error paths are not).
PERSISTENT = [("wx", f) for f in FAULTS] + (
    [(c, f) for c in ("ali", "ep") for f in FAULTS] if FULL else [("ali", "slow_body"), ("ep", "reset")])


class Throttled:
    """An API that asks the client to come back in an hour (HTTP 429, Retry-After: 3600)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        return SandboxResponse(429, b"rate limited", {"Retry-After": "3600"})


def prepared(folder: Path, world: Channels) -> tuple[Path, str]:
    """A recon folder whose store exists (an empty first fetch made it); its config and the store as text."""
    shop_with_lost_orders(folder, world)
    config = folder / "recon.toml"
    first = cli(config, "fetch", "--date", DAY_TEXT, "--channel", "pay")
    assert first.exit_code == 0, first.output
    return config, store_text(folder / "recon.duckdb")


def archived(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and ("archive" in p.parts or "quarantine" in p.parts)]


@pytest.mark.parametrize(("channel", "fault"), PERSISTENT)
def test_a_channel_that_keeps_failing_is_tried_four_times_then_given_up(
        channels: Channels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, channel: str, fault: str) -> None:
    waits = fast_http(monkeypatch)
    config, before = prepared(tmp_path, channels)
    channels.server.add_fault(fault, times=1000, path=PREFIX[channel])

    started = time.monotonic()
    result = cli(config, "fetch", "--date", DAY_TEXT, "--channel", channel, "--json")
    elapsed = time.monotonic() - started

    assert result.exit_code == 1, result.output
    assert channels.requests_to(PREFIX[channel]) == MAX_ATTEMPTS
    assert waits == ([1.0] * (MAX_ATTEMPTS - 1) if fault == "429" else BACKOFF)  # Retry-After: 1 honoured
    assert elapsed < BOUND_SECONDS
    [outcome] = json.loads(result.stdout)
    assert outcome["retryable"] and outcome["rows_new"] == 0
    assert f"failed after {MAX_ATTEMPTS} attempt(s)" in outcome["error"]
    assert store_text(tmp_path / "recon.duckdb") == before
    assert archived(tmp_path) == []


@pytest.mark.parametrize("fault", ("500", "429", "reset", "slow_body") if FULL else ("slow_body",))
def test_a_passing_fault_costs_one_more_attempt_and_the_day_is_stored_once(
        channels: Channels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str) -> None:
    # the gzipped bill (464 bytes) trickles in 64-byte pieces for at least 1.4 s: past this deadline, which
    # the good attempts meet with room to spare
    fast_http(monkeypatch, read=5.0, deadline=1.0)
    config, _ = prepared(tmp_path, channels)
    channels.server.add_fault(fault, times=1, path="/wechatpay/v3/billdownload")

    first = cli(config, "fetch", "--date", DAY_TEXT, "--channel", "wx", "--json")
    again = cli(config, "fetch", "--date", DAY_TEXT, "--channel", "wx", "--json")

    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)[0]["rows_new"] == 1
    assert channels.requests_to("/wechatpay/v3/billdownload") == 3  # two for the first fetch, one for the second
    assert again.exit_code == 0 and json.loads(again.stdout)[0]["rows_new"] == 0
    rows = cli(config, "run", "--date", DAY_TEXT, "--channel", "wx", "--no-fetch", "--json")
    assert json.loads(rows.stdout)["counts"] == {"missing_callback": 1}


def test_a_retry_after_beyond_the_cap_is_not_waited_for(channels: Channels, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    waits = fast_http(monkeypatch, read=10.0, deadline=30.0)
    config, before = prepared(tmp_path, channels)
    channels.server.channels["/epay"] = Throttled("/epay")

    result = cli(config, "fetch", "--date", DAY_TEXT, "--channel", "ep")

    assert result.exit_code == 1
    assert channels.requests_to("/epay") == 1 and waits == []
    assert "HTTP 429" in result.stdout and "retry later" in result.stdout
    assert store_text(tmp_path / "recon.duckdb") == before


@pytest.mark.parametrize(("channel", "fault", "first_path", "says"), [
    ("wx", "bad_signature", "/wechatpay/v3/bill/tradebill", "answer signature does not verify"),
    *([("wx", "no_signature", "/wechatpay/v3/bill/tradebill", "answer is not signed")] if FULL else []),
    ("wx", "bad_hash", "/wechatpay/v3/bill/tradebill", "does not match its published SHA1"),
    ("ali", "bad_signature", "/alipay/gateway.do", "signature does not verify"),
    ("ali", "wrong_merchant", "/alipay/gateway.do", "the bill is of merchant 20889999999999990156"),
    *([("wx", "stale_timestamp", "/wechatpay/v3/bill/tradebill", "stale or replayed"),
       ("wx", "wrong_merchant", "/wechatpay/v3/bill/tradebill", "another 商户号"),
       ("ali", "no_signature", "/alipay/gateway.do", "not signed"),
       ("ali", "bad_hash", "/alipay/gateway.do", "unusable"),
       ("ep", "wrong_merchant", "/epay/api.php", "merchant 1001 refused")] if FULL else []),
])
def test_an_answer_that_does_not_verify_is_never_stored(channels: Channels, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch, channel: str, fault: str,
                                                        first_path: str, says: str) -> None:
    fast_http(monkeypatch, read=10.0, deadline=30.0)
    config, before = prepared(tmp_path, channels)
    channels.server.add_fault(fault, times=1000, path=PREFIX[channel])

    result = cli(config, "fetch", "--date", DAY_TEXT, "--channel", channel)

    assert result.exit_code == 1, result.output
    assert says in result.stdout and "(retry later)" not in result.stdout
    assert channels.requests_to(first_path) == 1  # a refused answer is not asked for again
    assert store_text(tmp_path / "recon.duckdb") == before
    assert [p for p in archived(tmp_path) if "archive" in p.parts] == []


@pytest.mark.parametrize(("channel", "fault"), [
    ("wx", "wrong_merchant"), ("ali", "no_signature"),
    *([("wx", "bad_signature"), ("wx", "no_signature"), ("ali", "bad_signature"), ("ep", "wrong_merchant")]
      if FULL else []),
])
def test_recon_query_refuses_an_unverifiable_answer(channels: Channels, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch, channel: str, fault: str) -> None:
    fast_http(monkeypatch, read=10.0, deadline=30.0)
    config, _ = prepared(tmp_path, channels)
    order_no = SHOP_SIDE[channel][1].order_no
    channels.server.add_fault(fault, times=1000, path=PREFIX[channel])

    result = cli(config, "query", order_no, "--channel", channel, "--json")

    assert result.exit_code == 1
    assert result.stdout == ""  # no state is printed from an answer that was refused
    assert result.stderr.startswith(f"error: channel {channel}: ")
    assert channels.requests_to(PREFIX[channel]) == 1


def test_wechat_answers_more_than_five_minutes_off_are_refused(channels: Channels, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A replayed answer carries its old timestamp; one from the future is as suspect (WeChat: ±5 min)."""
    fast_http(monkeypatch, read=10.0, deadline=30.0)
    config, before = prepared(tmp_path, channels)
    for shift in (-301, 301):
        channels.server.channels["/wechatpay"] = Skewed(channels.wx, shift)
        query = cli(config, "query", "WX-LOST-1", "--channel", "wx", "--json")
        fetch = cli(config, "fetch", "--date", DAY_TEXT, "--channel", "wx", "--json")
        assert query.exit_code == 1 and "stale or replayed" in query.stderr, shift
        assert fetch.exit_code == 1 and "stale or replayed" in json.loads(fetch.stdout)[0]["error"], shift
        assert store_text(tmp_path / "recon.duckdb") == before
    for shift, new_rows in ((-299, 1), (299, 0)):  # the second fetch finds the bill already held
        channels.server.channels["/wechatpay"] = Skewed(channels.wx, shift)
        query = cli(config, "query", "WX-LOST-1", "--channel", "wx", "--json")
        fetch = cli(config, "fetch", "--date", DAY_TEXT, "--channel", "wx", "--json")
        assert query.exit_code == 0 and json.loads(query.stdout)[0]["state"] == "paid", (shift, query.output)
        assert fetch.exit_code == 0 and json.loads(fetch.stdout)[0]["rows_new"] == new_rows, shift


def test_a_replayed_answer_about_another_order_is_refused(channels: Channels, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A genuine, fresh, correctly signed answer, but to another question: the order it names decides."""
    fast_http(monkeypatch, read=10.0, deadline=30.0)
    config, _ = prepared(tmp_path, channels)
    genuine: dict[str, SandboxResponse] = {}

    class Replay:
        prefix = "/wechatpay"

        def handle(self, request: SandboxRequest) -> SandboxResponse:
            answer = channels.wx.handle(request)
            return genuine.setdefault("first", answer)

    channels.server.channels["/wechatpay"] = Replay()
    channels.wx.payments = [WX_ORDER, Payment("WX-OTHER-2", WX_ORDER.amount, "4200009", WX_ORDER.paid_at)]
    first = cli(config, "query", "WX-OTHER-2", "--channel", "wx", "--json")
    replayed = cli(config, "query", "WX-LOST-1", "--channel", "wx", "--json")

    assert first.exit_code == 0 and json.loads(first.stdout)[0]["channel_txn_id"] == "4200009"
    assert replayed.exit_code == 1 and "another order" in replayed.stderr and replayed.stdout == ""
