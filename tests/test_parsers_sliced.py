"""A bill read in many small slices parses exactly as it does in one: same rows, same lines, same errors.

Large bills are parsed a slice at a time (fetchers/chunks.py); the samples are smaller than one slice,
so here the slice is made a few dozen bytes and every sample, every bad-input case and a generated
day in all three native formats must come out the same, row for row and error for error.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from polars.testing import assert_frame_equal

import fetchers.chunks
import recon.importer
from bench.generate import CHANNELS as BENCH_CHANNELS
from bench.generate import generate
from bench.phases import write_config
from fetchers import PARSERS, ParsedStatement
from recon.config import ChannelConfig, load_config
from recon.errors import InputError
from recon.importer import import_file
from recon.lock import store_lock
from recon.store import open_store
from tests.parser_helpers import CHANNELS, PARSEABLE, parse_sample
from tests.test_parsers_errors import CASES

T = TypeVar("T")
# Small enough that every sample is cut into many slices, some inside a preamble, header or footer.
TINY_SLICE = 64


def _parsed_in_slices(monkeypatch: pytest.MonkeyPatch, parse: Callable[[], T]) -> T:
    with monkeypatch.context() as m:
        m.setattr(fetchers.chunks, "CHUNK_BYTES", TINY_SLICE)
        return parse()


def _same(whole: ParsedStatement, sliced: ParsedStatement) -> None:
    assert_frame_equal(whole.rows, sliced.rows)
    assert (whole.period, whole.merchant_id, whole.merchant_line) == (
        sliced.period, sliced.merchant_id, sliced.merchant_line)


@pytest.mark.parametrize("name", list(PARSEABLE))
def test_every_sample_parses_the_same_in_slices(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = parse_sample(name)
    assert whole.rows.height > 0
    _same(whole, _parsed_in_slices(monkeypatch, lambda: parse_sample(name)))


@pytest.mark.parametrize("case_id", list(CASES))
def test_every_bad_input_is_refused_at_the_same_line_in_slices(case_id: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES[case_id]
    path = tmp_path / case.name
    path.write_bytes(case.make())

    def refuse() -> InputError:
        with pytest.raises(InputError) as caught:
            PARSERS[case.kind](path, path.read_bytes(), CHANNELS[case.kind])
        return caught.value

    whole = refuse()
    sliced = _parsed_in_slices(monkeypatch, refuse)
    assert str(sliced) == str(whole)


def test_a_generated_day_in_native_formats_parses_the_same_in_slices(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Alipay GBK with preamble and footer, WeChat with BOM, CRLF and summary, a generic CSV."""
    day = generate(tmp_path, 400)
    config = load_config(write_config(tmp_path, 'kind = "export"\npath = "orders_export.csv"'))
    for channel_id, path in day.statements.items():
        channel = config.channel(channel_id)

        def parse(channel: ChannelConfig = channel, path: Path = path) -> ParsedStatement:
            return PARSERS[channel.kind](path, path.read_bytes(), channel)

        whole = parse()
        assert whole.rows.height > 50, channel_id
        sliced = _parsed_in_slices(monkeypatch, parse)
        _same(whole, sliced)
        assert sliced.rows["line_no"].is_sorted() and sliced.rows["line_no"].n_unique() == sliced.rows.height
    assert set(day.statements) == set(BENCH_CHANNELS)


def test_a_slice_cut_never_splits_a_crlf_line_end() -> None:
    raw = b"a\r\nb\r\n\r\nc\rd\ne"
    for size in range(1, len(raw) + 2):
        lines = [line for part, _ in fetchers.chunks.line_slices(raw, "utf-8", size) for line in part.to_list()]
        assert lines == ["a", "b", "", "c", "d", "e"], size
    firsts = [first for _, first in fetchers.chunks.line_slices(raw, "utf-8", 3)]
    assert firsts == sorted(firsts) and firsts[0] == 0


def test_a_mapped_file_imports_as_a_read_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large bills are mapped and read in slices; stored rows, provenance and the archived copy are unchanged."""
    day = generate(tmp_path / "day", 300)

    def stored(folder: Path, mapped: bool) -> tuple[list[tuple[object, ...]], list[bytes]]:
        folder.mkdir()
        config = load_config(write_config(folder, f'kind = "export"\npath = "{day.shop_export}"'))
        with monkeypatch.context() as m:
            if mapped:
                m.setattr(recon.importer, "MAP_BYTES", 0)
                m.setattr(fetchers.chunks, "CHUNK_BYTES", 4096)
            with store_lock(config.store_path), open_store(config, write=True) as con:
                for channel_id, path in day.statements.items():
                    raw = recon.importer.read_statement(path, config.channel(channel_id).kind)
                    assert isinstance(raw, mmap.mmap) == mapped
                    import_file(con, config, channel_id, path)
                rows = con.execute("SELECT * EXCLUDE (txn_id, import_id) FROM channel_txn "
                                   "ORDER BY channel, line_no").fetchall()
                archived = [Path(p).read_bytes() for (p,) in
                            con.execute("SELECT archive_path FROM imports ORDER BY channel").fetchall()]
        return rows, archived

    read_rows, read_archive = stored(tmp_path / "read", mapped=False)
    mapped_rows, mapped_archive = stored(tmp_path / "mapped", mapped=True)
    assert len(read_rows) > 250
    assert mapped_rows == read_rows
    assert mapped_archive == read_archive == [day.statements[c].read_bytes() for c in sorted(day.statements)]
