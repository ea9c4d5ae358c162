"""Every setting of the worker, read from `ACCOUNT_RESET_*` environment variables."""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import CommandLimits
from worker.hashing import UNSET_KEY_IN_JAVASCRIPT
from worker.sealing import Sealer

DEVELOPMENT_HASH_KEY = "development-only-hash-key"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ACCOUNT_RESET_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    environment: Literal["development", "production"] = "development"

    # Broker and queue. No broker URL: an embedded Redis is started (development only).
    broker_url: str | None = None
    queue: str = "account-reset"
    # Session revocations' own queue, consumed by nodes of their own (`account-reset worker
    # --sessions`), so that they never wait behind password resets (bcrypt) or junk. Unset:
    # both commands share QUEUE. Either way QUEUE's nodes still take both commands.
    sessions_queue: str | None = None
    # What this node consumes: "all" (QUEUE, both commands) or "sessions" (SESSIONS_QUEUE,
    # reset-session-key only); set by `account-reset worker --sessions`.
    node_role: Literal["all", "sessions"] = "all"
    appid: str = "dashboard"

    # Result events, on the broker's Redis unless another is named.
    events_url: str | None = None
    events_stream: str = "account-reset:events"
    events_stream_maxlen: int | None = Field(default=1_000_000, ge=1)
    # Also drop events older than this (at each relay round); unset keeps them, length permitting.
    events_retention_seconds: int | None = Field(default=None, ge=60)

    # The dashboard's storage cache; unset means the dashboard runs without one.
    cache_url: str | None = None

    database_url: str = "sqlite:///account-reset.db"
    db_pool_size: int = Field(default=2, ge=1)

    # Hashes shared with the dashboard. keyed: HASH_KEY is its `dashboardEncryptionKey`, which
    # the application embedding the dashboard sets. unkeyed: a stock dashboard that sets none
    # (lookups hashed with the text "undefined", passwords with no key); HASH_KEY must be unset.
    hash_mode: Literal["keyed", "unkeyed"] = "keyed"
    hash_key: SecretStr = SecretStr(DEVELOPMENT_HASH_KEY)
    bcrypt_rounds: int = Field(default=12, ge=4, le=31)

    # The dashboard's own bookkeeping: where it counts `resetcodes-used` (its `metrics` table,
    # its Redis metrics hashes with STORAGE_METRICS=redis, or nowhere with DISABLE_METRICS),
    # and the time zone of its Node process, whose local date names the day counted.
    dashboard_metrics: Literal["database", "redis", "off"] = "database"
    dashboard_metrics_url: str | None = None
    dashboard_timezone: str = "UTC"

    # The dashboard's length rules.
    min_username_length: int = Field(default=6, ge=1)
    min_password_length: int = Field(default=6, ge=1)
    max_password_length: int = Field(default=50, ge=1)
    max_field_length: int = Field(default=1024, ge=1)

    # Delivery: late acknowledgement, and how soon a lost worker's commands come back: after
    # the visibility timeout, at the next sweep for abandoned messages (within about a minute).
    visibility_timeout_s: int = Field(default=50, ge=5)
    restore_interval_s: int = Field(default=5, ge=1)
    prefetch_multiplier: int = Field(default=1, ge=1)
    worker_concurrency: int | None = Field(default=None, ge=1)
    soft_shutdown_timeout_s: float = Field(default=30.0, ge=0)
    task_events: bool = True

    # Transient faults (database, Redis) are retried with exponential backoff and jitter.
    max_retries: int = Field(default=5, ge=0)
    # Below the visibility timeout: a retry waits in the worker as an unacknowledged message,
    # and one held past the timeout would be delivered a second time.
    retry_backoff_max_s: int = Field(default=30, ge=1)

    # A row lock held longer than this (a stuck transaction) is a transient fault, retried.
    db_lock_timeout_s: float = Field(default=5.0, gt=0)

    # Commands that cannot be processed: poison messages, and faults that outlasted retries.
    dead_letters_key: str = "account-reset:dead-letters"
    dead_letters_maxlen: int = Field(default=100_000, ge=1)
    # A message body larger than this is dead-lettered unread (a real command is under 4 KiB);
    # a whole queue entry (envelope and headers too) larger than this is dropped unparsed.
    max_message_bytes: int = Field(default=64 * 1024, ge=1024)
    max_entry_bytes: int = Field(default=256 * 1024, ge=4096)
    # Fernet keys, comma-separated, newest first: producers seal secret fields with the first,
    # dead letters are sealed with it, and any of them opens. Unset: sealed fields are refused
    # and a dead letter withholds secret fields instead.
    payload_key: SecretStr | None = None
    # Refuse (invalid-payload) a plaintext new-password or secret-code: producers must seal.
    require_sealed: bool = False

    # Guessing stopped: this many wrong reset codes for an account within the window, and its
    # further attempts get too-many-attempts, unchecked, until the window passes.
    max_code_attempts: int = Field(default=5, ge=1)
    attempt_window_seconds: int = Field(default=900, ge=1)
    attempts_key_prefix: str = "account-reset:code-attempts"
    # Reset codes older than this are invalid-reset-code. Unset: codes never expire.
    code_ttl_seconds: int | None = Field(default=None, ge=1)

    # The outbox relay publishes outcomes committed but never published (a crash in between).
    relay_interval_s: float = Field(default=5.0, gt=0)
    relay_grace_s: float = Field(default=10.0, ge=0)
    relay_batch_size: int = Field(default=500, ge=1)
    # Outcome records (the idempotency keys) are kept this long after they are published.
    outcome_retention_days: int = Field(default=30, ge=1)

    log_level: str = "INFO"
    # json: one JSON object per log line (command, command_id, outcome, duration_ms fields).
    log_format: Literal["text", "json"] = "text"
    # Prometheus metrics on this port (all pool processes summed); unset: not served.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)

    # Liveness: where the worker notes that it consumes, and how old a note may be for
    # `account-reset health` to pass.
    health_file: Path = Path(tempfile.gettempdir()) / "account-reset-worker.health"
    health_max_age_s: float = Field(default=30.0, gt=0)

    @field_validator("payload_key")
    @classmethod
    def _payload_keys_are_fernet_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            return None
        if value is not None:
            try:
                payload_sealer(value)
            except ValueError:
                raise ValueError(
                    "ACCOUNT_RESET_PAYLOAD_KEY must be Fernet keys (url-safe base64 of 32 bytes),"
                    " comma-separated"
                ) from None
        return value

    @model_validator(mode="after")
    def _hash_mode_matches_key(self) -> Settings:
        key = self.hash_key.get_secret_value()
        if self.hash_mode == "unkeyed" and "hash_key" in self.model_fields_set:
            raise ValueError(
                "ACCOUNT_RESET_HASH_MODE=unkeyed is a dashboard without a key: unset"
                " ACCOUNT_RESET_HASH_KEY, or set ACCOUNT_RESET_HASH_MODE=keyed"
            )
        if self.hash_mode == "keyed" and key in ("", UNSET_KEY_IN_JAVASCRIPT):
            raise ValueError(
                "ACCOUNT_RESET_HASH_KEY is empty or 'undefined', which is a dashboard without a"
                " key: set ACCOUNT_RESET_HASH_MODE=unkeyed and unset ACCOUNT_RESET_HASH_KEY"
            )
        return self

    @field_validator("dashboard_timezone")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                "ACCOUNT_RESET_DASHBOARD_TIMEZONE must be an IANA time zone such as UTC"
            ) from None
        return value

    @model_validator(mode="after")
    def _redis_metrics_need_a_url(self) -> Settings:
        if self.dashboard_metrics == "redis" and not self.dashboard_metrics_url:
            raise ValueError(
                "ACCOUNT_RESET_DASHBOARD_METRICS=redis needs ACCOUNT_RESET_DASHBOARD_METRICS_URL"
                " (the dashboard's STORAGE_METRICS_REDIS_URL)"
            )
        return self

    @model_validator(mode="after")
    def _an_entry_holds_its_body(self) -> Settings:
        # The body is base64 in the entry: 4/3 of its size, and headers besides.
        if self.max_entry_bytes < self.max_message_bytes * 4 // 3 + 4096:
            raise ValueError(
                "ACCOUNT_RESET_MAX_ENTRY_BYTES must exceed 4/3 of ACCOUNT_RESET_MAX_MESSAGE_BYTES"
                " plus 4096 (a body is base64 in its entry)"
            )
        return self

    @model_validator(mode="after")
    def _a_sessions_node_needs_its_queue(self) -> Settings:
        if self.node_role == "sessions" and not self.sessions_queue:
            raise ValueError("a sessions node (--sessions) needs ACCOUNT_RESET_SESSIONS_QUEUE")
        if self.sessions_queue is not None and self.sessions_queue == self.queue:
            raise ValueError("ACCOUNT_RESET_SESSIONS_QUEUE must differ from ACCOUNT_RESET_QUEUE")
        return self

    @property
    def consumed_queue(self) -> str:
        """The one queue this node takes messages from."""
        if self.node_role == "sessions":
            assert self.sessions_queue is not None
            return self.sessions_queue
        return self.queue

    @model_validator(mode="after")
    def _sealing_needs_a_key(self) -> Settings:
        if self.require_sealed and self.payload_key is None:
            raise ValueError("ACCOUNT_RESET_REQUIRE_SEALED needs ACCOUNT_RESET_PAYLOAD_KEY")
        return self

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
            if self.hash_mode == "keyed" and key == DEVELOPMENT_HASH_KEY:
                raise ValueError(
                    "ACCOUNT_RESET_HASH_KEY must be set outside development (or, for a dashboard"
                    " without a key, ACCOUNT_RESET_HASH_MODE=unkeyed)"
                )
            if self.broker_url is None:
                raise ValueError("ACCOUNT_RESET_BROKER_URL must be set outside development")
        return self

    @property
    def dashboard_key(self) -> str:
        """The key the dashboard hashes with; "" for a stock dashboard (see worker/hashing.py)."""
        return "" if self.hash_mode == "unkeyed" else self.hash_key.get_secret_value()

    @property
    def limits(self) -> CommandLimits:
        return CommandLimits(
            min_username_length=self.min_username_length,
            min_password_length=self.min_password_length,
            max_password_length=self.max_password_length,
            max_field_length=self.max_field_length,
        )


def payload_sealer(keys: SecretStr) -> Sealer:
    return Sealer([key.strip() for key in keys.get_secret_value().split(",") if key.strip()])


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
