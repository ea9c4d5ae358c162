"""Settings: the contract's names, the dashboard's defaults, and no placeholder in production."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from worker.settings import Settings


def test_defaults_are_the_dashboards(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("QUEUE", "EVENTS_STREAM", "DATABASE_URL", "BCRYPT_ROUNDS", "BROKER_URL"):
        monkeypatch.delenv(f"ACCOUNT_RESET_{name}", raising=False)
    settings = Settings()
    assert settings.queue == "account-reset"
    assert settings.events_stream == "account-reset:events"
    assert settings.database_url == "sqlite:///account-reset.db"
    assert settings.bcrypt_rounds == 12
    assert (settings.limits.min_username_length, settings.limits.min_password_length) == (6, 6)
    assert settings.limits.max_password_length == 50


def test_settings_come_from_account_reset_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCOUNT_RESET_QUEUE", "q")
    monkeypatch.setenv("ACCOUNT_RESET_BROKER_URL", "redis://example:6379/2")
    monkeypatch.setenv("ACCOUNT_RESET_CACHE_URL", "redis://cache:6379/0")
    monkeypatch.setenv("ACCOUNT_RESET_APPID", "my-app")
    monkeypatch.setenv("ACCOUNT_RESET_HASH_KEY", "k" * 16)
    settings = Settings()
    assert (settings.queue, settings.broker_url) == ("q", "redis://example:6379/2")
    assert (settings.cache_url, settings.appid) == ("redis://cache:6379/0", "my-app")


def test_production_refuses_the_development_hash_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCOUNT_RESET_ENVIRONMENT", "production")
    monkeypatch.setenv("ACCOUNT_RESET_BROKER_URL", "redis://example:6379/0")
    monkeypatch.delenv("ACCOUNT_RESET_HASH_KEY", raising=False)
    with pytest.raises(ValidationError, match="ACCOUNT_RESET_HASH_KEY"):
        Settings()
    monkeypatch.setenv("ACCOUNT_RESET_HASH_KEY", "a-real-key-of-some-length")
    assert Settings().hash_key.get_secret_value() == "a-real-key-of-some-length"


REAL_BROKER = "redis://example:6379/0"
GOOD_KEY = "k" * 16


@pytest.mark.parametrize("environment", [None, "development", "production"])
def test_finding_5_a_real_broker_refuses_the_placeholder_key_whatever_environment_says(
    monkeypatch: pytest.MonkeyPatch, environment: str | None
) -> None:
    """Finding 5: with ENVIRONMENT unset, a worker on a real broker silently used the public
    placeholder hash key. Now no ENVIRONMENT lets a real broker run with it."""
    monkeypatch.delenv("ACCOUNT_RESET_HASH_KEY", raising=False)
    monkeypatch.delenv("ACCOUNT_RESET_ENVIRONMENT", raising=False)
    given = {} if environment is None else {"environment": environment}
    with pytest.raises(ValidationError, match="ACCOUNT_RESET_HASH_KEY must be set"):
        Settings(broker_url=REAL_BROKER, **given)  # type: ignore[arg-type]


def test_the_placeholder_key_serves_only_the_embedded_redis_in_development(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ACCOUNT_RESET_HASH_KEY", raising=False)
    monkeypatch.delenv("ACCOUNT_RESET_BROKER_URL", raising=False)
    monkeypatch.delenv("ACCOUNT_RESET_ENVIRONMENT", raising=False)
    assert Settings().is_development
    assert Settings(environment="development").is_development


def test_review_finding_no_setting_turns_a_real_broker_into_development(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The adversarial review of this issue: an internal flag, `EMBEDDED_BROKER=true`, let a
    worker on a real broker run with the placeholder key and bcrypt cost 4. There is no such
    flag now: any broker URL refuses the placeholder (the demo gives its own processes a key)."""
    monkeypatch.delenv("ACCOUNT_RESET_HASH_KEY", raising=False)
    monkeypatch.delenv("ACCOUNT_RESET_ENVIRONMENT", raising=False)
    monkeypatch.setenv("ACCOUNT_RESET_EMBEDDED_BROKER", "true")
    with pytest.raises(ValidationError, match="ACCOUNT_RESET_HASH_KEY must be set"):
        Settings(broker_url="redis://10.0.0.5:6379/0", bcrypt_rounds=4)


