"""``recon init``: write a commented recon.toml."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from recon.cli.common import handled, out
from recon.errors import UsageError

TEMPLATE = resources.files("recon").joinpath("init_template.toml")


@handled
def init_command(
    directory: Annotated[Path, typer.Argument(help="folder to write recon.toml into")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing recon.toml")] = False,
) -> None:
    """Write a commented recon.toml to start from."""
    target = directory / "recon.toml"
    if target.exists() and not force:
        raise UsageError(f"{target} exists; pass --force to overwrite it")
    directory.mkdir(parents=True, exist_ok=True)
    target.write_text(TEMPLATE.read_text(encoding="utf-8"), encoding="utf-8")
    out.print(f"wrote {target}: edit [shop] and [[channels]], then `recon import` and `recon run`")
