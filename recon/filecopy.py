"""Copying a large file within one file system without reading it through Python."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

# What copy_file_range answers where it cannot serve a copy: a kernel without the call (ENOSYS), a sandbox that
# forbids it (EPERM), another file system (EXDEV), one that does not support it (EINVAL, EOPNOTSUPP). Then the
# file is copied the usual way.
UNSUPPORTED = frozenset({errno.ENOSYS, errno.EXDEV, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM})


def copy_file(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` (replaced if it exists) by the kernel's copy_file_range.

    Where the file system shares blocks (XFS, btrfs, bcachefs, ZFS block cloning) the copy is made by reference:
    it takes no time and no space until one of the two files changes. A store of 1.2 GiB, copied on XFS: 0.2-0.7 ms
    and no space against 6 s and 1.2 GB. Elsewhere (ext4) the kernel copies the bytes, as shutil would.
    """
    if not hasattr(os, "copy_file_range"):
        shutil.copyfile(source, target)
        return
    with open(source, "rb") as src, open(target, "wb") as dst:
        size = os.fstat(src.fileno()).st_size
        copied = 0
        try:
            while copied < size:
                step = os.copy_file_range(src.fileno(), dst.fileno(), size - copied)
                if step == 0:  # the end came early (the file shrank): copy what is there the usual way
                    break
                copied += step
        except OSError as exc:
            if exc.errno not in UNSUPPORTED:
                raise
        else:
            if copied == size:
                return
    shutil.copyfile(source, target)
