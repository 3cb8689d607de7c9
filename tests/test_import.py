"""Importing statements: idempotent by content, duplicates recorded, bad files change nothing."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

import recon.importer
from recon.errors import InputError
from tests.scenario import Scenario


def counts(s: Scenario) -> tuple[int, int, int]:
    row = s.query("SELECT (SELECT count(*) FROM imports) AS i, (SELECT count(*) FROM channel_txn) AS t, "
                  "(SELECT count(*) FROM import_duplicates) AS d")[0]
    return row["i"], row["t"], row["d"]


def test_same_file_twice_and_renamed_copy_are_no_ops(scenario: Scenario) -> None:
    path = scenario.statement([{"txn": "T1", "order": "O1", "amount": "10.00"},
                               {"txn": "T2", "order": "O2", "amount": "20.00"}])
    first = scenario.import_(path)
    assert (first.rows_total, first.rows_new, first.already_imported) == (2, 2, False)
    again = scenario.import_(path)
    copy = path.with_name("renamed.csv")
    shutil.copyfile(path, copy)
    renamed = scenario.import_(copy)
    assert again.already_imported and renamed.already_imported
    assert again.import_id == renamed.import_id == first.import_id
    assert counts(scenario) == (1, 2, 0)


@pytest.mark.parametrize("piece", [None, 1], ids=["stored whole", "stored a row at a time"])
def test_overlapping_files_keep_one_row_and_say_which(scenario: Scenario, monkeypatch: pytest.MonkeyPatch,
                                                      piece: int | None) -> None:
    if piece:
        monkeypatch.setattr(recon.importer, "STORE_ROWS", piece)
    morning = scenario.statement([{"txn": "T1", "order": "O1", "amount": "10.00"}], name="morning.csv")
    full = scenario.statement([{"txn": "T1", "order": "O1", "amount": "10.00"},
                               {"txn": "T2", "order": "O2", "amount": "20.00"},
                               {"txn": "T2", "order": "O2", "amount": "20.00"}], name="full.csv")
    scenario.import_(morning)
    outcome = scenario.import_(full)
    assert (outcome.rows_total, outcome.rows_new, outcome.rows_duplicate) == (3, 1, 2)
    assert outcome.duplicates == [(2, "morning.csv:2"), (4, "full.csv:3")]
    assert counts(scenario) == (2, 2, 2)
    kept = scenario.query("SELECT channel_txn_id, source, line_no FROM channel_txn ORDER BY txn_id")
    assert [(r["channel_txn_id"], r["line_no"]) for r in kept] == [("T1", 2), ("T2", 3)]


def test_every_row_carries_provenance_and_the_original_is_archived(scenario: Scenario) -> None:
    path = scenario.statement([{"txn": "T1", "order": "O1", "amount": "10.00"}])
    outcome = scenario.import_(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    row = scenario.query("SELECT source, line_no, import_id FROM channel_txn")[0]
    assert row == {"source": digest, "line_no": 2, "import_id": outcome.import_id}
    archived = Path(scenario.query("SELECT archive_path FROM imports")[0]["archive_path"])
    assert archived.read_bytes() == path.read_bytes()
    assert archived.name == digest


def test_bad_amount_names_file_and_line_and_leaves_store_unchanged(scenario: Scenario) -> None:
    scenario.import_(scenario.statement([{"txn": "T0", "order": "O0", "amount": "1.00"}]))
    before = counts(scenario)
    bad = scenario.statement([{"txn": "T1", "order": "O1", "amount": "10.00"},
                              {"txn": "T2", "order": "O2", "amount": "ten yuan"}], name="bad.csv")
    with pytest.raises(InputError) as caught:
        scenario.import_(bad)
    assert str(caught.value) == f"{bad}:3: amount: 'ten yuan' is not an amount"
    assert counts(scenario) == before


def test_same_file_for_another_channel_is_refused(tmp_path: Path) -> None:
    more = ('\n[[channels]]\nid = "other"\nkind = "csv"\n[channels.mapping]\n'
            'columns = { channel_txn_id = "txn", order_no = "order", amount = "amount", occurred_at = "time" }\n')
    s = Scenario(tmp_path, more_channels=more)
    path = s.statement([{"txn": "T1", "order": "O1", "amount": "10.00"}])
    s.import_(path)
    with pytest.raises(InputError, match=r"already imported for channel 'pay' \(import #1\)"):
        s.import_(path, channel="other")


def test_no_float_column_anywhere_in_the_store(scenario: Scenario) -> None:
    scenario.import_(scenario.statement([{"txn": "T1", "order": "000123", "amount": "12345678901234.01"}]))
    types = scenario.query("SELECT table_name, column_name, data_type FROM information_schema.columns")
    assert not [t for t in types if t["data_type"] in ("FLOAT", "DOUBLE", "REAL")]
    row = scenario.query("SELECT order_no, amount FROM channel_txn")[0]
    assert row["order_no"] == "000123"
    assert str(row["amount"]) == "12345678901234.010000"


def test_an_archive_that_cannot_be_written_leaves_no_import(scenario: Scenario) -> None:
    """The original is copied while the rows are stored; the import commits only with its copy kept."""
    scenario.config.archive_dir.parent.mkdir(parents=True, exist_ok=True)
    scenario.config.archive_dir.write_text("a file where the archive folder should be", encoding="utf-8")
    path = scenario.statement([{"txn": "T1", "order": "O1", "amount": "10.00"}])
    with pytest.raises(OSError):
        scenario.import_(path)
    assert counts(scenario) == (0, 0, 0)
    scenario.config.archive_dir.unlink()
    outcome = scenario.import_(path)
    assert (outcome.rows_new, outcome.already_imported) == (1, False)
    assert counts(scenario) == (1, 1, 0)
