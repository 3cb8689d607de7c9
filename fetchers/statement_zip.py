"""Opening zipped bills safely: GBK entry names without the UTF-8 flag, and a cap against zip bombs."""

from __future__ import annotations

import io
import lzma
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO

from recon.errors import InputError

# Zip flag bit 11 says the entry name is UTF-8; Alipay leaves it unset and writes GBK names,
# which zipfile then decodes as cp437.
UTF8_NAME_FLAG = 0x800
# No real day bill comes near this; a larger entry is treated as hostile.
MAX_ENTRY_BYTES = 1 << 30
MAX_RATIO = 200
READ_CHUNK = 1 << 20
# What zipfile lets escape from a damaged archive besides BadZipFile: corrupt deflate/lzma streams raise
# the codec's own error, an unknown compression method NotImplementedError, bad offsets ValueError.
_DAMAGE = (zipfile.BadZipFile, EOFError, OSError, RuntimeError, ValueError, NotImplementedError, zlib.error,
           lzma.LZMAError)


def entry_name(info: zipfile.ZipInfo) -> str:
    """The entry's real name, undoing cp437 mojibake of GBK names."""
    if info.flag_bits & UTF8_NAME_FLAG:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("gb18030")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return info.filename


def _read_bounded(stream: IO[bytes]) -> bytes:
    """The entry's bytes, holding one copy of them at most.

    zipfile inflates as much as one ``read(n)`` asks for before cutting it to the declared size, and zlib
    assembles a large result from blocks (a second copy): a lying header would cost the whole bomb. Small reads
    into a BytesIO, whose ``getvalue`` hands over its buffer without copying, keep the peak near the entry's size.
    """
    out = io.BytesIO()
    while chunk := stream.read(READ_CHUNK):
        out.write(chunk)
        if out.tell() > MAX_ENTRY_BYTES:
            break
    return out.getvalue()


def read_entry(path: Path, raw: bytes, choose: Callable[[str], bool]) -> tuple[str, bytes]:
    """Read the single entry whose real name ``choose`` accepts."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
        infos = archive.infolist()
    except _DAMAGE as exc:
        raise InputError(path, f"not a readable zip archive ({exc})") from None
    names = {entry_name(i): i for i in infos}
    picked = [n for n in names if choose(n)]
    if len(picked) != 1:
        raise InputError(path, f"expected one statement entry in the zip, found {len(picked)}: {sorted(names)}")
    info = names[picked[0]]
    if info.file_size > MAX_ENTRY_BYTES or info.file_size > MAX_RATIO * max(info.compress_size, 1) + (1 << 20):
        raise InputError(path, f"zip entry {picked[0]!r} would expand to {info.file_size} bytes: refused")
    try:
        with archive.open(info) as stream:
            data = _read_bounded(stream)
    except _DAMAGE as exc:
        raise InputError(path, f"zip entry {picked[0]!r} is damaged ({exc})") from None
    if len(data) > MAX_ENTRY_BYTES:
        raise InputError(path, f"zip entry {picked[0]!r} is larger than {MAX_ENTRY_BYTES} bytes: refused")
    return picked[0], data
