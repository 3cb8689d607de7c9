"""Writes the bundled sample day (2026-11-20) that `recon demo` reconciles.

Run it only to change the story: `python samples/make_demo.py`. Its outputs are committed.
Each order below is there to show one difference code; the comment says which.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).parent / "demo"
DAY = "2026-11-20"
ALI_ACCOUNT = "20881234567890120156"
WX_MCH = "1601959334"

# (order_sn, pay_id, price, status, trade_no recorded by the shop, created at, type) — dujiaoka rows
ORDERS = [
    ("A1MATCHED0000001", 1, "30.00", 4, "2026112022001400000000000001", "09:12:03", 1),   # matched
    ("A2MATCHED0000002", 1, "68.00", 4, "2026112022001400000000000002", "10:40:11", 1),   # matched
    ("A3PENDINGPAID003", 1, "45.00", 1, "", "11:05:42", 1),                             # missing_callback (status 1)
    ("A4EXPIREDPAID004", 1, "120.00", -1, "", "12:30:00", 1),                           # missing_callback (expired)
    ("A5NOSTOCK0000005", 1, "25.00", 6, "2026112022001400000000000005", "13:01:09", 1),  # paid_not_delivered
    ("A6WRONGAMOUNT006", 1, "99.00", 1, "", "13:45:30", 1),                             # amount_mismatch
    ("A7PAIDTWICE00007", 1, "30.00", 4, "2026112022001400000000000071", "14:02:00", 1),  # duplicate_payment
    ("A8SHOPONLY000008", 1, "88.00", 4, "2026112022001400000000000008", "10:00:00", 1),  # shop_only
    ("A9REFUNDED000009", 1, "50.00", 4, "2026112022001400000000000009", "15:20:00", 1),  # refund_not_reflected
    ("AATRADENO00000AA", 1, "18.00", 4, "2026112022001499999999999999", "16:10:10", 1),  # trade_no_mismatch
    ("ABFEE0000000000B", 1, "100.00", 4, "2026112022001400000000000011", "17:30:45", 1),  # fee_mismatch
    ("ACLATENIGHT0000C", 1, "66.00", 4, "2026112022001400000000000012", "23:10:00", 1),  # pending (grace window)
    ("ADABANDONED000D", 1, "12.00", -1, "", "18:00:00", 1),                             # unpaid: nobody paid
    ("W1MATCHED0000001", 8, "15.00", 4, "4200000001202611200000000001", "08:15:00", 1),  # matched
    ("W2MATCHED0000002", 8, "128.00", 2, "4200000001202611200000000002", "09:30:00", 2),  # matched (manual goods)
    ("W3LOWERCASE00003", 8, "39.90", 1, "", "12:00:00", 1),                             # missing_callback, bill says w3lowercase00003
    ("W4PARTREFUND0004", 8, "60.00", 4, "4200000001202611200000000004", "14:45:00", 1),  # refund_not_reflected (partial)
    ("C1MATCHED0000001", 21, "199.00", 4, "ch_1matched", "10:00:00", 1),                # matched
    ("C2CURRENCY000002", 21, "35.00", 4, "ch_2currency", "11:00:00", 1),                # currency_mismatch
    ("E1MATCHED0000001", 14, "20.00", 4, "2026112010300012345", "10:30:00", 1),         # matched (Epay)
    ("E2LOSTNOTIFY0002", 14, "58.00", 1, "", "15:00:00", 1),                           # missing_callback (Epay)
    ("E3REFUNDED00003", 14, "9.90", 4, "2026112016000054321", "16:00:00", 1),           # refund_not_reflected
]

# Alipay 业务明细 rows: (支付宝交易号, 商户订单号, 业务类型, 完成时间, 订单金额, 退款请求号, 服务费)
ALIPAY = [
    ("2026112022001400000000000001", "A1MATCHED0000001", "交易", "09:12:30", "30.00", "", "-0.18"),
    ("2026112022001400000000000002", "A2MATCHED0000002", "交易", "10:40:50", "68.00", "", "-0.41"),
    ("2026112022001400000000000003", "A3PENDINGPAID003", "交易", "11:06:02", "45.00", "", "-0.27"),
    ("2026112022001400000000000004", "A4EXPIREDPAID004", "交易", "12:49:13", "120.00", "", "-0.72"),
    ("2026112022001400000000000005", "A5NOSTOCK0000005", "交易", "13:01:40", "25.00", "", "-0.15"),
    ("2026112022001400000000000006", "A6WRONGAMOUNT006", "交易", "13:46:00", "9.90", "", "-0.06"),
    ("2026112022001400000000000071", "A7PAIDTWICE00007", "交易", "14:02:20", "30.00", "", "-0.18"),
    ("2026112022001400000000000072", "A7PAIDTWICE00007", "交易", "14:02:41", "30.00", "", "-0.18"),
    ("2026112022001400000000000009", "A9REFUNDED000009", "交易", "15:20:30", "50.00", "", "-0.30"),
    ("2026112022001400000000000009", "A9REFUNDED000009", "退款", "16:00:00", "-50.00", "RF20261120A9", "0.30"),
    ("2026112022001400000000000010", "AATRADENO00000AA", "交易", "16:10:40", "18.00", "", "-0.11"),
    ("2026112022001400000000000011", "ABFEE0000000000B", "交易", "17:31:00", "100.00", "", "-1.00"),
    ("2026112022001400000000000013", "ZZ-NOT-OUR-ORDER", "交易", "19:45:00", "77.00", "", "-0.46"),  # channel_only
]

# WeChat ALL bill rows: (交易时间, 微信订单号, 商户订单号, 交易状态, 应结订单金额, 微信退款单号, 商户退款单号, 退款金额, 退款状态, 手续费)
WECHAT = [
    ("08:15:31", "4200000001202611200000000001", "W1MATCHED0000001", "SUCCESS", "15.00", "0", "0", "0.00", "", "0.09000"),
    ("09:30:40", "4200000001202611200000000002", "W2MATCHED0000002", "SUCCESS", "128.00", "0", "0", "0.00", "", "0.77000"),
    ("12:00:33", "4200000001202611200000000003", "w3lowercase00003", "SUCCESS", "39.90", "0", "0", "0.00", "", "0.24000"),
    ("14:45:30", "4200000001202611200000000004", "W4PARTREFUND0004", "SUCCESS", "60.00", "0", "0", "0.00", "", "0.36000"),
    ("18:20:00", "4200000001202611200000000004", "W4PARTREFUND0004", "REFUND", "0.00", "50300000012026112000000004",
     "RFW4", "20.00", "SUCCESS", "-0.12000"),
    ("21:02:13", "4200000001202611200000000009", "UNKNOWN-WX-0009", "SUCCESS", "5.00", "0", "0", "0.00", "", "0.03000"),  # channel_only
]

# Card processor export (generic csv), split over a morning and a full-day file that overlap.
CARD = [
    ("ch_1matched", "C1MATCHED0000001", "charge", "2026-11-20 10:00:40", "199.00", "CNY", "5.97"),
    ("ch_2currency", "C2CURRENCY000002", "charge", "2026-11-20 11:00:31", "35.00", "USD", "1.05"),
]

GOODS = [(1, "游戏点卡 100 点", 1), (2, "会员代充", 2)]


def shop_sql() -> str:
    out = ["-- The demo shop's day: one order per difference code (see samples/make_demo.py)."]
    out.append("INSERT INTO pays (id, pay_name, pay_check, pay_method, pay_handleroute) VALUES "
               "(1, '支付宝当面付', 'zfbf2f', 2, '/pay/alipay'), (8, '微信扫码', 'wescan', 2, '/pay/wepay'), "
               "(14, '易支付-支付宝', 'alipay', 1, '/pay/yipay'), (21, 'Stripe', 'stripe', 1, 'pay/stripe');")
    for gid, name, kind in GOODS:
        out.append(f"INSERT INTO goods (id, group_id, gd_name, actual_price, type, in_stock) VALUES "
                   f"({gid}, 1, '{name}', '0.00', {kind}, 10);")
    cards = ", ".join(f"(1, 1, 'CARD-{i:04d}-{chr(64 + i) * 4}')" for i in range(1, 9))
    out.append(f"INSERT INTO carmis (goods_id, status, carmi) VALUES {cards};")
    for sn, pay, price, status, trade_no, created, kind in ORDERS:
        goods = 2 if kind == 2 else 1
        out.append(
            "INSERT INTO orders (order_sn, goods_id, title, type, goods_price, total_price, actual_price, email, "
            "pay_id, trade_no, status, created_at, updated_at) VALUES "
            f"('{sn}', {goods}, '{GOODS[goods - 1][1]} x 1', {kind}, '{price}', '{price}', '{price}', "
            f"'buyer+{sn.lower()}@example.com', {pay}, '{trade_no}', {status}, '{DAY} {created}', '{DAY} {created}');"
        )
    return "\n".join(out) + "\n"


def alipay_bill() -> bytes:
    header = ("支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,"
              "订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,"
              "券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注")
    lines = ["#支付宝业务明细查询", f"#账号：[{ALI_ACCOUNT}]",
             "#起始日期：[2026年11月20日 00:00:00]   终止日期：[2026年11月21日 00:00:00]",
             "#-----------------------------------------业务明细列表----------------------------------------", header]
    for txn, order, kind, done, amount, refund_no, fee in ALIPAY:
        lines.append(f"{txn}\t,{order}\t,{kind}\t,游戏点卡,{DAY} {done},{DAY} {done},\t,\t,\t,\t,"
                     f"*三(san***@example.com)\t,{amount},{amount},0.00,0.00,0.00,0.00,0.00,,0.00\t,0.00,"
                     f"{refund_no}\t,{fee},0.00,")
    trades = [Decimal(r[4]) for r in ALIPAY if r[2] == "交易"]
    refunds = [Decimal(r[4]) for r in ALIPAY if r[2] == "退款"]
    lines += ["#-----------------------------------------业务明细列表结束------------------------------------",
              f"#交易合计：{len(trades)}笔，商家实收共{sum(trades):.2f}元，商家优惠共0.00元",
              f"#退款合计：{len(refunds)}笔，商家实收退款共{sum(refunds):.2f}元，商家优惠退款共0.00元",
              "#导出时间：[2026年11月21日 05:46:49]"]
    return ("\n".join(lines) + "\n").encode("gb18030")


def wechat_bill() -> bytes:
    header = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,"
              "应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,"
              "手续费,费率,订单金额,申请退款金额,费率备注")
    lines = [header]
    for at, txn, order, state, paid, wx_refund, mch_refund, refunded, refund_state, fee in WECHAT:
        refund_type = "ORIGINAL" if state == "REFUND" else ""
        lines.append(f"`{DAY} {at},`wx81be3101902f7cb2,`{WX_MCH},`0,`,`{txn},`{order},`oUSER{txn[-4:]},`NATIVE,`{state},"
                     f"`OTHERS,`CNY,`{paid},`0.00,`{wx_refund},`{mch_refund},`{refunded},`0.00,`{refund_type},"
                     f"`{refund_state},`会员, 月卡,`,`{fee},`0.60%,`{paid},`{refunded},`")
    paid = sum(Decimal(r[4]) for r in WECHAT)
    refunded = sum(Decimal(r[7]) for r in WECHAT)
    fees = sum(Decimal(r[9]) for r in WECHAT)
    lines += ["总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额",
              f"`{len(WECHAT)},`{paid:.2f},`{refunded:.2f},`0.00,`{fees:.5f},`{paid:.2f},`{refunded:.2f}"]
    return ("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8")


def card_files() -> tuple[bytes, bytes]:
    header = "id,metadata_order_no,type,created_local,amount,currency,fee"
    rows = [",".join(r) for r in CARD]
    morning = "\n".join([header, rows[0]]) + "\n"
    full = "\n".join([header, *rows]) + "\n"
    return morning.encode(), full.encode()


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    (HERE / "shop.sql").write_text(shop_sql(), encoding="utf-8")
    (HERE / f"{ALI_ACCOUNT}_20261120_业务明细.csv").write_bytes(alipay_bill())
    (HERE / "wechatpay_tradebill_ALL_2026-11-20.csv").write_bytes(wechat_bill())
    morning, full = card_files()
    (HERE / "card_2026-11-20_morning.csv").write_bytes(morning)
    (HERE / "card_2026-11-20_full.csv").write_bytes(full)


if __name__ == "__main__":
    main()
