"""A synthetic business day with seeded differences and the counts they must produce.

The shop is dujiaoka: its ``orders`` table as a bulk export (CSV with a header, ``\\N`` for NULL, as
``SELECT … INTO OUTFILE`` or the admin's export write it), and optionally the same rows in MariaDB. The
orders are split across three channels by dujiaoka ``pay_id``, each with a statement in its native
format: an Alipay 业务明细 bill (GBK, preamble, footer totals), a WeChat Pay trade bill (backtick cells,
summary block) and a generic CSV. Vectorised with polars: generating 1 M orders takes seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl

DAY = "2026-11-20"  # the first business day generated; day k of a run of days is DAY + k
# share of orders seeded with each difference (the rest match)
SEEDED = {"missing_callback": 0.02, "shop_only": 0.01, "amount_mismatch": 0.01, "channel_only": 0.01}
# channel id → (dujiaoka pay_id, share of the orders); shares add up to 1
CHANNELS = {"alipay": (1, 0.5), "wechat": (2, 0.3), "pay": (3, 0.2)}
ALIPAY_ACCOUNT = "20880211096256330156"
WECHAT_MCHID = "1601959334"
NULL = r"\N"  # MySQL's NULL in SELECT … INTO OUTFILE / mysqldump --tab output

EXPORT_COLUMNS = ("id", "order_sn", "goods_id", "coupon_id", "title", "type", "goods_price", "buy_amount",
                  "coupon_discount_price", "wholesale_discount_price", "total_price", "actual_price", "search_pwd",
                  "email", "info", "pay_id", "buy_ip", "trade_no", "status", "coupon_ret_back", "created_at",
                  "updated_at", "deleted_at")
ALIPAY_HEADER = ("支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,"
                 "订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,"
                 "券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注")
WECHAT_HEADER = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
                 "货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,"
                 "商户数据包,手续费,费率,订单金额,申请退款金额,费率备注")


@dataclass(frozen=True)
class Day:
    shop_export: Path
    statements: dict[str, Path]  # channel id → statement file
    expected: dict[str, int]
    orders: int  # rows in the shop export
    business_date: date


def generate(folder: Path, n: int, seed: int = 7, day_index: int = 0) -> Day:
    """Write ``n`` orders of business day ``DAY + day_index``: the shop's bulk export and one statement per
    channel. Days of one seed have order numbers and transaction ids of their own (day k numbers from k * n)."""
    folder.mkdir(parents=True, exist_ok=True)
    day = date.fromisoformat(DAY) + timedelta(days=day_index)
    frame = _orders(n, seed, day, day_index * n)
    shop = frame.filter(pl.col("code") != "channel_only")
    shop_export = folder / "orders_export.csv"
    _export(shop).write_csv(shop_export, null_value=NULL)
    statements = {}
    paid = frame.filter(pl.col("code") != "shop_only")
    for channel, (pay_id, _) in CHANNELS.items():
        rows = paid.filter(pl.col("pay_id") == pay_id)
        statements[channel] = {"alipay": _alipay, "wechat": _wechat, "pay": _generic}[channel](folder, rows, day)
    expected = {k: int(v) for k, v in frame["code"].value_counts().iter_rows()}
    return Day(shop_export, statements, expected, shop.height, day)


def _orders(n: int, seed: int, day: date, first: int) -> pl.DataFrame:
    """One row per order with its seeded code, pay_id, price and the amount the channel reports; ``i``, the
    order's number, runs from ``first``."""
    idx = pl.int_range(first, first + n, eager=True).alias("i")
    frame = pl.DataFrame(idx).with_columns(
        u=pl.col("i").hash(seed) % 10_000 / 10_000,
        v=pl.col("i").hash(seed + 2) % 10_000 / 10_000,
        order_sn=pl.format("B{}", pl.col("i").cast(pl.String).str.zfill(15)),
        cents=(pl.col("i").hash(seed + 1) % 50_000 + 100),
        second=((pl.col("i") - first) * 79_000 // max(n, 1)),
    )
    edges, code = 0.0, pl.lit("matched")
    for name, share in SEEDED.items():
        code = pl.when((pl.col("u") >= edges) & (pl.col("u") < edges + share)).then(pl.lit(name)).otherwise(code)
        edges += share
    edges, pay_id = 0.0, pl.lit(0)
    for pid, share in CHANNELS.values():
        pay_id = pl.when((pl.col("v") >= edges) & (pl.col("v") < edges + share)).then(pl.lit(pid)).otherwise(pay_id)
        edges += share
    paid = pl.col("cents") + pl.when(pl.col("code") == "amount_mismatch").then(1).otherwise(0)
    return frame.with_columns(code=code, pay_id=pay_id).with_columns(
        price=_yuan(pl.col("cents")),
        paid=_yuan(paid),
        created=pl.lit(f"{day} 00:00:00").str.strptime(pl.Datetime("us")) + pl.duration(seconds=pl.col("second")),
        trade_no=pl.format("4200{}", pl.col("i").cast(pl.String).str.zfill(24)),
        channel_order=pl.when(pl.col("code") == "channel_only").then(pl.format("X{}", pl.col("i")))
        .otherwise("order_sn"),
    ).with_columns(paid_time=(pl.col("created") + pl.duration(seconds=20)).dt.strftime("%Y-%m-%d %H:%M:%S"))


def _yuan(cents: pl.Expr) -> pl.Expr:
    return (cents // 100).cast(pl.String) + "." + (cents % 100).cast(pl.String).str.zfill(2)


def _export(shop: pl.DataFrame) -> pl.DataFrame:
    """dujiaoka ``orders`` rows, every column of the table, as its bulk export holds them."""
    unpaid = pl.col("code") == "missing_callback"
    created = pl.col("created").dt.strftime("%Y-%m-%d %H:%M:%S")
    return shop.select(
        id=pl.col("i") + 1, order_sn="order_sn", goods_id=pl.lit(1), coupon_id=pl.lit(0), title=pl.lit("bench 卡密"),
        type=pl.lit(1), goods_price="price", buy_amount=pl.lit(1), coupon_discount_price=pl.lit("0.00"),
        wholesale_discount_price=pl.lit("0.00"), total_price="price", actual_price="price", search_pwd=pl.lit(""),
        email=pl.format("b{}@example.com", pl.col("i")), info=pl.lit(NULL), pay_id="pay_id",
        buy_ip=pl.lit("127.0.0.1"), trade_no=pl.when(unpaid).then(pl.lit("")).otherwise("trade_no"),
        status=pl.when(unpaid).then(1).otherwise(4), coupon_ret_back=pl.lit(0), created_at=created,
        updated_at=pl.when(unpaid).then(created).otherwise("paid_time"), deleted_at=pl.lit(None, pl.String),
    )


def _alipay(folder: Path, rows: pl.DataFrame, day: date) -> Path:
    """An Alipay 业务明细 bill: GBK, '#' preamble and footer, TAB-padded ID cells, totals that add up."""
    body = rows.select(pl.concat_str([
        pl.col("trade_no") + "\t", pl.col("channel_order") + "\t", pl.lit("交易\t"), pl.lit("卡密"),
        pl.col("paid_time"), pl.col("paid_time"), pl.lit("\t"), pl.lit("\t"), pl.lit("\t"), pl.lit("\t"),
        pl.lit("*买家(138****0000)\t"), pl.col("paid"), pl.col("paid"), *[pl.lit("0.00")] * 5, pl.lit(""),
        pl.lit("0.00\t"), pl.lit("0.00"), pl.lit("\t"), pl.lit("0.00"), pl.lit("0.00"), pl.lit(""),
    ], separator=",").alias("line")).to_series()
    total = rows.select(pl.col("paid").cast(pl.Decimal(20, 2)).sum()).item()
    text = "\n".join([
        "#支付宝业务明细查询", f"#账号：[{ALIPAY_ACCOUNT}]",
        f"#起始日期：[{_cn(day)} 00:00:00]   终止日期：[{_cn(day + timedelta(days=1))} 00:00:00]",
        "#-----------------------------------------业务明细列表----------------------------------------",
        ALIPAY_HEADER, *([body.str.join("\n").item()] if rows.height else []),
        "#-----------------------------------------业务明细列表结束------------------------------------",
        f"#交易合计：{rows.height}笔，商家实收共{total or 0:.2f}元，商家优惠共0.00元",
        "#退款合计：0笔，商家实收退款共0.00元，商家优惠退款共0.00元",
        f"#导出时间：[{_cn(day + timedelta(days=1))} 05:46:49]", "",
    ])
    path = folder / f"{ALIPAY_ACCOUNT}_{day:%Y%m%d}_业务明细.csv"
    path.write_bytes(text.encode("gbk"))
    return path


def _cn(day: date) -> str:
    return f"{day.year}年{day.month:02d}月{day.day:02d}日"


def _wechat(folder: Path, rows: pl.DataFrame, day: date) -> Path:
    """A WeChat Pay v3 ALL trade bill: UTF-8 with BOM, CRLF, every cell led by a backtick, a summary block."""
    cells = [pl.col("paid_time"), pl.lit("wx81be3101902f7cb2"), pl.lit(WECHAT_MCHID), pl.lit("0"), pl.lit(""),
             pl.col("trade_no"), pl.col("channel_order"), pl.lit("ofyak5qR_1wYsC99CsWA6R9MJazA"), pl.lit("NATIVE"),
             pl.lit("SUCCESS"), pl.lit("OTHERS"), pl.lit("CNY"), pl.col("paid"), pl.lit("0.00"), pl.lit("0"),
             pl.lit("0"), pl.lit("0.00"), pl.lit("0.00"), pl.lit(""), pl.lit(""), pl.lit("卡密"), pl.lit(""),
             pl.lit("0.00000"), pl.lit("0.60%"), pl.col("paid"), pl.lit("0.00"), pl.lit("")]
    body = rows.select(pl.concat_str([pl.lit("`") + c for c in cells], separator=",").alias("line")).to_series()
    total = rows.select(pl.col("paid").cast(pl.Decimal(20, 2)).sum()).item() or 0
    text = "\r\n".join([
        "\ufeff" + WECHAT_HEADER, *([body.str.join("\r\n").item()] if rows.height else []),
        "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额",
        f"`{rows.height},`{total:.2f},`0.00,`0.00,`0.00000,`{total:.2f},`0.00", "",
    ])
    path = folder / f"wechat_tradebill_ALL_{day}.csv"
    path.write_bytes(text.encode("utf-8"))
    return path


def _generic(folder: Path, rows: pl.DataFrame, day: date) -> Path:
    """A plain CSV statement described by a [channels.mapping] table."""
    path = folder / "statement.csv"
    rows.select(txn="trade_no", order="channel_order", time="paid_time", amount="paid").write_csv(path)
    return path
