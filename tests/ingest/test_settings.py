"""Ingest settings: prod refuses development secrets, naming the variables."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.ingest.settings import IngestSettings

PROD_SECRETS = {
    "VTR_ENV": "prod",
    "VTR_API_KEYS": "k1,k2",
    "VTR_CHINAPOST_SM4_KEY": "00112233445566778899aabbccddeeff",
    "VTR_CHINAPOST_DIGEST_KEY": "digest",
    "VTR_YUNEXPRESS_SECRET": "yun",
    "VTR_YANWEN_TOKEN": "yan",
    "VTR_17TRACK_API_KEY": "seventeen",
    "VTR_AFTERSHIP_SECRET": "after",
}


def test_prod_with_every_secret_starts_without_a_database(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PROD_SECRETS.items():
        monkeypatch.setenv(name, value)
    settings = IngestSettings()
    assert settings.seventeen_track_api_key.get_secret_value() == "seventeen"
    assert settings.chinapost_sm4_key_hex() == "00112233445566778899aabbccddeeff"


@pytest.mark.parametrize("missing", sorted(set(PROD_SECRETS) - {"VTR_ENV"}))
def test_prod_names_the_missing_secret(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    for name, value in PROD_SECRETS.items():
        if name != missing:
            monkeypatch.setenv(name, value)
    monkeypatch.delenv(missing, raising=False)
    with pytest.raises(ValidationError) as refused:
        IngestSettings()
    assert missing in str(refused.value)
    assert "DATABASE_URL" not in str(refused.value)


def test_sm4_key_must_be_16_bytes_in_hex_or_base64() -> None:
    with pytest.raises(ValidationError, match="VTR_CHINAPOST_SM4_KEY must be 16 bytes"):
        IngestSettings(chinapost_sm4_key="not-hex")
    with pytest.raises(ValidationError, match="VTR_CHINAPOST_SM4_KEY must be 16 bytes"):
        IngestSettings(chinapost_sm4_key="ASNFZ4mrze/+3LqYdlQy")  # base64 of 15 bytes
    # EMS issues the key as 24 base64 characters: the same 16 bytes as the hex form.
    as_issued = IngestSettings(chinapost_sm4_key="ASNFZ4mrze/+3LqYdlQyEA==")
    assert as_issued.chinapost_sm4_key_hex() == "0123456789abcdeffedcba9876543210"
    assert IngestSettings(chinapost_sm4_key="0123456789ABCDEFFEDCBA9876543210").chinapost_sm4_key_hex() == (
        "0123456789abcdeffedcba9876543210"
    )


def test_defaults() -> None:
    settings = IngestSettings()
    assert (settings.http_port, settings.max_body_bytes, settings.yunexpress_timestamp_window_seconds) == (
        8000,
        1024 * 1024,
        300,
    )
    assert settings.chinapost_sm4_key_hex() == "0123456789abcdeffedcba9876543210"


def test_optional_alternatives_are_checked_only_when_switched_on() -> None:
    # The AES key is only read with the encrypted envelope on, so only then is its length checked.
    assert IngestSettings(yunexpress_aes_key="short").yunexpress_encrypted is False
    with pytest.raises(ValidationError, match="VTR_YUNEXPRESS_AES_KEY must be 16, 24 or 32"):
        IngestSettings(yunexpress_encrypted=True, yunexpress_aes_key="short")
    assert IngestSettings(register_17track_carriers="china-post, yanwen").register_17track_carriers == [
        "china-post",
        "yanwen",
    ]


@pytest.mark.parametrize(
    ("switch", "value", "needed"),
    [
        ("VTR_YUNEXPRESS_SIGNING", "token-hmac", "VTR_YUNEXPRESS_TOKEN"),
        ("VTR_YUNEXPRESS_ENCRYPTED", "true", "VTR_YUNEXPRESS_AES_KEY"),
        ("VTR_REGISTER_AFTERSHIP_CARRIERS", "yunexpress", "VTR_AFTERSHIP_API_KEY"),
    ],
)
def test_prod_needs_an_optional_secret_once_its_alternative_is_on(
    monkeypatch: pytest.MonkeyPatch, switch: str, value: str, needed: str
) -> None:
    for name, secret in PROD_SECRETS.items():
        monkeypatch.setenv(name, secret)
    monkeypatch.setenv(switch, value)
    with pytest.raises(ValidationError) as refused:
        IngestSettings()
    assert needed in str(refused.value)
    monkeypatch.setenv(needed, "0123456789abcdef")
    assert IngestSettings().env == "prod"
