"""The repair journal, newest first, read-only (repairs are planned and applied by `recon repair`,
the scheduler, or an operator's redelivery)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from recon.ledger_views import rows_of
from recon.web.auth import requires
from recon.web.pages.params import int_param, page_link, text_param
from recon.web.render import page
from recon.web.store_access import Source, StoreAccess

_SQL = """
SELECT repair_id, exception_id, shop, order_no, channel_txn_id, action, state, actor, reason, created_at,
       updated_at, detail
FROM repairs WHERE ($order IS NULL OR upper(order_no) = upper($order))
ORDER BY repair_id DESC LIMIT $limit OFFSET $offset
"""


@dataclass(frozen=True)
class RepairsView:
    rows: list[dict[str, Any]]
    total: int
    source: Source


def detail_text(detail: str | None) -> str:
    """The journal keeps a JSON record ({"detail": …, "cards_delivered": n}); people read its sentence."""
    if not detail:
        return ""
    try:
        record = json.loads(detail)
    except ValueError:
        return detail
    if isinstance(record, dict) and "detail" in record:
        cards = record.get("cards_delivered")
        return f"{record['detail']}" + (f" (cards: {cards})" if cards else "")
    return detail


def _load(store: StoreAccess, order: str | None, size: int, page_no: int) -> RepairsView:
    with store.reading() as (con, source):
        rows = rows_of(con.execute(_SQL, {"order": order, "limit": size, "offset": (page_no - 1) * size}))
        [(total,)] = con.execute("SELECT count(*) FROM repairs WHERE ($order IS NULL OR upper(order_no) = "
                                 "upper($order))", {"order": order}).fetchall()
    for row in rows:
        row["detail"] = detail_text(row["detail"])
    return RepairsView(rows, int(total), source)


@requires("view")
async def repairs_page(request: Request) -> Response:
    state = request.app.state
    order = text_param(request, "order_no", 128)
    page_no = int_param(request, "page", 1)
    size = state.config.web.page_size
    view = await run_in_threadpool(_load, state.store, order, size, page_no)
    request.state.source = view.source
    return page(request, "repairs.html.j2", title=state.text["repairs_title"], view=view, order_no=order or "",
                page_no=page_no, pages=max(1, -(-view.total // size)), link=page_link(request))


routes = [Route("/repairs", repairs_page)]
