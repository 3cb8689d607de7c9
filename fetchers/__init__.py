"""Channel modules. A new channel is one module and one line in PARSERS and/or FETCHERS.

Entries are "module:attribute" strings, imported on first use, so a channel's signing libraries
are only loaded when that channel is used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from fetchers.base import CANONICAL_SCHEMA, ChannelFetcher, FetchedStatement, ParsedStatement, QueryResult, StatementParser
from fetchers.http import ChannelSession
from recon.config import ChannelConfig
from recon.registry import LazyRegistry


# channel kind → statement-file parser: parse(path, raw, channel) -> ParsedStatement
PARSERS: Mapping[str, StatementParser] = LazyRegistry({
    "alipay": "fetchers.alipay:parse",
    "wechatpay": "fetchers.wechatpay:parse",
    "csv": "fetchers.csv_generic:parse",
    "stripe": "fetchers.stripe:parse_balance_report",
    "paypal": "fetchers.paypal:parse_settlement_report",
})

# channel kind → API client factory: factory(channel, session) -> ChannelFetcher
FETCHERS: Mapping[str, Callable[[ChannelConfig, ChannelSession], ChannelFetcher]] = LazyRegistry({
    "alipay": "fetchers.alipay_api:AlipayFetcher",
    "wechatpay": "fetchers.wechatpay_api:WechatPayFetcher",
    "epay": "fetchers.epay:EpayFetcher",
    "usdt_trc20": "fetchers.usdt_trc20:TronFetcher",
    "stripe": "fetchers.stripe:StripeFetcher",
    "paypal": "fetchers.paypal:PaypalFetcher",
})

__all__ = ["CANONICAL_SCHEMA", "FETCHERS", "PARSERS", "ChannelFetcher", "FetchedStatement", "ParsedStatement",
           "QueryResult", "StatementParser"]
