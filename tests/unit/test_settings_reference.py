"""docs/settings.md is generated from the settings classes and kept current: every variable is
there with its description, and no secret default is printed."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from client.settings import ClientSettings
from worker.ops import settings_reference
from worker.settings import Settings

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_docs_settings_md_is_current() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == settings_reference.render(), (
        "docs/settings.md is stale: run `make docs`"
        " (python -m worker.ops.settings_reference --output docs/settings.md)"
    )


@pytest.mark.parametrize("model", [Settings, ClientSettings])
def test_every_setting_is_listed_under_its_variable(model: type[BaseSettings]) -> None:
    text = settings_reference.render()
    for name in model.model_fields:
        assert f"| `ACCOUNT_RESET_{name.upper()}` |" in text, name


@pytest.mark.parametrize("model", [Settings, ClientSettings])
def test_every_setting_has_a_description(model: type[BaseSettings]) -> None:
    missing = [name for name, field in model.model_fields.items() if not field.description]
    assert missing == []


def test_a_setting_without_a_description_is_refused() -> None:
    class Undescribed(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="ACCOUNT_RESET_")
        queue: str = "q"

    with pytest.raises(ValueError, match=r"Undescribed\.queue has no description"):
        settings_reference.table(Undescribed, ["queue"])


def test_a_secret_default_is_never_printed_unless_a_public_placeholder() -> None:
    class WithSecrets(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="ACCOUNT_RESET_")
        api_key: SecretStr = Field(default=SecretStr("s3cret-not-a-placeholder"), description="k")

    text = settings_reference.table(WithSecrets, ["api_key"])
    assert "s3cret-not-a-placeholder" not in text
    assert "| `ACCOUNT_RESET_API_KEY` | secret text | (not shown) | k |" in text
    assert "`development-only-hash-key` (placeholder)" in settings_reference.render()


def test_types_bounds_and_defaults_are_written_as_an_operator_sets_them() -> None:
    text = settings_reference.render()
    assert "| `ACCOUNT_RESET_BCRYPT_ROUNDS` | integer ≥ 4, ≤ 31 | `12` |" in text
    assert "| `ACCOUNT_RESET_HASH_MODE` | `keyed` or `unkeyed` | `keyed` |" in text
    assert "| `ACCOUNT_RESET_SENTINEL_TLS` | boolean | `false` |" in text
    assert "| `ACCOUNT_RESET_DB_LOCK_TIMEOUT_S` | number > 0 | `5` |" in text
    assert "| `ACCOUNT_RESET_CODE_TTL_SECONDS` | integer ≥ 1 | unset |" in text
