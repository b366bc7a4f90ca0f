"""Signing and verification of carrier pushes (pure functions, no I/O).

The signing functions are used by the verifiers below and by the simulator/benchmarks
that need to produce pushes a real carrier would send. Every verification compares with
:func:`hmac.compare_digest` so the time taken does not reveal how much of a forged
signature was right.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

#: China Post marks an SM4-encrypted ``logitcsInterface`` value with this prefix.
SM4_PREFIX = "|$4|"
#: The block size of SM4 and of AES (both ECB with PKCS#7 padding here).
_BLOCK_BITS = 128

# Header names (carriers.md; those marked unconfirmed there are also configurable only by
# changing these constants, which is enough until a carrier says otherwise).
YUNEXPRESS_TIMESTAMP_HEADER = "x-openapi-request-timestamp"
YUNEXPRESS_SIGNATURE_HEADER = "x-openapi-signature"
SEVENTEEN_TRACK_SIGNATURE_HEADER = "sign"
AFTERSHIP_SIGNATURE_HEADER = "aftership-hmac-sha256"
CHINAPOST_DIGEST_PARAMETER = "data_digest"
YANWEN_TOKEN_HEADER = "authorization"  # noqa: S105 - a header name


class SignatureError(ValueError):
    """A push whose signature, token or encryption does not check out."""


def _sm4_cipher(key_hex: str) -> Cipher[modes.ECB]:
    try:
        key = bytes.fromhex(key_hex)
    except ValueError as error:
        raise ValueError("SM4 key must be 32 hex characters") from error
    if len(key) != 16:
        raise ValueError("SM4 key must be 32 hex characters")
    # ECB is what China Post's open platform uses; we only interoperate with it.
    return Cipher(algorithms.SM4(key), modes.ECB())  # noqa: S305


def _ecb_encrypt(cipher: Cipher[modes.ECB], plaintext: bytes) -> str:
    """base64(ECB(PKCS#7(plaintext))) under ``cipher`` (SM4 and AES both have 128-bit blocks)."""
    padder = padding.PKCS7(_BLOCK_BITS).padder()
    encryptor = cipher.encryptor()
    ciphertext = encryptor.update(padder.update(plaintext) + padder.finalize()) + encryptor.finalize()
    return base64.b64encode(ciphertext).decode("ascii")


def _ecb_decrypt(cipher: Cipher[modes.ECB], value: str, field: str) -> bytes:
    """Inverse of :func:`_ecb_encrypt`; :class:`SignatureError` naming ``field`` when the
    value is not something encrypted under this cipher's key."""
    try:
        ciphertext = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise SignatureError(f"{field} is not base64") from error
    if not ciphertext or len(ciphertext) % (_BLOCK_BITS // 8):
        raise SignatureError(f"{field} is not a whole number of {cipher.algorithm.name} blocks")
    decryptor = cipher.decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(_BLOCK_BITS).unpadder()
    try:
        plaintext = unpadder.update(padded) + unpadder.finalize()
        # A wrong key yields valid padding about once in 256 tries, but then random bytes
        # that are not UTF-8; both carriers always encrypt JSON text.
        plaintext.decode("utf-8")
    except ValueError as error:
        raise SignatureError(f"{field} does not decrypt under the configured key") from error
    return plaintext


def chinapost_sm4_encrypt(plaintext: bytes, key_hex: str) -> str:
    """``|$4|`` + base64(SM4-ECB(PKCS#7(plaintext))), as China Post's push carries it."""
    return SM4_PREFIX + _ecb_encrypt(_sm4_cipher(key_hex), plaintext)


def chinapost_sm4_decrypt(value: str, key_hex: str) -> bytes:
    """Inverse of :func:`chinapost_sm4_encrypt`; raises :class:`SignatureError` when the
    value is not something encrypted under this key (that push is unauthenticated)."""
    return _ecb_decrypt(_sm4_cipher(key_hex), value.removeprefix(SM4_PREFIX), "logitcsInterface")


def chinapost_data_digest(raw_body: bytes, key: str) -> str:
    """``data_digest`` of the older traces push: base64(md5-hex(raw body + key))."""
    # MD5 is China Post's choice, not a security decision of ours.
    digest_hex = hashlib.md5(raw_body + key.encode(), usedforsecurity=False).hexdigest()
    return base64.b64encode(digest_hex.encode("ascii")).decode("ascii")


def yunexpress_signature(timestamp_ms: str, raw_body: bytes, secret: str) -> str:
    """Hex SHA-256 of ``timestamp + secret + raw body``."""
    return hashlib.sha256(timestamp_ms.encode() + secret.encode() + raw_body).hexdigest()


def seventeen_track_signature(raw_body: bytes, api_key: str) -> str:
    """17TRACK webhook v2 ``sign``: hex SHA-256 of ``raw body + "/" + api key``."""
    return hashlib.sha256(raw_body + b"/" + api_key.encode()).hexdigest()


def aftership_signature(raw_body: bytes, secret: str) -> str:
    """AfterShip ``aftership-hmac-sha256``: base64 HMAC-SHA256 of the raw body."""
    return base64.b64encode(hmac.new(secret.encode(), raw_body, hashlib.sha256).digest()).decode("ascii")


def signatures_match(presented: str | None, expected: str, *, case_insensitive: bool = False) -> bool:
    """Constant-time comparison of a presented signature with the expected one."""
    if not presented:
        return False
    presented = presented.strip()
    if case_insensitive:
        presented, expected = presented.lower(), expected.lower()
    return hmac.compare_digest(presented.encode(), expected.encode())


def yunexpress_timestamp_fresh(timestamp_ms: str | None, now_ms: int, window_seconds: float) -> bool:
    """Whether the push's epoch-millisecond timestamp is within the replay window."""
    # ASCII digits only: str.isdigit() also accepts '²' and other digits int() refuses.
    digits = timestamp_ms.strip() if timestamp_ms else ""
    if not digits or len(digits) > 16 or not (digits.isascii() and digits.isdigit()):
        return False
    return abs(int(digits) - now_ms) <= window_seconds * 1000


# --- YunExpress alternatives (chosen by settings) -------------------------------------------

#: Headers of YunExpress's newer request signing (VTR_YUNEXPRESS_SIGNING=token-hmac).
YUNEXPRESS_TOKEN_HEADER = "token"  # noqa: S105 - a header name
YUNEXPRESS_DATE_HEADER = "date"
YUNEXPRESS_SIGN_HEADER = "sign"
#: The field of YunExpress's encrypted envelope (VTR_YUNEXPRESS_ENCRYPTED=true).
YUNEXPRESS_ENCRYPTED_FIELD = "encrypt"


def yunexpress_hmac_signature(raw_body: bytes, date: str, method: str, path: str, secret: str) -> str:
    """The newer scheme's ``sign``: base64 HMAC-SHA256, keyed with the secret, of
    ``body=<raw body>&date=<date>&method=<METHOD>&uri=<path>`` (``body=`` left out when
    the body is empty: the parameters sorted by name, as YunExpress's open API signs)."""
    parts = [b"body=" + raw_body] if raw_body else []
    parts += [f"date={date}".encode(), f"method={method.upper()}".encode(), f"uri={path}".encode()]
    digest = hmac.new(secret.encode(), b"&".join(parts), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _aes_cipher(key: bytes) -> Cipher[modes.ECB]:
    if len(key) not in (16, 24, 32):
        raise ValueError("AES key must be 16, 24 or 32 bytes")
    # ECB is the envelope's mode (no IV travels with it); we only interoperate.
    return Cipher(algorithms.AES(key), modes.ECB())  # noqa: S305


def yunexpress_encrypt(plaintext: bytes, key: bytes) -> str:
    """base64(AES-ECB(PKCS#7(plaintext))), the value of the envelope's ``encrypt`` field."""
    return _ecb_encrypt(_aes_cipher(key), plaintext)


def yunexpress_decrypt(value: str, key: bytes) -> bytes:
    """Inverse of :func:`yunexpress_encrypt`; :class:`SignatureError` when the value was
    not encrypted under this key (the push is then unauthenticated)."""
    return _ecb_decrypt(_aes_cipher(key), value, YUNEXPRESS_ENCRYPTED_FIELD)
