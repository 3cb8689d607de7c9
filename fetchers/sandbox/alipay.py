"""The Alipay gateway and bill host of the sandbox, with real RSA2 signatures both ways.

Serves ``POST /alipay/gateway.do`` (form, or query string) for ``alipay.data.dataservice.bill.downloadurl.query``
and ``alipay.trade.query``, and the bill link ``GET /alipay/downloadBillFile.resource`` that the former
hands out (valid 30 s). The bill is built from the sandbox's payments for the day asked, in the layout
of reference/channel-formats.md §1.2: a zip with GBK entry names (UTF-8 flag clear) holding the GBK
业务明细 detail and 业务明细(汇总) summary, ``#`` preamble, list markers, TAB-padded cells, （元） headers
and footer totals. A day without any row answers ``isp.bill_not_exist``, as Alipay does.

Faults (``Sandbox.add_fault``): ``bad_signature``, ``no_signature`` (answers), ``not_ready`` (bill_not_exist
although the day has rows), ``foreign_host`` (the link points at 127.0.0.2), ``wrong_merchant`` (the bill
is another account's), ``bad_hash`` (the zip is corrupted). A fault taken by a gateway call that hands
out a link applies to that link's download.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from fetchers import alipay_sign
from fetchers.sandbox.server import Payment, SandboxRequest, SandboxResponse

BEIJING = ZoneInfo("Asia/Shanghai")
LINK_SECONDS = 30.0
DETAIL_HEADER = ("支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,"
                 "订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,"
                 "券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注")
SUMMARY_HEADER = ("门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,商家优惠（元）,"
                  "卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）")
# Dash counts as in the reproduced real files (parsers must not rely on them).
DETAIL_START = "#" + "-" * 41 + "业务明细列表" + "-" * 40
DETAIL_END = "#" + "-" * 41 + "业务明细列表结束" + "-" * 36
SUMMARY_START = "#" + "-" * 41 + "业务汇总列表" + "-" * 40
SUMMARY_END = "#" + "-" * 40 + "业务汇总列表结束" + "-" * 37
CENT = Decimal("0.01")


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey, pkcs1: bool = False) -> str:
    fmt = serialization.PrivateFormat.TraditionalOpenSSL if pkcs1 else serialization.PrivateFormat.PKCS8
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode("ascii")


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


@dataclass
class _Link:
    day: date
    expires: float
    fault: str | None


class AlipaySandbox:
    """Alipay as one merchant app sees it. Keys are generated unless given (PEM strings)."""

    prefix = "/alipay"

    def __init__(self, payments: list[Payment], app_id: str = "2021000000000001",
                 account: str = "20881234567890120156", app_private_key: str | None = None,
                 alipay_private_key: str | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.payments = payments
        self.app_id = app_id
        self.account = account  # the bill's #账号: PID + 0156
        app_key = alipay_sign.load_private_key(app_private_key, "app") if app_private_key else new_key()
        self._alipay_key = (alipay_sign.load_private_key(alipay_private_key, "alipay") if alipay_private_key
                            else new_key())
        self.app_private_key_pem = private_pem(app_key)
        self.app_public_key_pem = public_pem(app_key)
        self.alipay_public_key_pem = public_pem(self._alipay_key)
        self._app_public_key = app_key.public_key()
        self._clock = clock
        self._links: dict[str, _Link] = {}
        self._lock = threading.Lock()
        self.received: list[dict[str, str]] = []  # every gateway call's parameters, as sent

    # -- routing -------------------------------------------------------------------------------------

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        if request.path == "/gateway.do":
            return self._gateway(request)
        if request.path == "/downloadBillFile.resource":
            return self._download(request)
        return SandboxResponse(404, b"not found")

    def _gateway(self, request: SandboxRequest) -> SandboxResponse:
        params = {**request.query, **(request.form() if request.method == "POST" else {})}
        with self._lock:
            self.received.append(dict(params))
        method = params.get("method", "")
        key = method.replace(".", "_") + "_response"
        if params.get("app_id") != self.app_id:
            return self._answer(key, _error("40002", "isv.invalid-app-id", "无效的AppID参数"), signed=False)
        if params.get("sign_type") != "RSA2":
            return self._answer(key, _error("40002", "isv.invalid-signature-type", "无效的签名类型"), signed=False)
        if not alipay_sign.verify(self._app_public_key, alipay_sign.signing_string(params), params.get("sign", "")):
            return self._answer(key, _error("40002", "isv.invalid-signature", "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配"),
                                signed=False)
        try:
            biz = json.loads(params.get("biz_content") or "{}")
        except ValueError:
            return self._answer(key, _error("40002", "isv.invalid-parameter", "biz_content 不是 JSON"))
        if method == "alipay.trade.query":
            return self._answer(key, self._trade_query(biz), fault=request.fault)
        if method == "alipay.data.dataservice.bill.downloadurl.query":
            return self._answer(key, self._bill_url(biz, request), fault=request.fault)
        return self._answer("error_response", _error("40002", "isv.invalid-method", "不存在的方法名"), fault=request.fault)

    def _answer(self, key: str, body: dict[str, Any], signed: bool = True, fault: str | None = None) -> SandboxResponse:
        """``{"<key>":{…},"sign":"…"}`` written as Alipay does: compact, unescaped Chinese, its own key order."""
        inner = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        text = '{"' + key + '":' + inner
        if signed and fault != "no_signature":
            signature = alipay_sign.sign(self._alipay_key, inner)
            if fault == "bad_signature":
                signature = alipay_sign.sign(self._alipay_key, inner + " ")
            text += ',"sign":"' + signature + '"'
        return SandboxResponse(200, (text + "}").encode("utf-8"), {"Content-Type": "application/json;charset=utf-8"})

    # -- alipay.trade.query --------------------------------------------------------------------------

    def _trade_query(self, biz: dict[str, Any]) -> dict[str, Any]:
        out_trade_no, trade_no = biz.get("out_trade_no"), biz.get("trade_no")
        found = next((p for p in self.payments if (trade_no and p.txn_id == trade_no)
                      or (not trade_no and p.order_no == out_trade_no)), None)
        if found is None:
            return {**_error("40004", "ACQ.TRADE_NOT_EXIST", "交易不存在", "Business Failed"),
                    "buyer_pay_amount": "0.00", "invoice_amount": "0.00", "out_trade_no": out_trade_no or "",
                    "point_amount": "0.00", "receipt_amount": "0.00"}
        status = trade_status(found)
        paid = status != "WAIT_BUYER_PAY" and not (status == "TRADE_CLOSED" and found.status == "closed"
                                                      and not found.refunds)
        amount = _money(found.amount)
        answer: dict[str, Any] = {"code": "10000", "msg": "Success", "buyer_logon_id": found.extra.get(
            "buyer_logon_id", "csq***@sandbox.com"), "buyer_pay_amount": amount if paid else "0.00",
            "buyer_user_id": found.extra.get("buyer_user_id", "2088102169481075"),
            "invoice_amount": amount if paid else "0.00", "out_trade_no": found.order_no,
            "point_amount": "0.00", "receipt_amount": amount if paid else "0.00"}
        if paid:
            answer["send_pay_date"] = _beijing(found.paid_at)
        answer.update({"total_amount": amount, "trade_no": found.txn_id, "trade_status": status})
        return answer

    # -- the bill ------------------------------------------------------------------------------------

    def _bill_url(self, biz: dict[str, Any], request: SandboxRequest) -> dict[str, Any]:
        if biz.get("bill_type") != "trade":
            return _error("40004", "isp.bill_type_not_support", "不支持的账单类型", "Business Failed")
        try:
            day = date.fromisoformat(str(biz.get("bill_date")))
        except ValueError:
            return _error("40004", "isv.invalid-arguments", "参数不合法", "Business Failed")
        if request.fault == "not_ready" or not self.rows(day):
            return _error("40004", "isp.bill_not_exist", "账单不存在", "Business Failed")
        token = secrets.token_hex(8)
        with self._lock:
            self._links[token] = _Link(day, self._clock() + LINK_SECONDS, request.fault)
        host = request.headers.get("host", "127.0.0.1")
        if request.fault == "foreign_host":
            host = "127.0.0.2:" + host.rpartition(":")[2]
        query = urlencode({"bizType": "trade", "userId": self.account, "fileType": "csv.zip",
                           "bizDates": f"{day:%Y%m%d}", "downloadFileName": f"{self.account}_{day:%Y%m%d}.csv.zip",
                           "timestamp": str(int(time.time() * 1000)), "token": token})
        return {"code": "10000", "msg": "Success",
                "bill_download_url": f"http://{host}{self.prefix}/downloadBillFile.resource?{query}"}

    def _download(self, request: SandboxRequest) -> SandboxResponse:
        with self._lock:
            link = self._links.get(request.query.get("token", ""))
        if link is None or self._clock() > link.expires:
            return SandboxResponse(403, "下载超时，请重新下载".encode(), {"Content-Type": "text/plain;charset=utf-8"})
        fault = request.fault or link.fault
        account = "20889999999999990156" if fault == "wrong_merchant" else self.account
        raw = self.bill_zip(link.day, account)
        if fault == "bad_hash":
            raw = _corrupt_first_entry(raw)
        return SandboxResponse(200, raw, {"Content-Type": "application/octet-stream",
                                          "Content-Disposition": f"attachment; filename={self.account}.csv.zip"})

    def rows(self, day: date) -> list[dict[str, Any]]:
        """The day's bill lines (payments by pay time, refunds by refund time), in completion order."""
        rows = []
        for p in self.payments:
            if (p.status == "paid" or p.refunds) and p.paid_at.astimezone(BEIJING).date() == day:
                rows.append(self._row(p, "交易", p.paid_at, p.amount, -(p.fee or Decimal(0)), ""))
            for r in p.refunds:
                if r.at.astimezone(BEIJING).date() == day:
                    rows.append(self._row(p, "退款", r.at, -r.amount, Decimal(0), r.refund_id))
        return sorted(rows, key=lambda r: r["完成时间"])

    @staticmethod
    def _row(p: Payment, kind: str, at: datetime, amount: Decimal, fee: Decimal, refund_id: str) -> dict[str, Any]:
        store = p.extra.get("store_id", "")
        return {"支付宝交易号": p.txn_id, "商户订单号": p.order_no, "业务类型": kind,
                "商品名称": p.extra.get("subject", "商品"), "创建时间": _beijing(p.paid_at), "完成时间": _beijing(at),
                "门店编号": store, "门店名称": p.extra.get("store_name", store), "操作员": "", "终端号": "",
                "对方账户": p.extra.get("buyer", "*买(138****0000)"), "amount": amount, "fee": fee,
                "退款批次号/请求号": refund_id, "备注": p.extra.get("memo", "")}

    def bill_zip(self, day: date, account: str | None = None) -> bytes:
        """The zip Alipay serves for ``day``: detail and summary, GBK names without the UTF-8 flag."""
        account = account or self.account
        rows = self.rows(day)
        exported = datetime.combine(day + timedelta(days=1), datetime.min.time()) + timedelta(hours=5, minutes=46)
        base = f"{account}_{day:%Y%m%d}_业务明细"
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, text in ((f"{base}.csv", detail_csv(rows, account, day, exported)),
                               (f"{base}(汇总).csv", summary_csv(rows, account, day, exported))):
                info = _GbkName(name, date_time=exported.timetuple()[:6])
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 0
                archive.writestr(info, text.encode("gbk", errors="replace"))
        return buffer.getvalue()


