"""Report files for download: only regular files inside the report folder, only report formats.

A requested name is refused before the file system is asked when it is absolute, has a ``..``, ``.``
or hidden part (temporary files of atomic writes start with a dot), a backslash or a NUL; what is
left is resolved (symlinks followed) and must still lie inside the folder.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from recon.web.auth import requires

CONTENT_TYPES = {
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".html": "text/html; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".parquet": "application/vnd.apache.parquet",
}
# A downloaded report opened in the browser must not run as part of the console.
DOWNLOAD_CSP = "sandbox; default-src 'none'"


def attachment(name: str, ascii_name: str | None = None) -> dict[str, str]:
    """Headers of a download named ``name``: the UTF-8 name (RFC 5987) and, for old clients, an ASCII one
    (``ascii_name``, or ``name`` with every other character replaced)."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_"
                       for c in ascii_name or name)
    return {
        "content-disposition": f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}",
        "content-security-policy": DOWNLOAD_CSP,
        "x-content-type-options": "nosniff",
        "cache-control": "private, no-store",
    }


def report_file(folder: Path, requested: str) -> Path | None:
    """The file ``requested`` names inside ``folder``, or None when it is not a report file there."""
    if not requested or "\\" in requested or "\x00" in requested:
        return None
    relative = PurePosixPath(requested)
    if relative.is_absolute() or any(part in ("..", ".") or part.startswith(".") for part in relative.parts):
        return None
    if relative.suffix.lower() not in CONTENT_TYPES:
        return None
    root = folder.resolve()
    try:
        real = (root / relative).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not real.is_relative_to(root) or not real.is_file() or real.suffix.lower() not in CONTENT_TYPES:
        return None
    return real


@requires("download")
async def download(request: Request) -> Response:
    requested = request.path_params["name"]
    path = report_file(request.app.state.reports_dir, requested)
    if path is None:
        raise HTTPException(404, "no such report file")
    return FileResponse(path, media_type=CONTENT_TYPES[path.suffix.lower()],
                        headers=attachment(PurePosixPath(requested).name))


routes = [Route("/reports/{name:path}", download)]
