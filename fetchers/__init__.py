"""Channel modules. A new channel is one module and one line in PARSERS."""

from __future__ import annotations

from fetchers import alipay, csv_generic, wechatpay
from fetchers.base import CANONICAL_SCHEMA, ParsedStatement, StatementParser

# channel kind → statement parser
PARSERS: dict[str, StatementParser] = {
    "alipay": alipay.parse,
    "wechatpay": wechatpay.parse,
    "csv": csv_generic.parse,
}

__all__ = ["CANONICAL_SCHEMA", "PARSERS", "ParsedStatement", "StatementParser"]