@pytest.mark.parametrize("environment", [None, "production"])
def test_finding_5_hash_key_a_is_refused_outside_development(
    monkeypatch: pytest.MonkeyPatch, environment: str | None
) -> None:
    """Finding 5: `HASH_KEY=a` was accepted. Outside development (ENVIRONMENT=production, or
    unset on a real broker) a key under 16 characters is refused, without echoing it."""
    monkeypatch.delenv("ACCOUNT_RESET_ENVIRONMENT", raising=False)
    given = {} if environment is None else {"environment": environment}
    for short in ("a", "short-secret-15"):
        with pytest.raises(ValidationError, match="at least 16 characters") as refused:
            Settings(broker_url=REAL_BROKER, hash_key=short, **given)  # type: ignore[arg-type]
        assert "short-secret" not in str(refused.value)
    assert Settings(broker_url=REAL_BROKER, hash_key=GOOD_KEY, **given).bcrypt_rounds == 12  # type: ignore[arg-type]


@pytest.mark.parametrize("environment", [None, "production"])
def test_finding_5_bcrypt_cost_4_is_refused_outside_development(
    monkeypatch: pytest.MonkeyPatch, environment: str | None
) -> None:
    """Finding 5: bcrypt cost 4 was accepted. Outside development the minimum is 10, the
    dashboard's own default; development (said explicitly) still takes less, for tests."""
    monkeypatch.delenv("ACCOUNT_RESET_ENVIRONMENT", raising=False)
    given = {} if environment is None else {"environment": environment}
    for rounds in (4, 9):
        with pytest.raises(ValidationError, match="BCRYPT_ROUNDS must be at least 10"):
            Settings(broker_url=REAL_BROKER, hash_key=GOOD_KEY, bcrypt_rounds=rounds, **given)  # type: ignore[arg-type]
    assert Settings(broker_url=REAL_BROKER, hash_key=GOOD_KEY, bcrypt_rounds=10, **given)  # type: ignore[arg-type]
    lenient = Settings(
        environment="development", broker_url=REAL_BROKER, hash_key="short", bcrypt_rounds=4
    )
    assert lenient.bcrypt_rounds == 4