def trade_status(p: Payment) -> str:
    """What trade.query says: an explicit ``extra["trade_status"]`` wins; a fully refunded trade is closed."""
    if "trade_status" in p.extra:
        return p.extra["trade_status"]
    if p.status == "unpaid":
        return "WAIT_BUYER_PAY"
    if p.status == "closed" or sum((r.amount for r in p.refunds), Decimal(0)) >= p.amount:
        return "TRADE_CLOSED"
    return "TRADE_SUCCESS"


def detail_csv(rows: list[dict[str, Any]], account: str, day: date, exported: datetime) -> str:
    out = io.StringIO()
    out.write("\n".join(_preamble("#支付宝业务明细查询", account, day) + [DETAIL_START, DETAIL_HEADER]) + "\n")
    writer = csv.writer(out, lineterminator="\n")
    for r in rows:
        tab = [f"{r[c]}\t" for c in ("支付宝交易号", "商户订单号", "业务类型")]
        shop = [f"{r[c]}\t" for c in ("门店编号", "门店名称", "操作员", "终端号", "对方账户")]
        writer.writerow(tab + [_flat(r["商品名称"]), r["创建时间"], r["完成时间"]] + shop
                        + [_money(r["amount"]), _money(r["amount"]), "0.00", "0.00", "0.00", "0.00", "0.00", "",
                           "0.00\t", "0.00", f"{r['退款批次号/请求号']}\t", _money(r["fee"]), "0.00", _flat(r["备注"])])
    trades = [r for r in rows if r["业务类型"] == "交易"]
    refunds = [r for r in rows if r["业务类型"] == "退款"]
    out.write("\n".join([
        DETAIL_END,
        f"#交易合计：{len(trades)}笔，商家实收共{_money(sum((r['amount'] for r in trades), Decimal(0)))}元，商家优惠共0.00元",
        (f"#退款合计：{len(refunds)}笔，商家实收退款共{_money(sum((r['amount'] for r in refunds), Decimal(0)))}元，"
         "商家优惠退款共0.00元"),
        f"#导出时间：[{_cn_time(exported)}]",
    ]) + "\n")
    return out.getvalue()


