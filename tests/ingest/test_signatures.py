"""Signing helpers: known vectors, round trips, and refusal of anything else."""

from __future__ import annotations

import base64
import hashlib

import pytest

from services.ingest import signatures

KEY = "0123456789abcdeffedcba9876543210"


def test_sm4_matches_the_standard_test_vector() -> None:
    # GB/T 32907 example 1: key = plaintext = 0123456789abcdeffedcba9876543210.
    encrypted = signatures.chinapost_sm4_encrypt(bytes.fromhex(KEY), KEY)
    ciphertext = base64.b64decode(encrypted.removeprefix("|$4|"))
    assert ciphertext[:16].hex() == "681edf34d206965e86b3e94f536e4246"
    assert encrypted.startswith("|$4|")


def test_sm4_round_trip_and_wrong_key() -> None:
    plaintext = '[{"waybillNo": "RR123456785CN", "opDesc": "妥投"}]'.encode()
    encrypted = signatures.chinapost_sm4_encrypt(plaintext, KEY)
    assert signatures.chinapost_sm4_decrypt(encrypted, KEY) == plaintext
    with pytest.raises(signatures.SignatureError):
        signatures.chinapost_sm4_decrypt(encrypted, "ffeeddccbbaa99887766554433221100")


@pytest.mark.parametrize("value", ["|$4|not base64!", "|$4|", "|$4|AAAA", ""])
def test_sm4_garbage_is_unauthenticated(value: str) -> None:
    with pytest.raises(signatures.SignatureError):
        signatures.chinapost_sm4_decrypt(value, KEY)


AES_KEY = b"0123456789abcdef"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("|$4|not base64!", "logitcsInterface is not base64"),
        ("|$4|AAAA", "logitcsInterface is not a whole number of SM4 blocks"),
        ("", "logitcsInterface is not a whole number of SM4 blocks"),
        (signatures.chinapost_sm4_encrypt(b"{}", "ffeeddccbbaa99887766554433221100"), "logitcsInterface does not"),
    ],
)
def test_sm4_refusals_name_the_problem(value: str, message: str) -> None:
    with pytest.raises(signatures.SignatureError, match=f"^{message}"):
        signatures.chinapost_sm4_decrypt(value, KEY)


def test_aes_envelope_round_trip_and_refusals() -> None:
    plaintext = '{"data": "妥投"}'.encode()
    assert signatures.yunexpress_decrypt(signatures.yunexpress_encrypt(plaintext, AES_KEY), AES_KEY) == plaintext
    refusals = {
        "not base64!": "encrypt is not base64",
        "AAAA": "encrypt is not a whole number of AES blocks",
        "": "encrypt is not a whole number of AES blocks",
        signatures.yunexpress_encrypt(
            plaintext, b"another-16-bytes"
        ): "encrypt does not decrypt under the configured key",
    }
    for value, message in refusals.items():
        with pytest.raises(signatures.SignatureError, match=f"^{message}"):
            signatures.yunexpress_decrypt(value, AES_KEY)


def test_sm4_key_must_be_16_bytes_of_hex() -> None:
    with pytest.raises(ValueError, match="32 hex"):
        signatures.chinapost_sm4_encrypt(b"x", "abc")


def test_digests_follow_the_documented_formulas() -> None:
    body = b'{"traces": []}'
    md5_hex = hashlib.md5(body + b"key", usedforsecurity=False).hexdigest()
    assert signatures.chinapost_data_digest(body, "key") == base64.b64encode(md5_hex.encode()).decode()
    assert (
        signatures.yunexpress_signature("1700000000000", body, "s")
        == hashlib.sha256(b"1700000000000s" + body).hexdigest()
    )
    assert signatures.seventeen_track_signature(body, "k") == hashlib.sha256(body + b"/k").hexdigest()
    assert len(base64.b64decode(signatures.aftership_signature(body, "s"))) == 32


def test_signature_comparison() -> None:
    assert signatures.signatures_match(" abc ", "abc")
    assert signatures.signatures_match("ABC", "abc", case_insensitive=True)
    assert not signatures.signatures_match("ABC", "abc")
    assert not signatures.signatures_match(None, "abc")
    assert not signatures.signatures_match("", "")


def test_timestamp_window() -> None:
    now = 1_800_000_000_000
    assert signatures.yunexpress_timestamp_fresh(str(now - 299_000), now, 300)
    assert not signatures.yunexpress_timestamp_fresh(str(now + 301_000), now, 300)
    assert not signatures.yunexpress_timestamp_fresh("soon", now, 300)
    assert not signatures.yunexpress_timestamp_fresh(None, now, 300)
