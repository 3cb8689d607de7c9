"""WeChat Pay API v3 in the sandbox: trade bill + download, order query, real RSA signatures both ways.

Requests must carry a valid merchant Authorization (else 401 SIGN_ERROR, unsigned, like WeChat). JSON
answers, errors included, are signed with the sandbox's platform key; bill downloads are not signed
(WeChat sends no signature headers there) and are checked through the published SHA1 instead.
Bills are written byte for byte like the real ALL bill (reference/channel-formats.md §2.2): UTF-8 BOM,
CRLF, a backtick before every value, unquoted commas in 商品名称, the 总交易单数 summary.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import unquote, urlencode
from zoneinfo import ZoneInfo

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from fetchers import wechatpay_sign as ws
from fetchers.sandbox.server import Payment, SandboxRequest, SandboxResponse

# The 27 columns of the v3 ALL bill (免充值 merchants), in the order WeChat writes them.
ALL_HEADER = ("交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,"
              "应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,"
              "手续费,费率,订单金额,申请退款金额,费率备注")
SUMMARY_HEADER = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
# Real bills start with a UTF-8 BOM and end every line, the last included, with CRLF (verified via the SHA1).
BOM = b"\xef\xbb\xbf"
EOL = "\r\n"
# Every value is prefixed with one backtick so that Excel keeps long numbers as text.
TICK = "`"
# Payment rows carry "0" in the refund-number columns; 特约商户号 is "0" for a direct merchant.
NO_ID = "0"
CENT = Decimal("0.01")
DEFAULT_RATE = Decimal("0.006")
OTHER_MCHID = "1999999999"
FOREIGN_HOST = "bills.wechatpay-sandbox.invalid"
STALE_SECONDS = 600
TRADE_STATE_DESC = {"SUCCESS": "支付成功", "REFUND": "转入退款", "NOTPAY": "未支付", "CLOSED": "已关闭",
                    "REVOKED": "已撤销", "USERPAYING": "用户支付中", "PAYERROR": "支付失败"}
# Payment.status → trade_state, unless Payment.extra["trade_state"] names another (REVOKED, PAYERROR …).
STATUS_TRADE_STATE = {"paid": "SUCCESS", "unpaid": "NOTPAY", "closed": "CLOSED"}
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class WechatPaySandbox:
    """The sandbox channel module for WeChat Pay; keys are generated per instance.

    Give the client ``merchant_private_pem`` (credentials.private_key), ``merchant_serial`` (api.serial_no),
    ``platform_public_pem`` (credentials.platform_public_key) and ``platform_serial`` (api.platform_serial).
    ``echo`` puts a string into every error message (to test that clients never repeat server text);
    ``reject_with = (status, code)`` answers every API call with that signed error;
    ``sign_with_certificate_serial`` sends the serial of ``platform_certificate_pem`` (certificate mode).
    ``Payment.extra`` may set ``trade_state`` (REVOKED, USERPAYING, PAYERROR …), ``description`` (商品名称),
    ``attach``, ``openid``, ``appid``, ``trade_type``, ``bank_type`` and ``rate`` (费率 text, e.g. ``1.00%``).
    """

    prefix = "/wechatpay"

    def __init__(self, payments: Iterable[Payment] = (), *, mchid: str = "1900000109",
                 appid: str = "wx8888888888888888", rate: Decimal = DEFAULT_RATE, zone: str = "Asia/Shanghai",
                 clock: Callable[[], float] = time.time) -> None:
        self.payments = list(payments)
        self.mchid = mchid
        self.appid = appid
        self.rate = rate
        self.zone = ZoneInfo(zone)
        self.clock = clock
        self.merchant_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.merchant_serial = secrets.token_hex(20).upper()
        self.platform_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.platform_serial = "PUB_KEY_ID_" + "".join(str(b % 10) for b in secrets.token_bytes(22))
        self.platform_certificate = _self_signed(self.platform_key)
        self.sign_with_certificate_serial = False
        self.echo: str | None = None
        self.reject_with: tuple[int, str] | None = None
        self._downloads: dict[str, bytes] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ keys for the client

    @property
    def merchant_private_pem(self) -> str:
        return self.merchant_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()).decode("ascii")

    @property
    def platform_public_pem(self) -> str:
        return self.platform_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")

    @property
    def platform_certificate_pem(self) -> str:
        return self.platform_certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def platform_certificate_serial(self) -> str:
        return f"{self.platform_certificate.serial_number:X}"

    # ------------------------------------------------------------------ dispatch

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        if not self._authorized(request):
            return _unsigned_error(401, "SIGN_ERROR", "签名错误")
        if request.method == "GET" and request.path == "/v3/billdownload/file":
            return self._download(request)
        if self.reject_with is not None:
            return self._error(request, *self.reject_with, "请求被拒绝")
        if request.method == "GET" and request.path == "/v3/bill/tradebill":
            return self._tradebill(request)
        match = re.fullmatch(r"/v3/pay/transactions/out-trade-no/([^/]+)", request.path)
        if request.method == "GET" and match:
            return self._query(request, unquote(match.group(1)))
        return self._error(request, 404, "NOT_FOUND", "无此接口")

    def _authorized(self, request: SandboxRequest) -> bool:
        """Check the merchant's v3 signature over the path and query as sent (sandbox prefix included)."""
        auth = ws.parse_authorization(request.headers.get("authorization", ""))
        if auth is None or auth.mchid != self.mchid or auth.serial_no != self.merchant_serial:
            return False
        if not auth.timestamp.isdigit() or abs(self.clock() - int(auth.timestamp)) > ws.MAX_CLOCK_SKEW_SECONDS:
            return False
        path = self.prefix + request.path + (f"?{urlencode(request.query)}" if request.query else "")
        message = ws.request_message(request.method, path, auth.timestamp, auth.nonce,
                                     request.body.decode("utf-8"))
        return ws.verify(self.merchant_key.public_key(), message, auth.signature)

    # ------------------------------------------------------------------ bills

    def _tradebill(self, request: SandboxRequest) -> SandboxResponse:
        bill_date, bill_type = request.query.get("bill_date", ""), request.query.get("bill_type", "ALL")
        if not _DAY.match(bill_date) or bill_type != "ALL":
            return self._error(request, 400, "PARAM_ERROR", "bill_date 格式错误或 bill_type 不支持")
        if request.fault == "not_ready":
            return self._error(request, 400, "STATEMENT_CREATING", "账单生成中")
        mchid = OTHER_MCHID if request.fault == "wrong_merchant" else self.mchid
        bill = self.tradebill(date.fromisoformat(bill_date), mchid)
        if bill is None:
            return self._error(request, 400, "NO_STATEMENT_EXIST", "请求的账单文件不存在")
        token = secrets.token_hex(16)
        gzipped = request.query.get("tar_type") == "GZIP"
        with self._lock:
            self._downloads[token] = gzip.compress(bill, mtime=0) if gzipped else bill
        published = bill + b"\r\n" if request.fault == "bad_hash" else bill
        host = FOREIGN_HOST if request.fault == "foreign_host" else request.headers.get("host", "127.0.0.1")
        url = f"http://{host}{self.prefix}/v3/billdownload/file?token={token}" + ("&tartype=gzip" if gzipped else "")
        return self._signed(request, {"hash_type": "SHA1", "hash_value": hashlib.sha1(published).hexdigest(),
                                      "download_url": url})

    def _download(self, request: SandboxRequest) -> SandboxResponse:
        with self._lock:
            data = self._downloads.get(request.query.get("token", ""))
        if data is None:
            return self._error(request, 400, "PARAM_ERROR", "token 无效或已过期")
        if request.fault == "bad_hash":  # the file changed on the way: one byte differs
            gzipped = data[:2] == b"\x1f\x8b"
            raw = bytearray(gzip.decompress(data) if gzipped else data)
            raw[-3] ^= 0x01
            data = gzip.compress(bytes(raw), mtime=0) if gzipped else bytes(raw)
        return SandboxResponse(200, data, {"Content-Type": "application/octet-stream"})

    def tradebill(self, day: date, mchid: str | None = None) -> bytes | None:
        """The ALL bill of ``day`` as WeChat writes it, or None when the day has no trade and no refund."""
        mchid = mchid or self.mchid
        rows: list[list[str]] = []
        for payment in self.payments:
            if payment.status == "paid" and payment.paid_at.astimezone(self.zone).date() == day:
                rows.append(self._payment_row(payment, mchid))
            for n, refund in enumerate(payment.refunds, start=1):
                if refund.at.astimezone(self.zone).date() == day:
                    rows.append(self._refund_row(payment, n, mchid))
        if not rows:
            return None
        lines = [ALL_HEADER, *(",".join(TICK + v for v in row) for row in rows), SUMMARY_HEADER,
                 ",".join(TICK + v for v in _summary(rows))]
        return BOM + (EOL.join(lines) + EOL).encode("utf-8")

    def _common(self, p: Payment, mchid: str) -> list[str]:
        """交易时间 … 货币种类: the first 12 columns, the same on a payment and on its refunds."""
        return [_local(p.paid_at, self.zone), p.extra.get("appid", self.appid), mchid, NO_ID, "", p.txn_id,
                p.order_no, p.extra.get("openid", _openid(p.order_no)), p.extra.get("trade_type", "NATIVE")]

    def _payment_row(self, p: Payment, mchid: str) -> list[str]:
        fee = self._fee(p)
        return [*self._common(p, mchid), "SUCCESS", p.extra.get("bank_type", "OTHERS"), p.currency, _yuan(p.amount),
                "0.00", NO_ID, NO_ID, "0.00", "0.00", "", "", p.extra.get("description", "虚拟商品"),
                p.extra.get("attach", ""), _fee_text(fee), self._rate_text(p), _yuan(p.amount), "0.00", ""]

    def _refund_row(self, p: Payment, n: int, mchid: str) -> list[str]:
        refund = p.refunds[n - 1]
        # The fee of the refunded share is returned and written as a negative 手续费.
        returned = -(self._fee(p) * refund.amount / p.amount).quantize(CENT, ROUND_HALF_UP) if p.amount else Decimal(0)
        return [*self._common(p, mchid), "REFUND", p.extra.get("bank_type", "OTHERS"), p.currency, "0.00", "0.00",
                refund.refund_id, f"{p.order_no}R{n}", _yuan(refund.amount), "0.00", "ORIGINAL", "SUCCESS",
                p.extra.get("description", "虚拟商品"), p.extra.get("attach", ""), _fee_text(returned),
                self._rate_text(p), "0.00", _yuan(refund.amount), ""]

    def _fee(self, p: Payment) -> Decimal:
        return p.fee if p.fee is not None else (p.amount * self.rate).quantize(CENT, ROUND_HALF_UP)

    def _rate_text(self, p: Payment) -> str:
        return p.extra.get("rate", f"{self.rate * 100:.2f}%")

    # ------------------------------------------------------------------ query

    def _query(self, request: SandboxRequest, order_no: str) -> SandboxResponse:
        if request.query.get("mchid") != self.mchid:
            return self._error(request, 400, "PARAM_ERROR", "mchid 与请求签名的商户号不一致")
        payment = next((p for p in self.payments if p.order_no == order_no), None)
        if payment is None:
            return self._error(request, 404, "ORDER_NOT_EXIST", "订单不存在")
        default = "REFUND" if payment.refunds else STATUS_TRADE_STATE[payment.status]
        state = payment.extra.get("trade_state") or default
        fen = _fen(payment.amount)
        body: dict[str, Any] = {
            "appid": payment.extra.get("appid", self.appid),
            "mchid": OTHER_MCHID if request.fault == "wrong_merchant" else self.mchid,
            "out_trade_no": payment.order_no,
            "trade_type": payment.extra.get("trade_type", "NATIVE"),
            "trade_state": state, "trade_state_desc": TRADE_STATE_DESC.get(state, state),
            "attach": payment.extra.get("attach", ""),
            "amount": {"total": fen, "currency": payment.currency},
        }
        if state in ("SUCCESS", "REFUND"):  # unpaid orders have neither transaction_id nor success_time
            body |= {"transaction_id": payment.txn_id, "bank_type": payment.extra.get("bank_type", "OTHERS"),
                     "success_time": payment.paid_at.astimezone(self.zone).isoformat(timespec="seconds"),
                     "payer": {"openid": payment.extra.get("openid", _openid(payment.order_no))}}
            body["amount"] |= {"payer_total": fen, "payer_currency": payment.currency}
        return self._signed(request, body)

    # ------------------------------------------------------------------ answers

    def _error(self, request: SandboxRequest, status: int, code: str, message: str) -> SandboxResponse:
        body: dict[str, Any] = {"code": code, "message": message}
        if self.echo is not None:
            body |= {"message": f"{message}: {self.echo}", "detail": {"field": "authorization", "value": self.echo}}
        return self._signed(request, body, status)

    def _signed(self, request: SandboxRequest, value: Any, status: int = 200) -> SandboxResponse:
        """A JSON answer with the Wechatpay-* signature headers; ``request.fault`` may spoil them."""
        response = SandboxResponse.json(value, status)
        now = int(self.clock()) - (STALE_SECONDS if request.fault == "stale_timestamp" else 0)
        nonce = ws.new_nonce()
        signed = response.body + b" " if request.fault == "bad_signature" else response.body
        serial = self.platform_certificate_serial if self.sign_with_certificate_serial else self.platform_serial
        response.headers |= {
            ws.HEADER_TIMESTAMP: str(now), ws.HEADER_NONCE: nonce, ws.HEADER_SERIAL: serial,
            ws.HEADER_SIGNATURE: ws.sign(self.platform_key, ws.answer_message(str(now), nonce, signed)),
            "Wechatpay-Signature-Type": ws.SCHEMA, "Request-ID": secrets.token_hex(8),
        }
        if request.fault == "no_signature":
            del response.headers[ws.HEADER_SIGNATURE]
        return response


