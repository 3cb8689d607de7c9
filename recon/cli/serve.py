"""``recon serve``: the finance console on a local address; ``--hash-password`` makes a user's hash."""

from __future__ import annotations

import getpass
import logging
import sys
from typing import Annotated, Any

import typer

from recon.cli.common import handled, load
from recon.config import Config
from recon.errors import UsageError

log = logging.getLogger("recon.web")


def read_new_password() -> str:
    """The password from a prompt (typed twice) or, when stdin is not a terminal, its first line.

    Never from the command line: argv is visible to every user of the machine and kept in shell history.
    """
    from recon.web.auth import MIN_PASSWORD_LENGTH

    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise UsageError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsageError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    return password


def server_config(app: Any, config: Config, host: str | None = None, port: int | None = None) -> Any:
    """The uvicorn settings of the console (also used by the tests, with a socket of their own)."""
    import uvicorn

    web = config.web
    trusted = web.forwarded_allow_ips
    return uvicorn.Config(
        app, host=host or web.host, port=port or web.port, proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None, server_header=False, date_header=True, lifespan="off", ws="none",
        log_config=None, access_log=True, timeout_graceful_shutdown=10,
    )


def _route_server_logs() -> None:
    """uvicorn's own lines (start, stop, access) go where recon's go, in the same format."""
    ours = [h for h in logging.getLogger("recon").handlers if getattr(h, "_recon", False)]
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = list(ours) if name == "uvicorn" else []
        logger.setLevel(logging.INFO)
        logger.propagate = name != "uvicorn"


@handled
def serve_command(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option("--host", help="address to listen on (default: web.host of "
                                                            "recon.toml, else 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option("--port", min=1, max=65535,
                                             help="port (default: web.port of recon.toml, else 8080)")] = None,
    hash_password: Annotated[bool, typer.Option("--hash-password", help="read a password (prompt or stdin) and "
                                                "print its argon2 hash for web.users; serves nothing")] = False,
) -> None:
    """The web console for finance: runs, exceptions, workbook downloads, resolve/ignore with a note.

    Users and roles are in the web section of recon.toml. Reach it from other machines through a TLS proxy.
    """
    if hash_password:
        from recon.web.auth import hash_password as make_hash

        print(make_hash(read_new_password()))
        return
    import uvicorn

    from recon.web.app import create_app

    config = load(ctx)
    app = create_app(config)
    settings = server_config(app, config, host, port)
    _route_server_logs()
    log.warning("recon console on http://%s:%s (%d user(s); stop with Ctrl-C)", settings.host, settings.port,
                len(app.state.users))
    uvicorn.Server(settings).run()
