"""Every setting of the worker, read from `ACCOUNT_RESET_*` environment variables."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import CommandLimits

DEVELOPMENT_HASH_KEY = "development-only-hash-key"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ACCOUNT_RESET_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    environment: Literal["development", "production"] = "development"

    # Broker and queue. No broker URL: an embedded Redis is started (development only).
    broker_url: str | None = None
    queue: str = "account-reset"
    appid: str = "dashboard"

    # Result events, on the broker's Redis unless another is named.
    events_url: str | None = None
    events_stream: str = "account-reset:events"
    events_stream_maxlen: int | None = Field(default=1_000_000, ge=1)

    # The dashboard's storage cache; unset means the dashboard runs without one.
    cache_url: str | None = None

    database_url: str = "sqlite:///account-reset.db"
    db_pool_size: int = Field(default=2, ge=1)

    # Hashes shared with the dashboard (its `dashboardEncryptionKey`).
    hash_key: SecretStr = SecretStr(DEVELOPMENT_HASH_KEY)
    bcrypt_rounds: int = Field(default=12, ge=4, le=31)

    # The dashboard's length rules.
    min_username_length: int = Field(default=6, ge=1)
    min_password_length: int = Field(default=6, ge=1)
    max_password_length: int = Field(default=50, ge=1)
    max_field_length: int = Field(default=1024, ge=1)

    # Delivery: late acknowledgement, and how soon a lost worker's commands come back.
    visibility_timeout_s: int = Field(default=60, ge=5)
    prefetch_multiplier: int = Field(default=1, ge=1)
    worker_concurrency: int | None = Field(default=None, ge=1)
    soft_shutdown_timeout_s: float = Field(default=30.0, ge=0)
    task_events: bool = True

    # Transient faults (database, Redis) are retried with exponential backoff and jitter.
    max_retries: int = Field(default=5, ge=0)
    # Below the visibility timeout: a retry waits in the worker as an unacknowledged message,
    # and one held past the timeout would be delivered a second time.
    retry_backoff_max_s: int = Field(default=30, ge=1)

    log_level: str = "INFO"

    @model_validator(mode="after")
    def _retries_within_visibility(self) -> Settings:
        if self.retry_backoff_max_s >= self.visibility_timeout_s:
            raise ValueError(
                "ACCOUNT_RESET_RETRY_BACKOFF_MAX_S must be below ACCOUNT_RESET_VISIBILITY_TIMEOUT_S"
            )
        return self

    @model_validator(mode="after")
    def _refuse_development_secrets(self) -> Settings:
        if self.environment != "development":
            key = self.hash_key.get_secret_value()
            if not key or key == DEVELOPMENT_HASH_KEY:
                raise ValueError("ACCOUNT_RESET_HASH_KEY must be set outside development")
            if self.broker_url is None:
                raise ValueError("ACCOUNT_RESET_BROKER_URL must be set outside development")
        return self

    @property
    def limits(self) -> CommandLimits:
        return CommandLimits(
            min_username_length=self.min_username_length,
            min_password_length=self.min_password_length,
            max_password_length=self.max_password_length,
            max_field_length=self.max_field_length,
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
