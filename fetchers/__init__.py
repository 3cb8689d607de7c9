"""Channel modules. A new channel is one module and one line in PARSERS and/or FETCHERS.

Entries are "module:attribute" strings, imported on first use, so a channel's signing libraries
are only loaded when that channel is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from fetchers.base import CANONICAL_SCHEMA, ChannelFetcher, FetchedStatement, ParsedStatement, QueryResult, StatementParser
from fetchers.http import ChannelSession
from recon.config import ChannelConfig


class _Registry(Mapping[str, Any]):
    """kind → object named by a "module:attribute" string, resolved lazily."""

    def __init__(self, entries: dict[str, str]) -> None:
        self._entries = entries

    def __getitem__(self, kind: str) -> Any:
        module, _, name = self._entries[kind].partition(":")
        return getattr(importlib.import_module(module), name)

    def __contains__(self, kind: object) -> bool:
        return kind in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


# channel kind → statement-file parser: parse(path, raw, channel) -> ParsedStatement
PARSERS: Mapping[str, StatementParser] = _Registry({
    "alipay": "fetchers.alipay:parse",
    "wechatpay": "fetchers.wechatpay:parse",
    "csv": "fetchers.csv_generic:parse",
    "stripe": "fetchers.stripe:parse_balance_report",
    "paypal": "fetchers.paypal:parse_settlement_report",
})

# channel kind → API client factory: factory(channel, session) -> ChannelFetcher
FETCHERS: Mapping[str, Callable[[ChannelConfig, ChannelSession], ChannelFetcher]] = _Registry({
    "alipay": "fetchers.alipay_api:AlipayFetcher",
    "wechatpay": "fetchers.wechatpay_api:WechatPayFetcher",
    "epay": "fetchers.epay:EpayFetcher",
    "usdt_trc20": "fetchers.usdt_trc20:TronFetcher",
    "stripe": "fetchers.stripe:StripeFetcher",
    "paypal": "fetchers.paypal:PaypalFetcher",
})

__all__ = ["CANONICAL_SCHEMA", "FETCHERS", "PARSERS", "ChannelFetcher", "FetchedStatement", "ParsedStatement",
           "QueryResult", "StatementParser"]
