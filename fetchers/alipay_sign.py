"""Alipay open-platform signatures: RSA2 (SHA256withRSA, PKCS#1 v1.5) over requests and responses.

Formats: reference/channel-formats.md §1.7. A request is signed over its parameters sorted by name and
joined as ``k=v&…`` (``sign`` left out). A synchronous response is verified over the exact text of the
``<method>_response`` (or ``error_response``) value as it stands in the raw body: re-serialising the
parsed JSON would change key order, spacing or escaping and so the bytes that were signed.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from recon.errors import ConfigError

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def load_private_key(text: str, key: str) -> rsa.RSAPrivateKey:
    """The app's RSA private key: PEM (PKCS#1 or PKCS#8), or the bare base64 Alipay's key tool writes.

    ``key`` is the config key path named in errors; the key material never appears in a message.
    """
    data = text.strip()
    try:
        if "-----BEGIN" in data:
            loaded: Any = serialization.load_pem_private_key(data.encode("ascii"), password=None)
        else:
            loaded = serialization.load_der_private_key(_base64(data), password=None)
    except TypeError:
        raise ConfigError(key, "the private key is encrypted; give it without a passphrase") from None
    except (ValueError, UnicodeError, UnsupportedAlgorithm, binascii.Error):
        raise ConfigError(key, "not a readable private key (expected PEM, PKCS#1 or PKCS#8, or base64 DER)") from None
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise ConfigError(key, "not an RSA key; Alipay RSA2 signing needs one")
    return loaded


def load_public_key(text: str, key: str) -> rsa.RSAPublicKey:
    """Alipay's public key (支付宝公钥): PEM (SubjectPublicKeyInfo or PKCS#1), or bare base64."""
    data = text.strip()
    if "BEGIN CERTIFICATE" in data:
        raise ConfigError(key, "a certificate was given; public-key-certificate mode (公钥证书) is not supported, "
                               "give the 支付宝公钥 of public-key mode")
    try:
        if "-----BEGIN" in data:
            loaded: Any = serialization.load_pem_public_key(data.encode("ascii"))
        else:
            loaded = serialization.load_der_public_key(_base64(data))
    except (ValueError, UnicodeError, UnsupportedAlgorithm, binascii.Error):
        raise ConfigError(key, "not a readable public key (expected PEM or base64 DER)") from None
    if not isinstance(loaded, rsa.RSAPublicKey):
        raise ConfigError(key, "not an RSA key; Alipay RSA2 verification needs one")
    return loaded


def _base64(data: str) -> bytes:
    return base64.b64decode("".join(data.split()), validate=True)


def signing_string(params: Mapping[str, str]) -> str:
    """``k=v&…`` sorted by key, without ``sign``; empty values are left out as Alipay's own SDKs do."""
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v != "")


def sign(key: rsa.RSAPrivateKey, content: str) -> str:
    """Base64 RSA2 signature of ``content`` (UTF-8). PKCS#1 v1.5 is deterministic: same input, same output."""
    return base64.b64encode(key.sign(content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def verify(key: rsa.RSAPublicKey, content: str, signature: str) -> bool:
    """True when ``signature`` (base64) is ``key``'s RSA2 signature of ``content``."""
    try:
        raw = _base64(signature)
        key.verify(raw, content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


@dataclass(frozen=True)
class SignedPart:
    """One top-level member of a response object: its key, exact raw text and parsed value."""

    key: str
    text: str
    value: Any


def top_level(raw: str) -> dict[str, list[SignedPart]]:
    """Every member of the JSON object ``raw``, by key, with the exact text of its value.

    Values are delimited by the JSON grammar itself (braces matched outside string literals), so a
    ``}`` inside a product name cannot end a value early. A key may appear more than once; the caller
    decides whether that is acceptable. Raises ValueError when ``raw`` is not one JSON object.
    """
    pos = _skip(raw, 0)
    if not raw.startswith("{", pos):
        raise ValueError("the answer is not a JSON object")
    pos = _skip(raw, pos + 1)
    members: dict[str, list[SignedPart]] = {}
    if raw.startswith("}", pos):
        return _end(raw, pos + 1, members)
    while True:
        if not raw.startswith('"', pos):
            raise ValueError(f"a key was expected at offset {pos}")
        name, pos = _DECODER.raw_decode(raw, pos)
        pos = _skip(raw, pos)
        if not raw.startswith(":", pos):
            raise ValueError(f"':' was expected at offset {pos}")
        start = _skip(raw, pos + 1)
        value, end = _DECODER.raw_decode(raw, start)
        members.setdefault(name, []).append(SignedPart(name, raw[start:end], value))
        pos = _skip(raw, end)
        if raw.startswith(",", pos):
            pos = _skip(raw, pos + 1)
            continue
        if raw.startswith("}", pos):
            return _end(raw, pos + 1, members)
        raise ValueError(f"',' or '}}' was expected at offset {pos}")


def _skip(raw: str, pos: int) -> int:
    found = _WHITESPACE.match(raw, pos)
    return found.end() if found else pos


def _end(raw: str, pos: int, members: dict[str, list[SignedPart]]) -> dict[str, list[SignedPart]]:
    if _skip(raw, pos) != len(raw):
        raise ValueError(f"text follows the JSON object at offset {pos}")
    return members
