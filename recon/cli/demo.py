"""``recon demo``: the whole job on the bundled sample day, offline."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from recon.cli.common import handled, out
from recon.cli.fetch import print_fetch
from recon.cli.summary import print_summary
from recon.demo import run_demo


@handled
def demo_command(
    workdir: Annotated[Path | None, typer.Option("--workdir", help="folder for the demo (default: a new one here)")]
    = None,
) -> None:
    """Reconcile the bundled sample day and write its reports."""
    folder = workdir or Path(tempfile.mkdtemp(prefix="recon-demo-", dir="."))
    outcomes, summary, data = run_demo(folder)
    out.print(f"demo folder: {folder}")
    for o in outcomes:
        name = Path(o.file).name
        if o.already_imported:
            out.print(f"  {name}: already imported")
        else:
            dupes = "".join(f"\n    line {line}: duplicate of {of}" for line, of in o.duplicates)
            out.print(f"  {name}: {o.rows_total} rows, {o.rows_new} new, {o.rows_duplicate} duplicate{dupes}")
    print_fetch(summary.fetch)
    print_summary(summary, data, "zh-CN")
    out.print(f"next: recon --config {folder / 'recon.toml'} exceptions list")
