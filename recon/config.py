"""Typed, validated ``recon.toml``. A bad value fails with its key path and what was expected."""

from __future__ import annotations

import re
import tomllib
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from recon.errors import ConfigError
from recon.schedule_config import ScheduleConfig
from recon.secrets import Secret, redact, reject_inline_password
from recon.web.settings import WebConfig

DEFAULT_CONFIG = "recon.toml"
CANONICAL_KINDS = ("payment", "refund", "fee", "adjustment")
CANONICAL_STATUSES = ("success", "refunded", "closed", "pending", "failed")

# Hours after a day boundary during which a record may still land in the next day's bill.
# WeChat and Alipay cut bills at 00:00 Beijing time by success time; a payment at 23:59:59
# can be booked on either side of midnight, so orders created in the last hours wait a day.
DEFAULT_GRACE_HOURS: dict[str, Decimal] = {
    "alipay": Decimal(2),
    "wechatpay": Decimal(2),
    "epay": Decimal(1),
    "usdt_trc20": Decimal(1),
    "stripe": Decimal(24),
    "paypal": Decimal(24),
    "csv": Decimal(1),
}

# epusdt/TokenPay expire an unpaid order after 30 minutes; ten more allow for block confirmation.
DEFAULT_USDT_MATCH_MINUTES = 40
# ISO 4217 codes, and token tickers such as USDT
CURRENCY = r"^[A-Z][A-Z0-9]{2,9}$"
Money = Annotated[Decimal, Field(ge=0, max_digits=20, decimal_places=6)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (expected an IANA name such as Asia/Shanghai)") from None
    return value


class StoreConfig(_Section):
    path: Path = Path("recon.duckdb")
    memory_limit: str | None = Field(default=None, pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")
    archive_dir: Path | None = None
    # After each run a copy of the store is published for readers that arrive while a run holds it.
    snapshot: bool = True


class ShopConfig(_Section):
    """``kind``: ``sqlite`` (a SQLite file at ``path``), ``sql`` (any database at ``dsn``: sqlite://,
    mysql:// or mariadb://, postgresql:// or postgres://, read through ``query`` + ``columns`` or
    ``schema = "dujiaoka"``), ``dujiaoka`` (dujiaoka's own tables on MySQL/MariaDB at ``dsn``),
    ``export`` (the shop's orders table as a bulk export at ``path``: CSV with a header line, ``\\N`` for
    NULL, read with ``schema = "dujiaoka"`` or ``columns`` + ``status_map``)."""

    kind: Literal["sqlite", "sql", "dujiaoka", "http", "export"]
    path: Path | None = None
    schema_: Literal["dujiaoka"] | None = Field(default=None, alias="schema")
    dsn: Secret | str | None = None
    zone: str = "Asia/Shanghai"
    currency: str = Field(default="CNY", pattern=CURRENCY)
    query: str | None = None
    columns: dict[str, str] = {}
    status_map: dict[str, str] = {}
    goods_kind_map: dict[str, str] = {}
    order_no_case_insensitive: bool = False
    notify_base_url: str | None = None
    # kind "sql": statements run in one transaction to complete a paid order, each with bound
    # :order_no, :amount, :channel_txn_id, :now and required to touch exactly one row.
    completion: list[str] = []
    # kind "http": the shop's admin API.
    base_url: str | None = Field(default=None, pattern=r"^https?://")
    token: Secret | None = None  # sent as "Authorization: Bearer …"
    orders_path: str = "/orders"  # GET ?created_from=&created_to= (ISO 8601) → {"orders": [...]}
    order_path: str = "/orders/{order_no}"  # GET → one order object, 404 when absent
    complete_path: str = "/orders/{order_no}/complete"  # POST {amount, channel_txn_id} → 200

    _zone = field_validator("zone")(_check_zone)

    @field_validator("dsn", mode="before")
    @classmethod
    def _dsn(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.startswith(("env:", "file:")):
            return reject_inline_password(value)
        return value

    @model_validator(mode="after")
    def _needs(self) -> ShopConfig:
        if self.kind == "http":
            if self.base_url is None:
                raise ValueError("kind 'http' needs base_url = the shop's admin API")
            if not self.columns or not self.status_map:
                raise ValueError("kind 'http' needs columns (canonical → JSON field) and status_map")
            return self
        if self.kind == "sqlite" and self.path is None:
            raise ValueError("kind 'sqlite' needs path = the SQLite file of the shop")
        if self.kind == "export":
            if self.path is None:
                raise ValueError("kind 'export' needs path = the shop's orders export (CSV with a header line)")
            if self.query:
                raise ValueError("kind 'export' reads a file: give schema = \"dujiaoka\" or columns, not a query")
            if self.schema_ is None and (not self.columns or not self.status_map):
                raise ValueError("kind 'export' needs schema = \"dujiaoka\" or columns and status_map")
            return self
        if self.kind == "dujiaoka":
            if self.dsn is None:
                raise ValueError("kind 'dujiaoka' needs dsn, e.g. dsn = \"mysql://root@127.0.0.1:3306/shop\"")
            if self.query:
                raise ValueError("kind 'dujiaoka' reads dujiaoka's own tables; for your own query use kind = \"sql\"")
            return self
        if self.schema_ is None and not self.query:
            raise ValueError("give schema = \"dujiaoka\" or a query with its columns mapping")
        if self.kind == "sql" and self.dsn is None:
            raise ValueError("kind 'sql' needs dsn")
        return self


class CsvMapping(_Section):
    """How a generic CSV statement maps onto canonical channel rows (header names, never positions)."""

    encoding: str = "utf-8"
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    skip_lines: int = Field(default=0, ge=0)
    footer_markers: list[str] = []
    columns: dict[str, str]
    time_format: str = "%Y-%m-%d %H:%M:%S"
    zone: str | None = None
    amount_unit: Literal["major", "minor"] = "major"
    kind_map: dict[str, Literal["payment", "refund", "fee", "adjustment"]] = {}
    status_map: dict[str, Literal["success", "refunded", "closed", "pending", "failed"]] = {}
    default_kind: Literal["payment", "refund", "fee", "adjustment"] = "payment"
    default_status: Literal["success", "refunded", "closed", "pending", "failed"] = "success"
    refunds_written_positive: bool = False
    natural_key: list[str] = ["kind", "channel_txn_id", "refund_id"]

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: dict[str, str]) -> dict[str, str]:
        known = {"order_no", "channel_txn_id", "refund_id", "amount", "currency", "fee", "status", "kind",
                 "occurred_at", "counterparty"}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown canonical column(s) {unknown}; expected some of {sorted(known)}")
        missing = [c for c in ("amount", "occurred_at") if c not in value]
        if missing:
            raise ValueError(f"must map {missing}")
        if "order_no" not in value and "channel_txn_id" not in value:
            raise ValueError("must map order_no or channel_txn_id")
        return value

    @field_validator("natural_key")
    @classmethod
    def _natural_key(cls, value: list[str]) -> list[str]:
        allowed = {"kind", "order_no", "channel_txn_id", "refund_id", "amount", "currency", "status", "occurred_at",
                   "counterparty"}
        unknown = [k for k in value if k not in allowed]
        if unknown or not value:
            raise ValueError(f"must name canonical columns among {sorted(allowed)} (got {value})")
        return value

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value

    _zone = field_validator("zone")(lambda v: v if v is None else _check_zone(v))


class ChannelConfig(_Section):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    kind: Literal["alipay", "wechatpay", "epay", "usdt_trc20", "stripe", "paypal", "csv"]
    shop_pay_ids: list[int | str] = []
    zone: str = "Asia/Shanghai"
    currency: str = Field(default="CNY", pattern=CURRENCY)
    grace_hours: Decimal | None = Field(default=None, ge=0, le=168)
    tolerance: Money = Decimal(0)
    fee_rate: Decimal | None = Field(default=None, ge=0, lt=1)
    fee_tolerance: Money = Decimal("0.01")
    auto_repair_max: Money | None = None
    merchant_id: str | None = None
    # Records without an order number (on-chain transfers) match an order by exact amount within this
    # many minutes after its creation (the order's expiry plus grace). Default: 40 for usdt_trc20
    # (epusdt and TokenPay expire orders after 30 minutes), off for other kinds.
    amount_match_minutes: int | None = Field(default=None, ge=1, le=10080)
    inbox: Path | None = None
    # Non-secret API identifiers (app_id, mchid, pid, wallet address, serial numbers …), per channel kind.
    api: dict[str, str] = {}
    # Where the channel's API lives; the official host by default, the local sandbox in tests and the demo.
    api_base: str | None = Field(default=None, pattern=r"^https?://")
    credentials: dict[str, Secret] = {}
    mapping: CsvMapping | None = None

    _zone = field_validator("zone")(_check_zone)

    @model_validator(mode="after")
    def _mapping(self) -> ChannelConfig:
        if self.kind == "csv" and self.mapping is None:
            raise ValueError("a 'csv' channel needs a [channels.mapping] table")
        return self

    @property
    def grace(self) -> timedelta:
        hours = self.grace_hours if self.grace_hours is not None else DEFAULT_GRACE_HOURS[self.kind]
        return timedelta(seconds=int(hours * 3600))

    @property
    def amount_match_window(self) -> timedelta | None:
        minutes = self.amount_match_minutes
        if minutes is None and self.kind == "usdt_trc20":
            minutes = DEFAULT_USDT_MATCH_MINUTES
        return timedelta(minutes=minutes) if minutes else None

    @property
    def fetches(self) -> bool:
        """True when the channel pulls its records from an API (credentials or API identifiers given)."""
        return bool(self.credentials or self.api)

    def api_value(self, key: str) -> str:
        """A required ``api`` identifier; a ConfigError naming its key path when absent."""
        value = self.api.get(key)
        if not value:
            raise ConfigError(f"channels.{self.id}.api.{key}", f"a {self.kind} channel needs it to fetch")
        return value

    def secret(self, key: str) -> str:
        """A required credential's value; a ConfigError naming its key path when absent or unreadable."""
        ref = self.credentials.get(key)
        if ref is None:
            raise ConfigError(f"channels.{self.id}.credentials.{key}",
                              f"a {self.kind} channel needs it (as env:VAR or file:PATH)")
        return ref.reveal(f"channels.{self.id}.credentials.{key}")

    def secret_values(self) -> list[str]:
        """Every credential value that can be read now, for redaction of logs and errors."""
        values = []
        for ref in self.credentials.values():
            try:
                values.append(ref.reveal())
            except ConfigError:
                continue
        return values

    @property
    def pay_ids(self) -> list[str]:
        return [str(v) for v in self.shop_pay_ids]


class MailConfig(_Section):
    """SMTP delivery of the workbook to finance (recon's own settings: dujiaoka keeps its SMTP in a cache)."""

    host: str
    port: int = Field(default=465, ge=1, le=65535)
    security: Literal["ssl", "starttls", "none"] = "ssl"
    username: str | None = None
    password: Secret | None = None
    sender: str
    to: list[str] = Field(min_length=1)
    attach: list[Literal["xlsx", "html", "csv", "parquet"]] = ["xlsx"]
    timeout_seconds: float = Field(default=30, gt=0, le=300)


class BuyerMailConfig(MailConfig):
    """SMTP for mailing goods to buyers after a repair (recon's own: dujiaoka keeps its SMTP in a cache).

    Each mail goes to the order's own address, so ``to`` and ``attach`` are not needed here.
    """

    to: list[str] = []
    attach: list[Literal["xlsx", "html", "csv", "parquet"]] = []


class HookConfig(_Section):
    """A shop endpoint that completes a paid order when recon POSTs it (DESIGN §6.4 (c))."""

    url: Secret  # may carry a token
    token: Secret | None = None  # sent as "Authorization: Bearer …"
    success_status: list[int] = [200]
    timeout_seconds: float = Field(default=15, gt=0, le=120)


class RepairConfig(_Section):
    auto_repair: bool = False  # scheduled jobs apply safe repairs; commands still need --apply
    # How an order is completed: "notify" replays a correctly signed payment notify to the shop's own
    # notify URL where the channel uses a shared secret (Epay MD5, epusdt), else the locked DB
    # transaction; "db" always the DB transaction; "hook" POSTs the configured HTTP hook.
    method: Literal["notify", "db", "hook"] = "db"
    hook: HookConfig | None = None
    shop_name: str = "独角数卡"  # {webname} in the buyer mail
    shop_url: str = ""  # {weburl}
    mail: BuyerMailConfig | None = None


class ReportsConfig(_Section):
    out_dir: Path = Path("reports")
    language: Literal["zh-CN", "en"] = "zh-CN"
    formats: list[Literal["xlsx", "html", "csv", "parquet"]] = ["xlsx", "html"]


class WebhookConfig(_Section):
    """One chat or HTTP endpoint told when a run leaves exceptions that need a person."""

    kind: Literal["dingtalk", "wecom", "feishu", "slack", "json"]
    url: Secret  # webhook URLs carry their access token
    secret: Secret | None = None  # DingTalk / Feishu signing secret, when the robot has one


class AlertsConfig(_Section):
    """When to alert and where: open exceptions at or above ``min_priority`` (1 most urgent)."""

    min_priority: int = Field(default=2, ge=1, le=4)
    codes: list[str] = []  # only these codes count; empty: every code
    min_count: int = Field(default=1, ge=1)
    top: int = Field(default=5, ge=0, le=50)  # exceptions listed in the message
    webhooks: list[WebhookConfig] = []
    mail: MailConfig | None = None


class Config(_Section):
    store: StoreConfig = StoreConfig()
    shop: ShopConfig
    channels: list[ChannelConfig] = Field(min_length=1)
    repair: RepairConfig = RepairConfig()
    reports: ReportsConfig = ReportsConfig()
    alerts: AlertsConfig = AlertsConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    web: WebConfig = WebConfig()
    base_dir: Path = Field(default=Path("."), exclude=True)

    @field_validator("channels")
    @classmethod
    def _unique(cls, value: list[ChannelConfig]) -> list[ChannelConfig]:
        seen: set[str] = set()
        for ch in value:
            if ch.id in seen:
                raise ValueError(f"channel id {ch.id!r} is used twice")
            seen.add(ch.id)
        return value

    def resolve(self, path: Path) -> Path:
        """A path from the config, taken relative to the config file's folder."""
        path = path.expanduser()
        return path if path.is_absolute() else self.base_dir / path

    @property
    def store_path(self) -> Path:
        return self.resolve(self.store.path)

    @property
    def archive_dir(self) -> Path:
        if self.store.archive_dir is not None:
            return self.resolve(self.store.archive_dir)
        return self.store_path.parent / "archive"

    def channel(self, channel_id: str) -> ChannelConfig:
        for ch in self.channels:
            if ch.id == channel_id:
                return ch
        known = ", ".join(c.id for c in self.channels)
        raise ConfigError("channels", f"no channel with id {channel_id!r} (configured: {known})")


# Values under these keys are never echoed back in an error, even when invalid.
_SENSITIVE = re.compile(r"dsn|credential|secret|password|token|key", re.IGNORECASE)


def _key_path(loc: tuple[int | str, ...], data: dict[str, Any]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1] = f"{parts[-1]}[{item}]" if parts else f"[{item}]"
        elif item.startswith(("function-", "literal[", "str", "int", "decimal")) or "[" in item:
            continue
        else:
            parts.append(item)
    return ".".join(parts) or "(top level)"


def parse_config(data: dict[str, Any], source: Path | str, base_dir: Path) -> Config:
    """Validate a parsed TOML document; the first problem becomes a ConfigError with its key path."""
    try:
        config = Config.model_validate({**data, "base_dir": base_dir})
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see `recon init` for every key)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        key = _key_path(err["loc"], data)
        if "input" in err and not isinstance(err["input"], dict | list) and not _SENSITIVE.search(key):
            msg = f"{msg} (got {redact(repr(err['input']), [])})"
        raise ConfigError(key, msg, source) from None
    from fetchers import FETCHERS, PARSERS

    for i, ch in enumerate(config.channels):
        if ch.kind not in PARSERS and ch.kind not in FETCHERS:
            raise ConfigError(f"channels[{i}].kind", f"kind {ch.kind!r} is not supported by this version", source)
        if ch.kind not in PARSERS and not ch.fetches:
            raise ConfigError(f"channels[{i}].credentials",
                              f"kind {ch.kind} has no statement files to import; give the credentials it fetches with",
                              source)
    for channel_id in config.schedule.nightly:
        if channel_id not in {c.id for c in config.channels}:
            raise ConfigError(f"schedule.nightly.{channel_id}", "no channel has this id", source)
    return config


def load_config(path: Path) -> Config:
    """Read and validate ``recon.toml``."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("--config", f"{path} does not exist (create one with `recon init`)") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("(file)", f"not valid TOML: {exc}", path) from None
    return parse_config(data, path, path.resolve().parent)