def _unsigned_error(status: int, code: str, message: str) -> SandboxResponse:
    """WeChat does not sign its answer to a request whose own signature failed."""
    return SandboxResponse.json({"code": code, "message": message}, status)


def _summary(rows: list[list[str]]) -> list[str]:
    """总交易单数, 应结订单总金额, 退款总金额, 充值券退款总金额, 手续费总金额, 订单总金额, 申请退款总金额."""
    def total(col: int) -> Decimal:
        return sum((Decimal(r[col]) for r in rows), Decimal(0))
    return [str(len(rows)), _yuan(total(12)), _yuan(total(16)), _yuan(total(17)), _fee_text(total(22)),
            _yuan(total(24)), _yuan(total(25))]


def _local(at: datetime, zone: ZoneInfo) -> str:
    return at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def _yuan(value: Decimal) -> str:
    return f"{value.quantize(CENT, ROUND_HALF_UP):.2f}"


def _fee_text(value: Decimal) -> str:
    """手续费 is written with 5 decimals; a zero is never written as -0.00000."""
    return f"{(value if value else Decimal(0)):.5f}"


def _fen(value: Decimal) -> int:
    fen = value * 100
    if fen != fen.to_integral_value():
        raise ValueError(f"{value} is not a whole number of fen")
    return int(fen)


def _openid(order_no: str) -> str:
    """A stable made-up openid per order (28 characters like the real ones)."""
    return "o" + hashlib.sha256(order_no.encode("utf-8")).hexdigest()[:27]


def _self_signed(key: rsa.RSAPrivateKey) -> x509.Certificate:
    """A platform certificate for clients configured with a certificate instead of a bare public key."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA (sandbox)")])
    now = datetime.now(UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365)).sign(key, hashes.SHA256()))
