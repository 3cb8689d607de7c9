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
        # workbook (reports/xlsx*.py)
        "zone": "时区", "started_at": "开始时间", "finished_at": "结束时间", "total": "合计",
        "by_priority": "待处理异常（按优先级）", "by_channel_code": "各渠道差异笔数与金额",
        "repairs": "补单记录", "repairs_done": "已执行补单", "no_repairs": "本批次无补单记录",
        "repair_id": "补单编号", "exception_id": "异常编号", "shop": "店铺", "action": "操作",
        "repair_state": "执行状态", "actor": "执行人", "reason": "原因", "repair_at": "发起时间",
        "updated_at": "更新时间", "idempotency_key": "幂等键",
        "trend": "趋势", "trend_title": "最近 {n} 次对账", "exceptions_per_code": "各类异常笔数",
        "sheet": "工作表", "no_open_exceptions": "没有待处理异常",
        "continued_on": "已达 Excel 行数上限，续见工作表「{sheet}」",
        "continued_from": "接工作表「{sheet}」",
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
        # workbook (reports/xlsx*.py)
        "zone": "Time zone", "started_at": "Started at", "finished_at": "Finished at", "total": "Total",
        "by_priority": "Open exceptions by priority", "by_channel_code": "Counts and amounts per channel and code",
        "repairs": "Repairs", "repairs_done": "Repairs done", "no_repairs": "No repairs in this run",
        "repair_id": "Repair id", "exception_id": "Exception id", "shop": "Shop", "action": "Action",
        "repair_state": "State", "actor": "Actor", "reason": "Reason", "repair_at": "Started at",
        "updated_at": "Updated at", "idempotency_key": "Idempotency key",
        "trend": "Trend", "trend_title": "Last {n} runs", "exceptions_per_code": "Exceptions per code",
        "sheet": "Sheet", "no_open_exceptions": "No open exceptions",
        "continued_on": "Excel row limit reached: continued on sheet '{sheet}'",
        "continued_from": "Continued from sheet '{sheet}'",
    },
}


def headings(lang: str) -> dict[str, str]:
    """The headings of ``lang``; anything but "en" gets the default zh-CN."""
    return HEADINGS["en" if lang == "en" else "zh-CN"]
