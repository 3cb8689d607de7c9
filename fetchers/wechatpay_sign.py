"""WeChat Pay API v3 signatures: the merchant's request Authorization and the platform's answer signature.

Both are SHA256withRSA (PKCS#1 v1.5), base64 (reference/channel-formats.md §2.5):

* request:  ``METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n`` signed with the merchant API private key,
  sent as ``Authorization: WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",signature="…",timestamp="…",
  serial_no="…"``;
* answer:   ``TIMESTAMP\\nNONCE\\nBODY\\n`` from the ``Wechatpay-*`` headers, verified with the platform public key
  (or the public key of the platform certificate) whose id is ``Wechatpay-Serial``.

The sandbox uses the same functions for the other side, and the tests cross-check them with ``wechatpayv3``.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509 import load_pem_x509_certificate

from recon.errors import ConfigError, SignatureError

SCHEMA = "WECHATPAY2-SHA256-RSA2048"
# WeChat rejects answers (and we reject theirs) whose timestamp is more than 5 minutes off: a replay guard.
MAX_CLOCK_SKEW_SECONDS = 300
HEADER_TIMESTAMP = "Wechatpay-Timestamp"
HEADER_NONCE = "Wechatpay-Nonce"
HEADER_SIGNATURE = "Wechatpay-Signature"
HEADER_SERIAL = "Wechatpay-Serial"
_AUTH_PAIR = re.compile(r'(\w+)="([^"]*)"')


def load_private_key(pem: str, key_path: str) -> rsa.RSAPrivateKey:
    """The merchant API private key (apiclient_key.pem, PKCS#8 or PKCS#1); ConfigError naming ``key_path``."""
    try:
        key = serialization.load_pem_private_key(pem.encode("utf-8"), password=None)
    except (ValueError, TypeError):
        raise ConfigError(key_path, "is not a PEM RSA private key without passphrase (apiclient_key.pem)") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(key_path, "is not an RSA private key")
    return key


def load_public_key(pem: str, key_path: str) -> tuple[rsa.RSAPublicKey, str | None]:
    """The platform public key from a PEM public key or a PEM platform certificate.

    Returns the key and, for a certificate, its serial number in the upper-case hex WeChat puts in
    ``Wechatpay-Serial``.
    """
    data = pem.encode("utf-8")
    serial: str | None = None
    try:
        if b"BEGIN CERTIFICATE" in data:
            cert = load_pem_x509_certificate(data)
            key = cert.public_key()
            serial = f"{cert.serial_number:X}"
        else:
            key = serialization.load_pem_public_key(data)
    except ValueError:
        raise ConfigError(key_path, "is neither a PEM public key nor a PEM certificate") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ConfigError(key_path, "is not an RSA key")
    return key, serial


def new_nonce() -> str:
    """32 upper-case hex characters, like the official SDKs send."""
    return secrets.token_hex(16).upper()


def request_message(method: str, path_and_query: str, timestamp: str, nonce: str, body: str = "") -> str:
    """The 5-line string a request signature covers (every line ends with \\n, the last included)."""
    return f"{method.upper()}\n{path_and_query}\n{timestamp}\n{nonce}\n{body}\n"


def answer_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    """The 3-line string an answer signature covers; the body as received, before any decoding."""
    return f"{timestamp}\n{nonce}\n".encode() + body + b"\n"


def sign(private_key: rsa.RSAPrivateKey, message: str | bytes) -> str:
    """SHA256withRSA (PKCS#1 v1.5), base64."""
    data = message.encode("utf-8") if isinstance(message, str) else message
    return base64.b64encode(private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def verify(public_key: rsa.RSAPublicKey, message: str | bytes, signature: str) -> bool:
    """True when ``signature`` (base64) is a SHA256withRSA signature of ``message``."""
    data = message.encode("utf-8") if isinstance(message, str) else message
    try:
        raw = base64.b64decode(signature, validate=True)
        public_key.verify(raw, data, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def authorization(private_key: rsa.RSAPrivateKey, mchid: str, serial_no: str, method: str, path_and_query: str,
                  timestamp: int, nonce: str, body: str = "") -> str:
    """The ``Authorization`` header value of one request."""
    signature = sign(private_key, request_message(method, path_and_query, str(timestamp), nonce, body))
    return (f'{SCHEMA} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
            f'timestamp="{timestamp}",serial_no="{serial_no}"')


@dataclass(frozen=True)
class ParsedAuthorization:
    mchid: str
    nonce: str
    signature: str
    timestamp: str
    serial_no: str


def parse_authorization(value: str) -> ParsedAuthorization | None:
    """The five fields of an Authorization header (any order), or None when it is not a v3 one."""
    schema, _, rest = value.partition(" ")
    if schema != SCHEMA:
        return None
    pairs = dict(_AUTH_PAIR.findall(rest))
    try:
        return ParsedAuthorization(pairs["mchid"], pairs["nonce_str"], pairs["signature"], pairs["timestamp"],
                                   pairs["serial_no"])
    except KeyError:
        return None


def verify_answer(channel: str, headers: Mapping[str, str], body: bytes, public_key: rsa.RSAPublicKey,
                  expected_serial: str, now: float) -> None:
    """Raise SignatureError unless the answer is signed now-ish by the expected platform key.

    ``headers`` must look names up case-insensitively (requests' headers do). No header value is put in
    a message: a server may echo anything there.
    """
    timestamp = headers.get(HEADER_TIMESTAMP)
    nonce = headers.get(HEADER_NONCE)
    signature = headers.get(HEADER_SIGNATURE)
    serial = headers.get(HEADER_SERIAL)
    missing = [name for name, value in ((HEADER_TIMESTAMP, timestamp), (HEADER_NONCE, nonce),
                                        (HEADER_SIGNATURE, signature), (HEADER_SERIAL, serial)) if not value]
    if missing:
        raise SignatureError(channel, f"answer is not signed (missing {', '.join(missing)}); nothing of it is used")
    assert timestamp and nonce and signature and serial
    if serial != expected_serial:
        raise SignatureError(channel, f"answer is signed by another platform key than api.platform_serial "
                                      f"{expected_serial!r}; nothing of it is used")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > MAX_CLOCK_SKEW_SECONDS:
        raise SignatureError(channel, f"answer timestamp is more than {MAX_CLOCK_SKEW_SECONDS // 60} minutes "
                                      "off our clock (stale or replayed); nothing of it is used")
    if not verify(public_key, answer_message(timestamp, nonce, body), signature):
        raise SignatureError(channel, "answer signature does not verify with the platform public key; "
                                      "nothing of it is used")
