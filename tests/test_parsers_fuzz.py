"""Whatever bytes a parser is handed, the only exception that reaches the user is an InputError."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetchers import PARSERS
from recon.config import ChannelConfig, CsvMapping
from recon.errors import InputError
from tests.parser_helpers import ALIPAY_CSV, ALIPAY_ZIP, WECHAT_ALL, WECHAT_REFUND, sample

CHANNELS = {
    "alipay": ChannelConfig(id="ali", kind="alipay"),
    "wechatpay": ChannelConfig(id="wx", kind="wechatpay"),
    "csv": ChannelConfig(id="bank", kind="csv", mapping=CsvMapping(
        skip_lines=1, footer_markers=["合计"], amount_unit="minor", refunds_written_positive=True,
        columns={"occurred_at": "time", "channel_txn_id": "id", "amount": "amount", "kind": "kind"},
        kind_map={"pay": "payment", "ref": "refund"},
    )),
}
CSV_SAMPLE = (
    "export\ntime,id,amount,kind\n2024-01-01 10:00:00,001,100,pay\n2024-01-01 11:00:00,002,100,ref\n合计,,,\n"
).encode()
SEEDS = {
    "alipay": [sample(ALIPAY_CSV), sample(ALIPAY_ZIP)],
    "wechatpay": [sample(WECHAT_ALL), sample(WECHAT_REFUND)],
    "csv": [CSV_SAMPLE],
}
# Bytes that matter to the formats: separators, padding, markers, line ends, bad encodings.
TOKENS = [b",", b",`", b"`", b"\t", b'"', b"\n", b"\r\n", b"\r", b"#", b"-", b".", b"..", b"-0", b"9" * 30,
          b"\x80\xff", b"\x00", b"\x0c", "\u2028".encode(), "元".encode("gbk"), "笔".encode("gbk"), b"PK\x03\x04"]


def _mutate(seed: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    data = bytearray(seed)
    for position, cut, insert in edits:
        at = position % (len(data) + 1)
        data[at:at + cut] = insert
    return bytes(data)


def _inputs(kind: str) -> st.SearchStrategy[bytes]:
    edit = st.tuples(st.integers(0, 1 << 16), st.integers(0, 40), st.sampled_from(TOKENS) | st.binary(max_size=6))
    mutated = st.builds(_mutate, st.sampled_from(SEEDS[kind]), st.lists(edit, min_size=1, max_size=4))
    as_text = st.text(alphabet=st.sampled_from(list(",`\t\"\n\r#-.0123456789 :总交易单数业务明细列表结束合计笔元")))
    return st.one_of(mutated, st.binary(max_size=300), as_text.map(str.encode))


def _only_input_errors(kind: str, raw: bytes) -> None:
    try:
        PARSERS[kind](Path("fuzz.bin"), raw, CHANNELS[kind])
    except InputError as error:
        assert error.file == "fuzz.bin" and error.problem


FUZZ = settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(raw=_inputs("alipay"))
def test_alipay_raises_only_input_error(raw: bytes) -> None:
    _only_input_errors("alipay", raw)


@FUZZ
@given(raw=_inputs("wechatpay"))
def test_wechatpay_raises_only_input_error(raw: bytes) -> None:
    _only_input_errors("wechatpay", raw)


@FUZZ
@given(raw=_inputs("csv"))
def test_csv_raises_only_input_error(raw: bytes) -> None:
    _only_input_errors("csv", raw)


def test_seeds_parse_unmutated() -> None:
    """The mutations start from valid files, so a rejection above is about the edit, not the seed."""
    for kind, seeds in SEEDS.items():
        for seed in seeds:
            assert PARSERS[kind](Path("seed"), seed, CHANNELS[kind]).rows.height > 0
