"""易支付 V2 (彩虹易支付V2, RSA): signing, verification and the signed transport of ``api/pay/*``.

Formats: reference/channel-formats.md §3.3. Every request is a form POST carrying ``pid``, ``timestamp``,
``sign_type=RSA`` and ``sign`` = base64(SHA256withRSA PKCS#1 v1.5 over the V1 sign string) made with the
merchant private key. Every answer is signed the same way with the platform key; it is verified with the
platform public key, and its timestamp checked, before any field of it is read.

Known gap of the documented rule: array values are left out of the sign content, so the ``data`` list of
``api/pay/orders`` is not covered by the signature (only the envelope: code, count, msg, timestamp). The
query answer, which carries one order's fields at the top level, is covered in full.

Neither key is ever put into a message: errors here name the config key path only.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from fetchers.http import ChannelSession
from recon.errors import ConfigError, FetchError, SignatureError
from recon.secrets import redact

V2 = "2"
ORDERS = "api/pay/orders"
QUERY = "api/pay/query"
SIGN_TYPE = "RSA"
CODE_OK = 0  # V2 answers code 0 on success (V1 api.php uses 1)
# Answers older or newer than this are replays or a wrong clock: rejected like a bad signature (§3.3).
MAX_SKEW_SECONDS = 300
# Merchant panels show keys as bare base64 without PEM armour (the TS/PHP clients wrap them), and keys
# pasted into .env files often carry literal "\n" instead of line breaks: both are accepted.
PEM_MARK = "-----BEGIN"
ESCAPED_NEWLINE = "\\n"
# Printed (redacted, shortened) when an answer is not usable, so the operator sees what came.
SNIPPET = 120


# ---------------------------------------------------------------------------------------------- keys

def load_private_key(text: str, key_path: str) -> rsa.RSAPrivateKey:
    """The merchant private key from PEM (PKCS#1 or PKCS#8) or bare base64 DER; ConfigError naming ``key_path``."""
    try:
        pem, der = _pem_or_der(text)
        key = (serialization.load_pem_private_key(pem, password=None) if pem
               else serialization.load_der_private_key(der, password=None))
    except (ValueError, TypeError, binascii.Error):
        raise ConfigError(key_path, "is not an unencrypted RSA private key (PEM or base64 DER)") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(key_path, "is not an RSA key (Epay V2 signs with SHA256withRSA)")
    return key


def load_public_key(text: str, key_path: str) -> rsa.RSAPublicKey:
    """The platform public key from PEM or bare base64 DER (SubjectPublicKeyInfo); ConfigError naming ``key_path``."""
    try:
        pem, der = _pem_or_der(text)
        key = serialization.load_pem_public_key(pem) if pem else serialization.load_der_public_key(der)
    except (ValueError, TypeError, binascii.Error):
        raise ConfigError(key_path, "is not an RSA public key (PEM or base64 DER)") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ConfigError(key_path, "is not an RSA key (Epay V2 signs with SHA256withRSA)")
    return key


def _pem_or_der(text: str) -> tuple[bytes | None, bytes]:
    text = text.strip().replace(ESCAPED_NEWLINE, "\n")
    if PEM_MARK in text:
        return text.encode("ascii"), b""
    return None, base64.b64decode("".join(text.split()), validate=True)


# ---------------------------------------------------------------------------------------------- signing

def sign_string(params: Mapping[str, str]) -> str:
    """The V1/V2 sign content: drop sign, sign_type and empty values; byte-order keys; ``k=v&…`` raw."""
    kept = {k: v for k, v in params.items() if k not in ("sign", "sign_type") and v is not None and v != ""}
    return "&".join(f"{k}={kept[k]}" for k in sorted(kept, key=lambda k: k.encode("utf-8")))


def rsa_sign(params: Mapping[str, str], private_key: rsa.RSAPrivateKey) -> str:
    """base64 SHA256withRSA (PKCS#1 v1.5) of ``sign_string(params)``."""
    signature = private_key.sign(sign_string(params).encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def rsa_verify(content: str, sign: str, public_key: rsa.RSAPublicKey) -> bool:
    """True when ``sign`` (base64) is the SHA256withRSA signature of ``content``."""
    try:
        signature = base64.b64decode(sign, validate=True)
        public_key.verify(signature, content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def answer_sign_strings(answer: Mapping[str, Any]) -> list[str]:
    """The sign strings a PHP platform may have signed for this decoded JSON answer, most literal first.

    The platform signs PHP values, not JSON text, so numbers are ambiguous:
    * as received (``"1.50"`` strings, ``10`` ints) – what a string-typed (PDO) build signs;
    * PHP float rendering – V2 sends money as a float: json_encode writes ``10.0`` but ``"$v"`` signs ``10``
      and ``1.50`` becomes ``1.5``;
    * PHP 7 loose filter – ``$v == ""`` is true for numeric 0 on PHP < 8, so ``code=0`` is left out there.
    Arrays, objects, null and false are never in the sign content (PHP: arrays dropped, false → "").
    """
    literal = {k: _php_value(v, php_floats=False) for k, v in answer.items()}
    floats = {k: _php_value(v, php_floats=True) for k, v in answer.items()}
    loose = {k: v for k, v in floats.items() if not _numeric_zero(answer[k])}
    return list(dict.fromkeys(sign_string(p) for p in (literal, floats, loose)))


def _php_value(value: Any, php_floats: bool) -> str | None:
    if value is None or value is False or isinstance(value, (list, dict)):
        return None
    if value is True:
        return "1"
    if isinstance(value, Decimal):
        return php_float(value) if php_floats else format(value, "f")
    return str(value)


def _numeric_zero(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, Decimal)) and value == 0


def php_float(value: Decimal) -> str:
    """PHP's string form of a float: ``10.0`` → ``10``, ``1.50`` → ``1.5`` (no exponent for money)."""
    text = format(value.normalize(), "f")
    return text if "." not in text else text.rstrip("0").rstrip(".")


# ---------------------------------------------------------------------------------------------- client

class EpayV2Client:
    """POSTs signed forms to ``{api_base}/api/pay/*`` and returns only answers whose signature verifies."""

    def __init__(self, channel_id: str, api_base: str, pid: str, private_key: rsa.RSAPrivateKey,
                 platform_key: rsa.RSAPublicKey, session: ChannelSession, now: Callable[[], datetime]) -> None:
        self.channel_id = channel_id
        self.base = api_base.rstrip("/") + "/"
        self.pid = pid
        self._private_key = private_key
        self._platform_key = platform_key
        self.session = session
        self._now = now

    def call(self, endpoint: str, params: Mapping[str, str]) -> dict[str, Any]:
        """The verified answer of ``endpoint``; FetchError when refused, SignatureError when not authentic.

        A signed answer is verified (signature, then timestamp) whatever its code. An unsigned answer is
        accepted only as an error: an unsigned success is a SignatureError; an unsigned error is returned
        with ``_unsigned`` set so that the caller uses nothing of it but its code and message.
        """
        form = {**params, "pid": self.pid, "timestamp": str(int(self._now().timestamp()))}
        form["sign"] = rsa_sign(form, self._private_key)
        form["sign_type"] = SIGN_TYPE
        answer = self._post(endpoint, form)
        if not answer.get("sign"):
            if _code(answer) == CODE_OK:
                raise SignatureError(self.channel_id, f"{endpoint}: the answer carries no signature; not used")
            return {"code": answer.get("code"), "msg": answer.get("msg"), "_unsigned": True}
        self._verify(endpoint, answer)
        return answer

    def _verify(self, endpoint: str, answer: dict[str, Any]) -> None:
        sign_type = str(answer.get("sign_type") or SIGN_TYPE)
        if sign_type != SIGN_TYPE:
            raise SignatureError(self.channel_id, f"{endpoint}: answer signed with {sign_type!r}, expected RSA")
        sign = str(answer["sign"])
        if not any(rsa_verify(s, sign, self._platform_key) for s in answer_sign_strings(answer)):
            raise SignatureError(self.channel_id, f"{endpoint}: the answer's signature does not verify with "
                                                  "the platform public key; not used")
        try:
            stamp = int(str(answer.get("timestamp")))
        except ValueError:
            raise SignatureError(self.channel_id, f"{endpoint}: the signed answer has no timestamp") from None
        skew = abs(self._now().timestamp() - stamp)
        if skew > MAX_SKEW_SECONDS:
            raise SignatureError(self.channel_id, f"{endpoint}: answer timestamp is {int(skew)} s away from now "
                                                  f"(more than {MAX_SKEW_SECONDS} s): stale or replayed; not used")

    def _post(self, endpoint: str, form: dict[str, str]) -> dict[str, Any]:
        url = self.base + endpoint
        try:
            response = self.session.request("POST", url, data=form)
        except requests.RequestException as exc:  # not retried by the session (e.g. a broken body)
            raise FetchError(self.channel_id, f"{endpoint}: {type(exc).__name__} while reading the answer") from None
        if response.status_code in (401, 403):
            raise FetchError(self.channel_id, f"{endpoint}: merchant {self.pid} refused (wrong pid or merchant "
                                              f"private key): HTTP {response.status_code}: "
                                              f"{self.snippet(response.text)}")
        if response.status_code != 200:
            raise FetchError(self.channel_id, f"{endpoint}: HTTP {response.status_code}: "
                                              f"{self.snippet(response.text)}")
        try:
            answer = json.loads(response.content.decode("utf-8-sig"), parse_float=Decimal)
        except (ValueError, UnicodeDecodeError):
            raise FetchError(self.channel_id, f"{endpoint}: the answer is not JSON: "
                                              f"{self.snippet(response.text)}") from None
        if not isinstance(answer, dict):
            raise FetchError(self.channel_id, f"{endpoint}: the answer is not a JSON object")
        return answer

    def snippet(self, text: str) -> str:
        return redact(text, list(self.session.secrets))[:SNIPPET]


def _code(answer: Mapping[str, Any]) -> int | None:
    try:
        return int(str(answer.get("code")))
    except ValueError:
        return None