def summary_csv(rows: list[dict[str, Any]], account: str, day: date, exported: datetime) -> str:
    stores: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        stores.setdefault((r["门店编号"], r["门店名称"]), []).append(r)
    out = io.StringIO()
    out.write("\n".join(_preamble("#支付宝业务汇总查询", account, day) + [SUMMARY_START, SUMMARY_HEADER]) + "\n")
    writer = csv.writer(out, lineterminator="\n")
    for (store, name), group in [*sorted(stores.items()), (("合计", ""), rows)]:
        amount = sum((r["amount"] for r in group), Decimal(0))
        fee = sum((r["fee"] for r in group), Decimal(0))
        writer.writerow([store, name, sum(r["业务类型"] == "交易" for r in group), sum(r["业务类型"] == "退款" for r in group),
                         _money(amount), _money(amount), "0.00", "0.00", "0.00", _money(fee), "0.00",
                         _money(amount + fee)])
    out.write(SUMMARY_END + "\n" + f"#导出时间：[{_cn_time(exported)}]" + "\n")
    return out.getvalue()


class _GbkName(zipfile.ZipInfo):
    """An entry whose name is written in GBK with flag bit 11 clear, as Alipay's bill host writes it."""

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:
        return self.filename.encode("gbk"), self.flag_bits & ~0x800


def _corrupt_first_entry(raw: bytes) -> bytes:
    """Flip four bytes inside the first entry's data (the detail bill), after its local header."""
    start = 30 + int.from_bytes(raw[26:28], "little") + int.from_bytes(raw[28:30], "little") + 4
    return raw[:start] + bytes(b ^ 0xFF for b in raw[start:start + 4]) + raw[start + 4:]


def _preamble(title: str, account: str, day: date) -> list[str]:
    end = day + timedelta(days=1)
    return [title, f"#账号：[{account}]",
            (f"#起始日期：[{day.year}年{day.month:02d}月{day.day:02d}日 00:00:00]   "
             f"终止日期：[{end.year}年{end.month:02d}月{end.day:02d}日 00:00:00]")]


def _error(code: str, sub_code: str, sub_msg: str, msg: str = "Invalid Arguments") -> dict[str, str]:
    return {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}


def _money(value: Decimal) -> str:
    return str(value.quantize(CENT))


def _beijing(at: datetime) -> str:
    return at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def _cn_time(at: datetime) -> str:
    return f"{at.year}年{at.month:02d}月{at.day:02d}日 {at:%H:%M:%S}"


def _flat(value: str) -> str:
    return " ".join(str(value).split())

