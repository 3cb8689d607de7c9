"""``recon import``: statement files by hand. The same file twice is a no-op and says so."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recon.cli.common import handled, load, out, print_json
from recon.errors import InputError, ReconError
from recon.fetching import quarantine
from recon.importer import ImportOutcome, PreparedImport, prepare_import, read_statements, store_import
from recon.lock import store_lock
from recon.progress import steps
from recon.store import open_store


@handled
def import_files(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="statement files (csv, txt or the channel's zip)")],
    channel: Annotated[str, typer.Option("--channel", "-c", help="configured channel id")],
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Import statement files. Every file is checked first; if one is bad, none is imported."""
    config = load(ctx)
    kind = config.channel(channel).kind
    # The files are read and hashed from here on, while the store opens.
    reads = read_statements([(path, kind) for path in files])
    with store_lock(config.store_path), open_store(config, write=True) as con:
        # A file named twice (or two copies of one) is one import: the later ones point at the first's place.
        prepared: list[PreparedImport | ImportOutcome | int] = []
        first_of: dict[str, int] = {}
        problems: list[ReconError] = []
        for path, read in zip(steps(files, "checking statements"), reads, strict=True):
            try:
                digest = read.result().digest
                if digest in first_of:
                    prepared.append(first_of[digest])
                    continue
                first_of[digest] = len(prepared)
                prepared.append(prepare_import(con, config, channel, path, read.result()))
            except InputError as exc:
                del read  # a refused file's bytes are not held while its copy is made
                source = path if path.is_file() else None  # a missing file or a folder: an empty copy beside the reason
                kept = quarantine(config, f"{channel}_{path.name}", None if source else b"", source, str(exc),
                                  keep_source=True)
                problems.append(InputError(exc.file, f"{exc.problem} (a copy is kept in {kept.parent})", exc.line))
        if problems:
            for problem in problems[:-1]:
                typer.echo(f"error: {problem}", err=True)
            raise problems[-1]
        outcomes: list[ImportOutcome] = []
        for path, item in zip(files, prepared, strict=True):
            if isinstance(item, int):
                first = outcomes[item]
                outcomes.append(ImportOutcome(str(path), channel, first.sha256, first.import_id, already_imported=True))
            else:
                outcomes.append(item if isinstance(item, ImportOutcome) else store_import(con, config, item))
    if json_out:
        print_json([_as_json(o) for o in outcomes])
        return
    for o in outcomes:
        if o.already_imported:
            out.print(f"{o.file}: already imported (import #{o.import_id}); nothing to do")
            continue
        period = f", covers {o.period[0]}..{o.period[1]}" if o.period else ""
        out.print(f"{o.file}: import #{o.import_id}: {o.rows_total} rows, {o.rows_new} new, "
                  f"{o.rows_duplicate} duplicate{period}")
        for line, of in o.duplicates[:20]:
            out.print(f"  line {line}: duplicate of {of}")
        if len(o.duplicates) > 20:
            out.print(f"  … and {len(o.duplicates) - 20} more (table import_duplicates)")


def _as_json(o: ImportOutcome) -> dict[str, object]:
    return {
        "file": o.file, "channel": o.channel, "sha256": o.sha256, "import_id": o.import_id,
        "already_imported": o.already_imported, "rows_total": o.rows_total, "rows_new": o.rows_new,
        "rows_duplicate": o.rows_duplicate,
        "duplicates": [{"line": line, "duplicate_of": of} for line, of in o.duplicates],
        "period": [o.period[0].isoformat(), o.period[1].isoformat()] if o.period else None,
    }
