"""Column headings of the reports in each language (codes themselves are translated by recon.taxonomy)."""

from __future__ import annotations

HEADINGS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "id": "编号", "code": "差异类型", "channel": "渠道", "order_no": "订单号", "channel_txn_id": "渠道交易号",
        "shop_amount": "店铺金额", "channel_amount": "渠道金额", "difference": "差额", "currency": "币种",
        "status": "状态", "priority": "优先级", "business_date": "业务日期", "first_seen": "首次发现",
        "age_days": "天数", "auto_repairable": "可自动补单", "suggested_action": "建议操作", "detail": "说明",
        "count": "笔数", "amount": "金额",
        "summary": "汇总", "exceptions": "异常明细", "run": "对账批次", "channels": "渠道", "match_rate": "匹配率",
        "title": "对账报告", "open_exceptions": "待处理异常", "yes": "是", "no": "否",
        "shop_status": "店铺状态", "shop_channel_txn_id": "店铺记录交易号", "created_at": "下单时间",
        "occurred_at": "渠道时间", "buyer_contact": "买家", "goods_title": "商品",
    },
    "en": {
        "id": "ID", "code": "Code", "channel": "Channel", "order_no": "Order no", "channel_txn_id": "Channel txn id",
        "shop_amount": "Shop amount", "channel_amount": "Channel amount", "difference": "Difference",
        "currency": "Currency", "status": "Status", "priority": "Priority", "business_date": "Business date",
        "first_seen": "First seen", "age_days": "Age (days)", "auto_repairable": "Auto-repairable",
        "suggested_action": "Suggested action", "detail": "Detail", "count": "Count", "amount": "Amount",
        "summary": "Summary", "exceptions": "Exceptions", "run": "Run", "channels": "Channels",
        "match_rate": "Match rate", "title": "Reconciliation report", "open_exceptions": "Open exceptions",
        "yes": "yes", "no": "no",
        "shop_status": "Shop status", "shop_channel_txn_id": "Shop's txn id", "created_at": "Ordered at",
        "occurred_at": "Channel time", "buyer_contact": "Buyer", "goods_title": "Goods",
    },
}


def headings(lang: str) -> dict[str, str]:
    return HEADINGS["en" if lang == "en" else "zh-CN"]
