from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from shared.carriers import carrier_slug
from shared.settings import ServiceSettings


class ExampleSettings(ServiceSettings):
    service_name = "example"


def test_dev_defaults_point_at_local_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VTR_DATABASE_URL", raising=False)
    settings = ExampleSettings()
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.database_url == "sqlite+aiosqlite:///.vtr/example.db"
    assert settings.kafka_enable_idempotence is False


def test_api_keys_are_comma_separated_and_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VTR_API_KEYS", "alpha, beta,,gamma")
    settings = ExampleSettings()
    assert settings.api_key_values() == [b"alpha", b"beta", b"gamma"]
    assert "alpha" not in repr(settings)


def test_prod_refuses_dev_secrets_and_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VTR_ENV", "prod")
    monkeypatch.setenv("VTR_DATABASE_URL", "postgresql+asyncpg://db/vtr")
    with pytest.raises(ValidationError, match="VTR_API_KEYS"):
        ExampleSettings()
    monkeypatch.setenv("VTR_API_KEYS", "a-real-key")
    assert ExampleSettings().api_keys == [SecretStr("a-real-key")]


def test_prod_accepts_no_unscoped_api_keys_once_keys_are_issued(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VTR_ENV", "prod")
    monkeypatch.setenv("VTR_DATABASE_URL", "postgresql+asyncpg://db/vtr")
    monkeypatch.setenv("VTR_API_KEYS", "")
    assert ExampleSettings().api_keys == []
    monkeypatch.setenv("VTR_API_KEYS", "a-real-key,dev-api-key")
    with pytest.raises(ValidationError, match="VTR_API_KEYS"):
        ExampleSettings()


def test_prod_refuses_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VTR_ENV", "prod")
    monkeypatch.setenv("VTR_API_KEYS", "a-real-key")
    monkeypatch.delenv("VTR_DATABASE_URL", raising=False)
    with pytest.raises(ValidationError, match="VTR_DATABASE_URL"):
        ExampleSettings()


@pytest.mark.parametrize(
    ("uploaded", "slug"),
    [
        ("China Post", "china-post"),
        ("CHINA POST", "china-post"),
        ("Yun Express", "yunexpress"),
        ("YANWEN", "yanwen"),
        ("yun-express", "yunexpress"),
        ("燕文", "yanwen"),
        ("Fast Cargo", None),
    ],
)
def test_carrier_names_map_to_slugs(uploaded: str, slug: str | None) -> None:
    assert carrier_slug(uploaded) == slug


def test_rate_limit_overrides_are_checked_at_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VTR_RATE_LIMIT_OVERRIDES", "0123456789ab=5/10, env-1=off")
    assert ExampleSettings().rate_limit_overrides == ["0123456789ab=5/10", "env-1=off"]
    monkeypatch.setenv("VTR_RATE_LIMIT_OVERRIDES", "0123456789ab=fast")
    with pytest.raises(ValidationError, match="rate_limit_overrides"):
        ExampleSettings()
