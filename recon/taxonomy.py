"""The stable difference codes (DESIGN §4), their default priority and what a person should do."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    code: str
    priority: int | None  # 1 most urgent; None: not an exception
    zh: str
    en: str
    action_zh: str
    action_en: str


CODES: tuple[Code, ...] = (
    Code("matched", None, "已匹配", "matched", "", ""),
    Code("missing_callback", 2, "掉单（渠道已付、店铺未确认）", "missing callback (paid, shop unaware)",
         "补单：确认渠道已付款后完成订单并发货", "complete the order and deliver once the channel confirms payment"),
    Code("paid_not_delivered", 2, "已付未发货", "paid, not delivered",
         "补货后重新发货", "restock, then redeliver the goods"),
    Code("amount_mismatch", 2, "金额不符", "amount mismatch",
         "核对实付金额，补收或退差价", "check what the buyer paid; collect or refund the difference"),
    Code("currency_mismatch", 2, "币种不符", "currency mismatch",
         "核对币种与汇率", "check the currency and the exchange"),
    Code("duplicate_payment", 2, "重复支付", "duplicate payment",
         "退还多付的款项", "refund the extra payment"),
    Code("shop_only", 1, "店铺有、渠道无（疑似伪造或漏单）", "shop only (no channel record)",
         "立即核查：店铺记为已付但渠道无此交易", "investigate now: the shop says paid, the channel has no such payment"),
    Code("channel_only", 3, "渠道有、店铺无", "channel only (no shop order)",
         "人工匹配订单或退款", "match it to an order by hand, or refund it"),
    Code("refund_not_reflected", 2, "退款未同步", "refund not reflected",
         "在店铺中标记退款并收回商品", "mark the refund in the shop and revoke the goods"),
    Code("trade_no_mismatch", 1, "交易号不符", "trade no mismatch",
         "立即核查：店铺记录的交易号与渠道不同", "investigate now: the shop recorded another transaction id"),
    Code("fee_mismatch", 3, "手续费不符", "fee mismatch",
         "与渠道核对费率", "check the fee rate with the channel"),
    Code("pending", 4, "待定（等待次日账单）", "pending (awaiting later records)",
         "无需处理，下次对账自动复核", "nothing to do: the next run checks it again"),
)
# Results-only: an order nobody paid for and no channel record. Counted, never an exception.
UNPAID = Code("unpaid", None, "未支付", "unpaid", "", "")

BY_CODE = {c.code: c for c in (*CODES, UNPAID)}
EXCEPTION_CODES = tuple(c.code for c in CODES if c.priority is not None)
AUTO_REPAIR_CODES = ("missing_callback", "paid_not_delivered")
# Codes that wait for evidence rather than a person.
WAITING_CODES = ("pending",)


def label(code: str, lang: str) -> str:
    c = BY_CODE[code]
    return c.en if lang == "en" else c.zh


def action(code: str, lang: str) -> str:
    c = BY_CODE[code]
    return c.action_en if lang == "en" else c.action_zh
