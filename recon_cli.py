"""The ``recon`` command line (typer). One module per command group under recon/cli/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recon.cli import demo, exceptions, fetch, imports, init, jobs, repair, run, serve
from recon.logs import setup_logging

app = typer.Typer(
    name="recon",
    help="Reconcile shop orders against payment channels; find lost payments (掉单); explain every cent.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", envvar="RECON_CONFIG",
                                                help="recon.toml to use (default ./recon.toml)")] = None,
    log_json: Annotated[bool, typer.Option("--log-json", envvar="RECON_LOG_JSON",
                                           help="log one JSON object per line on stderr (cron, log shippers)")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log every step on stderr")] = False,
) -> None:
    ctx.obj = {"config": config}
    ctx.obj["log_json"] = log_json
    setup_logging(log_json, verbose)


app.command("demo")(demo.demo_command)
app.command("init")(init.init_command)
app.command("import")(imports.import_files)
app.command("fetch")(fetch.fetch_command)
app.command("query")(fetch.query_command)
app.command("run")(run.run_command)
app.command("report")(run.report_command)
app.command("repair")(repair.repair_command)
app.command("redeliver")(repair.redeliver_command)
app.command("sweep")(jobs.sweep_command)
app.command("schedule")(jobs.schedule_command)
app.command("jobs")(jobs.jobs_command)
app.command("serve")(serve.serve_command)
app.add_typer(exceptions.app, name="exceptions")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