def test_the_stock_dashboard_mode_needs_no_key_in_production_but_a_real_bcrypt_cost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The one exception: HASH_MODE=unkeyed is the operator's explicit choice (it warns at
    start); its bcrypt cost is still held to the minimum."""
    monkeypatch.delenv("ACCOUNT_RESET_HASH_KEY", raising=False)
    monkeypatch.delenv("ACCOUNT_RESET_ENVIRONMENT", raising=False)
    assert Settings(broker_url=REAL_BROKER, hash_mode="unkeyed").dashboard_key == ""
    with pytest.raises(ValidationError, match="BCRYPT_ROUNDS"):
        Settings(broker_url=REAL_BROKER, hash_mode="unkeyed", bcrypt_rounds=4)


def test_hash_key_never_shows_in_a_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCOUNT_RESET_HASH_KEY", "very-secret-hash-key")
    assert "very-secret-hash-key" not in repr(Settings())


def test_retry_backoff_must_stay_below_the_visibility_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACCOUNT_RESET_VISIBILITY_TIMEOUT_S", "60")
    monkeypatch.setenv("ACCOUNT_RESET_RETRY_BACKOFF_MAX_S", "60")
    with pytest.raises(ValidationError, match="RETRY_BACKOFF_MAX_S"):
        Settings()


def test_a_payload_key_that_is_not_fernet_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(payload_key="not-a-fernet-key-but-a-secret")
    assert "Fernet keys" in str(refused.value)
    assert "not-a-fernet-key-but-a-secret" not in str(refused.value)


def test_payload_keys_rotate_newest_first() -> None:
    from cryptography.fernet import Fernet

    from worker.settings import payload_sealer

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    sealed_with_old = payload_sealer(Settings(payload_key=old).payload_key).seal({"a": 1})  # type: ignore[arg-type]
    rotated = payload_sealer(Settings(payload_key=f"{new},{old}").payload_key)  # type: ignore[arg-type]
    assert rotated.open(sealed_with_old) == {"a": 1}
    assert Fernet(new.encode()).decrypt(rotated.seal("x").encode()) == b'"x"'


def test_security_settings_have_the_contracts_names_and_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (
        "MAX_CODE_ATTEMPTS",
        "ATTEMPT_WINDOW_SECONDS",
        "CODE_TTL_SECONDS",
        "REQUIRE_SEALED",
    ):
        monkeypatch.delenv(f"ACCOUNT_RESET_{name}", raising=False)
    defaults = Settings()
    assert (defaults.max_code_attempts, defaults.attempt_window_seconds) == (5, 900)
    assert defaults.code_ttl_seconds is None
    assert defaults.require_sealed is False
    monkeypatch.setenv("ACCOUNT_RESET_MAX_CODE_ATTEMPTS", "3")
    monkeypatch.setenv("ACCOUNT_RESET_ATTEMPT_WINDOW_SECONDS", "60")
    monkeypatch.setenv("ACCOUNT_RESET_CODE_TTL_SECONDS", "3600")
    configured = Settings()
    assert (configured.max_code_attempts, configured.attempt_window_seconds) == (3, 60)
    assert configured.code_ttl_seconds == 3600


def test_requiring_sealed_secrets_needs_sealing_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared Fernet key alone no longer opens producers' fields (legacy, by setting only)."""
    from cryptography.fernet import Fernet

    from tests.support.keys import TEST_SEALING_KEYS_JSON

    for name in ("PAYLOAD_KEY", "SEALING_KEYS", "SEALING_KEYS_FILE", "LEGACY_FERNET_SEALED"):
        monkeypatch.delenv(f"ACCOUNT_RESET_{name}", raising=False)
    monkeypatch.setenv("ACCOUNT_RESET_REQUIRE_SEALED", "true")
    monkeypatch.setenv("ACCOUNT_RESET_PAYLOAD_KEY", Fernet.generate_key().decode())
    with pytest.raises(ValidationError, match="ACCOUNT_RESET_SEALING_KEYS"):
        Settings()
    monkeypatch.setenv("ACCOUNT_RESET_LEGACY_FERNET_SEALED", "true")
    assert Settings().require_sealed is True
    monkeypatch.delenv("ACCOUNT_RESET_LEGACY_FERNET_SEALED")
    monkeypatch.setenv("ACCOUNT_RESET_SEALING_KEYS", TEST_SEALING_KEYS_JSON)
    assert Settings().require_sealed is True


