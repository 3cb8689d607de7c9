"""Large files (the store's snapshot, a quarantined statement) are copied by the kernel, whole and exact."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from recon import filecopy
from recon.filecopy import copy_file


def _source(tmp_path: Path, size: int) -> Path:
    path = tmp_path / "store.duckdb"
    path.write_bytes(os.urandom(size))
    return path


def test_a_copy_is_the_file_byte_for_byte_and_replaces_what_was_there(tmp_path: Path) -> None:
    source = _source(tmp_path, 5 * 1024 * 1024 + 17)
    target = tmp_path / "copy"
    target.write_bytes(b"x" * (8 * 1024 * 1024))  # a longer file left from before: nothing of it may remain
    copy_file(source, target)
    assert target.read_bytes() == source.read_bytes()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    copy_file(empty, target)
    assert target.read_bytes() == b""


@pytest.mark.parametrize("refusal", [errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL])
def test_where_the_kernel_cannot_copy_the_file_is_copied_the_usual_way(tmp_path: Path, refusal: int,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    source = _source(tmp_path, 3 * 1024 * 1024)
    target = tmp_path / "copy"
    calls: list[int] = []
    real = os.copy_file_range

    def refuse_after_a_part(src: int, dst: int, count: int) -> int:
        calls.append(count)
        if len(calls) == 1:  # a first part lands, then the file system refuses (a file system that changed?)
            return real(src, dst, 1024 * 1024)
        raise OSError(refusal, os.strerror(refusal))

    monkeypatch.setattr(filecopy.os, "copy_file_range", refuse_after_a_part)
    copy_file(source, target)
    assert len(calls) == 2 and target.read_bytes() == source.read_bytes()


def test_a_failing_disk_is_an_error_not_a_silent_second_try(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(src: int, dst: int, count: int) -> int:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(filecopy.os, "copy_file_range", broken)
    with pytest.raises(OSError) as caught:
        copy_file(_source(tmp_path, 4096), tmp_path / "copy")
    assert caught.value.errno == errno.EIO
