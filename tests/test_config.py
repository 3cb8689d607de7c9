"""recon.toml: the DESIGN §8 minimal config works as written; bad values name their key path."""

from __future__ import annotations

import sqlite3
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from recon.config import load_config
from recon.errors import ConfigError
from recon.secrets import Secret, redact
from tests.scenario import SAMPLES

MINIMAL = """\
[store]
path = "recon.duckdb"

[shop]
kind = "sqlite"              # dujiaoka's tables in a SQLite file (the demo shop)
path = "shop.sqlite"
schema = "dujiaoka"
# kind = "dujiaoka"          # the real thing on MySQL/MariaDB
# dsn = "mysql://root@127.0.0.1:3306/shop"   # a DSN with a password must be env:/file:

[[channels]]
id = "ali"
kind = "alipay"              # import-only: no credentials needed until it fetches
shop_pay_ids = [1]           # dujiaoka pays.id values whose orders belong to this channel
auto_repair_max = 500        # yuan; above it a person decides

[[channels]]
id = "wx"
kind = "wechatpay"
shop_pay_ids = [8]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recon.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def shop(tmp_path: Path) -> None:
    con = sqlite3.connect(tmp_path / "shop.sqlite")
    con.executescript((SAMPLES / "dujiaoka_sqlite.sql").read_text(encoding="utf-8"))
    con.close()


def test_design_minimal_config_works_as_written(tmp_path: Path) -> None:
    shop(tmp_path)
    config = load_config(write(tmp_path, MINIMAL))
    assert [c.id for c in config.channels] == ["ali", "wx"]
    assert config.channel("ali").auto_repair_max == Decimal(500)
    assert config.channel("wx").pay_ids == ["8"]
    assert config.channel("ali").zone == "Asia/Shanghai"
    assert config.store_path == tmp_path.resolve() / "recon.duckdb"


def test_init_template_is_a_valid_config(tmp_path: Path) -> None:
    from recon.cli.init import TEMPLATE

    config = load_config(write(tmp_path, TEMPLATE.read_text(encoding="utf-8")))
    assert config.shop.schema_ == "dujiaoka"
    assert config.reports.language == "zh-CN"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('kind = "wechatpay"', 'kind = "wechat"'),
         "channels[1].kind: Input should be 'alipay', 'wechatpay', 'epay', 'usdt_trc20', 'stripe', 'paypal' or 'csv'"),
        (('shop_pay_ids = [8]', 'shop_pay_ids = [8]\ngrace_hours = -1'),
         "channels[1].grace_hours: Input should be greater than or equal to 0"),
        (('auto_repair_max = 500 ', 'auto_repair_max = "lots"'), "channels[0].auto_repair_max: Input should be"),
        (('path = "recon.duckdb"', 'path = "recon.duckdb"\nmemry_limit = "1GB"'),
         "store.memry_limit: unknown key (check the spelling; see `recon init` for every key)"),
        (('schema = "dujiaoka"', 'schema = "dujiaoka"\nzone = "Mars/Olympus"'),
         "shop.zone: unknown time zone 'Mars/Olympus' (expected an IANA name such as Asia/Shanghai)"),
        (('id = "ali"', 'id = "wx"'), "channels: channel id 'wx' is used twice"),
        (('kind = "alipay" ', 'kind = "epay" '),
         "channels[0].credentials: kind epay has no statement files to import; give the credentials it fetches with"),
    ],
)
def test_bad_value_names_its_key_path(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    path = write(tmp_path, MINIMAL.replace(*edit, 1))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: {message}")
    assert caught.value.exit_code == 2


def test_missing_section_and_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[[channels]]\nid = "a"\nkind = "alipay"\n')
    with pytest.raises(ConfigError, match=r"shop: required key is missing"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"does not exist \(create one with `recon init`\)"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "broken.toml"
    bad.write_text("[shop\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_csv_channel_needs_a_mapping_with_amount_and_time(tmp_path: Path) -> None:
    base = MINIMAL + '\n[[channels]]\nid = "bank"\nkind = "csv"\n'
    with pytest.raises(ConfigError, match=r"channels\[2\]: a 'csv' channel needs a \[channels.mapping\] table"):
        load_config(write(tmp_path, base))
    with pytest.raises(ConfigError, match=r"channels\[2\]\.mapping\.columns: must map \['occurred_at'\]"):
        load_config(write(tmp_path, base + '[channels.mapping]\ncolumns = { amount = "金额", order_no = "单号" }\n'))
    with pytest.raises(ConfigError, match=r"channels\[2\]\.mapping\.natural_key: must name canonical columns"):
        load_config(write(tmp_path, base + '[channels.mapping]\nnatural_key = ["id"]\n'
                                           'columns = { amount = "金额", order_no = "单号", occurred_at = "时间" }\n'))


def test_inline_dsn_password_is_refused_without_printing_it(tmp_path: Path) -> None:
    text = MINIMAL.replace('kind = "sqlite"              # dujiaoka',
                           'kind = "sql"\ndsn = "mysql://shop:hunter2secret@db:3306/shop"\n#')
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert str(caught.value).startswith(f"{tmp_path / 'recon.toml'}: shop.dsn: this DSN holds a password")
    assert "hunter2secret" not in str(caught.value)


def test_secret_reference_resolves_late_and_never_prints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = Secret("env:RECON_TEST_TOKEN")
    assert "RECON_TEST_TOKEN" in repr(secret)
    with pytest.raises(ConfigError, match="channels.ali.credentials.key: environment variable RECON_TEST_TOKEN"):
        secret.reveal("channels.ali.credentials.key")
    monkeypatch.setenv("RECON_TEST_TOKEN", "s3cr3t-value")
    assert secret.reveal() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(secret) and "s3cr3t-value" not in str(secret)
    (tmp_path / "key").write_text("from-file\n", encoding="utf-8")
    assert Secret(f"file:{tmp_path / 'key'}").reveal() == "from-file"
    with pytest.raises(ValueError, match="never inline"):
        Secret("plain-text-token")
    assert redact("failed: token s3cr3t-value at mysql://u:pw@h/db", ["s3cr3t-value"]) == \
        "failed: token *** at mysql://u:***@h/db"