def test_a_stock_dashboard_is_an_explicit_choice_never_a_silent_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No HASH_KEY matched a stock dashboard; `undefined` found rows but locked users out."""
    monkeypatch.delenv("ACCOUNT_RESET_HASH_KEY", raising=False)
    assert Settings().hash_mode == "keyed"
    for stock_like_key in ("undefined", ""):
        with pytest.raises(ValidationError, match="ACCOUNT_RESET_HASH_MODE=unkeyed"):
            Settings(hash_key=stock_like_key)
    unkeyed = Settings(hash_mode="unkeyed")
    assert unkeyed.dashboard_key == ""
    with pytest.raises(ValidationError, match="unset ACCOUNT_RESET_HASH_KEY"):
        Settings(hash_mode="unkeyed", hash_key="a-real-key")


def test_production_takes_a_stock_dashboard_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACCOUNT_RESET_HASH_KEY", raising=False)
    settings = Settings(
        environment="production", broker_url="redis://example:6379/0", hash_mode="unkeyed"
    )
    assert settings.dashboard_key == ""


def test_the_dashboards_metrics_settings_are_checked() -> None:
    assert Settings().dashboard_metrics == "database"
    with pytest.raises(ValidationError, match="DASHBOARD_METRICS_URL"):
        Settings(dashboard_metrics="redis")
    with pytest.raises(ValidationError, match="IANA time zone"):
        Settings(dashboard_timezone="Mars/Olympus")
    assert Settings(dashboard_timezone="Europe/Paris").dashboard_timezone == "Europe/Paris"


# Issue 13, finding 4: the idle-in-transaction bound.


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    for name in ("MAX_RETRIES", "DB_LOCK_TIMEOUT_S", "DB_IDLE_IN_TRANSACTION_TIMEOUT_S"):
        monkeypatch.delenv(f"ACCOUNT_RESET_{name}", raising=False)

    def made(**values: Any) -> Settings:
        return Settings(environment="development", **values)

    return made


def test_finding_4_the_idle_bound_is_below_the_others_lock_retry_budget(
    settings: Callable[..., Settings],
) -> None:
    """Default: 10 s, below the 30 s budget of 6 attempts x 5 s lock timeout."""
    assert settings().idle_in_transaction_timeout_s == 10.0
    # A budget of 2 x 0.5 s: unset, the bound follows it down.
    assert settings(max_retries=1, db_lock_timeout_s=0.5).idle_in_transaction_timeout_s == 0.8
    assert settings(db_idle_in_transaction_timeout_s=29).idle_in_transaction_timeout_s == 29
    with pytest.raises(ValidationError, match="ACCOUNT_RESET_DB_IDLE_IN_TRANSACTION_TIMEOUT_S"):
        settings(db_idle_in_transaction_timeout_s=30)
    with pytest.raises(ValidationError, match="ACCOUNT_RESET_DB_IDLE_IN_TRANSACTION_TIMEOUT_S"):
        settings(db_idle_in_transaction_timeout_s=10, max_retries=0)


def test_finding_10_every_password_and_key_compose_passes_comes_from_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Finding 10: compose passed the hash key, the payload key and the URLs holding passwords
    as environment variables (`docker inspect` shows them). Each has a `_FILE` variant, read
    as Docker secrets are written (one value, maybe a trailing newline)."""
    values = {
        "HASH_KEY": "k" * 32,
        "PAYLOAD_KEY": Fernet.generate_key().decode(),
        "BROKER_URL": "redis://account-reset-worker:broker-password@redis:6379/0",
        "CACHE_URL": "redis://cache-user:cache-password@cache:6379/0",
        "DATABASE_URL": "postgresql://account_reset:db-password@postgres:5432/accounts",
    }
    for name, value in values.items():
        monkeypatch.delenv(f"ACCOUNT_RESET_{name}", raising=False)
        (tmp_path / name).write_text(value + "\n")
        monkeypatch.setenv(f"ACCOUNT_RESET_{name}_FILE", str(tmp_path / name))

    settings = Settings()

    assert settings.hash_key.get_secret_value() == values["HASH_KEY"]
    assert settings.payload_key is not None
    assert settings.payload_key.get_secret_value() == values["PAYLOAD_KEY"]
    assert (settings.broker_url, settings.cache_url) == (values["BROKER_URL"], values["CACHE_URL"])
    assert settings.database_url == values["DATABASE_URL"]
    monkeypatch.setenv("ACCOUNT_RESET_DATABASE_URL", values["DATABASE_URL"])
    with pytest.raises(ValidationError) as both:
        Settings()
    assert "set ACCOUNT_RESET_DATABASE_URL or ACCOUNT_RESET_DATABASE_URL_FILE, not both" in str(
        both.value
    )
    assert "db-password" not in str(both.value)
