"""Every setting of the worker, read from `ACCOUNT_RESET_*` environment variables."""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from client.redis_clients import RedisOptions, check_redis_url
from client.settings import read_key_file
from client.signing import check_key_pair
from schemas import CommandLimits
from worker.broker.signing import check_store
from worker.security.hashing import UNSET_KEY_IN_JAVASCRIPT
from worker.security.sealing import Sealer
from worker.security.sealing_keys import SealingKeys

DEVELOPMENT_HASH_KEY = "development-only-hash-key"
# Outside development: shorter keys are guessable offline from a copy of the database, and a
# bcrypt cost below 10 (the dashboard's own default) makes stolen password hashes cheap to crack.
MIN_HASH_KEY_LENGTH = 16
MIN_PRODUCTION_BCRYPT_ROUNDS = 10
# Long enough for a command's own work inside its transaction (bcrypt, a Redis counter).
DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_S = 10.0


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ACCOUNT_RESET_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    # Unset: development on an embedded Redis (no BROKER_URL), production on a real broker, so a
    # worker that reaches a real broker never runs with development's leniency by omission.
    environment: Literal["development", "production"] | None = None

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

    # Redis Sentinel, for any sentinel:// URL above: the master's name (required), the
    # sentinels' own password, and TLS to the sentinels and the master they name.
    sentinel_master: str | None = None
    sentinel_password: SecretStr | None = None
    sentinel_tls: bool = False
    # The CA of the Redis servers' certificates (rediss://, SENTINEL_TLS) when a URL names none
    # in ssl_ca_certs; unset: the system's CAs. Certificates are always verified.
    redis_ca_file: Path | None = None

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
    # A transaction left idle this long (its worker frozen or hung) is ended by the database,
    # which frees its row locks before the other workers' retries for them run out. Unset:
    # 10 s, or 80 % of that retry budget when the budget is shorter (see
    # `lock_retry_budget_s`); set, it must be below the budget.
    db_idle_in_transaction_timeout_s: float | None = Field(default=None, gt=0)

    # Commands that cannot be processed: poison messages, and faults that outlasted retries.
    dead_letters_key: str = "account-reset:dead-letters"
    dead_letters_maxlen: int = Field(default=100_000, ge=1)
    # A message body larger than this is dead-lettered unread (a real command is under 4 KiB);
    # a whole queue entry (envelope and headers too) larger than this is dropped unparsed.
    max_message_bytes: int = Field(default=64 * 1024, ge=1024)
    max_entry_bytes: int = Field(default=256 * 1024, ge=4096)
    # Fernet keys, comma-separated, newest first: dead letters' secret fields are sealed with the
    # first, and any of them opens. Unset: a dead letter withholds secret fields instead.
    payload_key: SecretStr | None = None
    # The worker's private sealing keys (a JWK Set, newest first: `account-reset sealing-keys
    # new`), or a file holding them. Producers seal secret fields to the newest key's public
    # half, each bound to its command, field and command_id; any key in the set opens.
    sealing_keys: SecretStr | None = None
    sealing_keys_file: Path | None = None
    # A field sealed longer ago than this is refused (sealed-value-expired): a token copied out
    # of the broker's files is of no use for long. Rotation drops a key after this plus the
    # queue's backlog.
    sealed_max_age_s: int = Field(default=3600, ge=1)
    # Legacy, goes in 0.3.0: also open fields producers sealed with Fernet under PAYLOAD_KEY,
    # the format before 0.2.0, which binds nothing (any command, any field, any age).
    legacy_fernet_sealed: bool = False
    # Refuse (invalid-payload) a plaintext new-password or secret-code: producers must seal.
    require_sealed: bool = False
    # Celery's message signing (RSA, PEM), all three or none: the worker then accepts only
    # messages signed by a certificate in CERT_STORE (a directory), each carrying its
    # command_id, and signs its own retries with KEY_FILE, whose CERTIFICATE_FILE must be in
    # the store. KEY_FILE and CERTIFICATE_FILE alone are a producer's (`account-reset enqueue`).
    signing_key_file: Path | None = None
    signing_certificate_file: Path | None = None
    signing_cert_store: Path | None = None

    # Guessing stopped: this many wrong reset codes for an account within the window, and its
    # further attempts get too-many-attempts, unchecked, until the window passes.
    max_code_attempts: int = Field(default=5, ge=1)
    attempt_window_seconds: int = Field(default=900, ge=1)
    # The same, per source (when the producer passes one) over all of an appid's accounts, and
    # per appid over everything: guesses spread thin over many accounts are stopped too.
    max_source_attempts: int = Field(default=20, ge=1)
    source_attempt_window_seconds: int = Field(default=900, ge=1)
    max_appid_attempts: int = Field(default=200, ge=1)
    appid_attempt_window_seconds: int = Field(default=900, ge=1)
    attempts_key_prefix: str = "account-reset:code-attempts"
    # Reset codes older than this are invalid-reset-code. Unset: codes never expire.
    code_ttl_seconds: int | None = Field(default=None, ge=1)

    # The outbox relay publishes outcomes committed but never published (a crash in between).
    relay_interval_s: float = Field(default=5.0, gt=0)
    relay_grace_s: float = Field(default=10.0, ge=0)
    relay_batch_size: int = Field(default=500, ge=1)
    # Outcome records (the idempotency keys) are kept this long after they are published.
    outcome_retention_days: int = Field(default=30, ge=1)
    # The key of the request fingerprints that bind a command_id to its request. Unset: derived
    # from HASH_KEY in keyed mode; in unkeyed mode the secret fields are left out of them.
    idempotency_key: SecretStr | None = None
    # What a different request under a recorded command_id is told; invalid-payload is the
    # answer before command-id-conflict existed, for consumers that do not know the new code.
    command_id_conflict_code: Literal["command-id-conflict", "invalid-payload"] = (
        "command-id-conflict"
    )

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

    @model_validator(mode="before")
    @classmethod
    def _sealing_keys_from_their_file(cls, data: Any) -> Any:
        return read_key_file(data, field="sealing_keys", variable="ACCOUNT_RESET_SEALING_KEYS")

    @field_validator("sealing_keys")
    @classmethod
    def _sealing_keys_are_a_private_p256_set(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        SealingKeys.from_json(value.get_secret_value())  # its ValueError names the variable
        return value

    @property
    def sealing_key_set(self) -> SealingKeys | None:
        """The keys that open producers' sealed fields, newest first."""
        keys = self.sealing_keys
        return None if keys is None else SealingKeys.from_json(keys.get_secret_value())

    @field_validator("idempotency_key")
    @classmethod
    def _idempotency_key_is_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < MIN_HASH_KEY_LENGTH:
            raise ValueError(
                f"ACCOUNT_RESET_IDEMPOTENCY_KEY must be at least {MIN_HASH_KEY_LENGTH} characters"
            )
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

    @field_validator("sentinel_master", "redis_ca_file", mode="before")
    @classmethod
    def _empty_redis_option_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _redis_urls_are_usable(self) -> Settings:
        for name in ("broker_url", "events_url", "cache_url", "dashboard_metrics_url"):
            check_redis_url(
                getattr(self, name), self.redis_options, variable=f"ACCOUNT_RESET_{name.upper()}"
            )
        return self

    @property
    def redis_options(self) -> RedisOptions:
        """How every Redis URL of the worker is reached (Sentinel, TLS)."""
        password = self.sentinel_password
        return RedisOptions(
            sentinel_master=self.sentinel_master,
            sentinel_password=password.get_secret_value() if password else None,
            sentinel_tls=self.sentinel_tls,
            ca_file=self.redis_ca_file,
        )

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
        if self.legacy_fernet_sealed and self.payload_key is None:
            raise ValueError("ACCOUNT_RESET_LEGACY_FERNET_SEALED needs ACCOUNT_RESET_PAYLOAD_KEY")
        if self.require_sealed and self.sealing_keys is None and not self.legacy_fernet_sealed:
            raise ValueError(
                "ACCOUNT_RESET_REQUIRE_SEALED needs ACCOUNT_RESET_SEALING_KEYS (or, legacy,"
                " ACCOUNT_RESET_PAYLOAD_KEY with ACCOUNT_RESET_LEGACY_FERNET_SEALED=true)"
            )
        return self

    @field_validator(
        "signing_key_file", "signing_certificate_file", "signing_cert_store", mode="before"
    )
    @classmethod
    def _empty_path_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _signing_files_hold_together(self) -> Settings:
        check_key_pair(
            key_file=self.signing_key_file, certificate_file=self.signing_certificate_file
        )
        if self.signing_cert_store is not None:
            if self.signing_certificate_file is None:
                raise ValueError(
                    "ACCOUNT_RESET_SIGNING_CERT_STORE needs ACCOUNT_RESET_SIGNING_KEY_FILE and"
                    " ACCOUNT_RESET_SIGNING_CERTIFICATE_FILE (the worker signs its own retries)"
                )
            check_store(self.signing_cert_store, certificate_file=self.signing_certificate_file)
        return self

    @property
    def signing(self) -> bool:
        """Message signing is on: only messages signed by a trusted certificate are accepted."""
        return self.signing_cert_store is not None

    @model_validator(mode="after")
    def _retries_within_visibility(self) -> Settings:
        if self.retry_backoff_max_s >= self.visibility_timeout_s:
            raise ValueError(
                "ACCOUNT_RESET_RETRY_BACKOFF_MAX_S must be below ACCOUNT_RESET_VISIBILITY_TIMEOUT_S"
            )
        return self

    @property
    def lock_retry_budget_s(self) -> float:
        """How long, at the least, a command waits on a row lock before it is dead-lettered.

        Every attempt waits the full lock timeout before it fails; the backoff between
        attempts has full jitter and may be 0, so only the lock waits are sure.
        """
        return (self.max_retries + 1) * self.db_lock_timeout_s

    @property
    def idle_in_transaction_timeout_s(self) -> float:
        if self.db_idle_in_transaction_timeout_s is not None:
            return self.db_idle_in_transaction_timeout_s
        return min(DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_S, 0.8 * self.lock_retry_budget_s)

    @model_validator(mode="after")
    def _idle_transactions_end_within_the_retry_budget(self) -> Settings:
        idle_s = self.db_idle_in_transaction_timeout_s
        if idle_s is not None and idle_s >= self.lock_retry_budget_s:
            raise ValueError(
                f"ACCOUNT_RESET_DB_IDLE_IN_TRANSACTION_TIMEOUT_S ({idle_s:g}) must be below"
                " (ACCOUNT_RESET_MAX_RETRIES + 1) x ACCOUNT_RESET_DB_LOCK_TIMEOUT_S"
                f" ({self.lock_retry_budget_s:g} s), the least time another worker waits"
                " for a row lock before giving up"
            )
        return self

    @property
    def is_development(self) -> bool:
        """Development's leniency: said explicitly, or implied by the embedded Redis."""
        if self.environment is None:
            return self._on_embedded_redis
        return self.environment == "development"

    @model_validator(mode="after")
    def _refuse_the_placeholder_key(self) -> Settings:
        # A real broker means real accounts, whatever ENVIRONMENT says: the placeholder is public.
        placeholder = self.hash_key.get_secret_value() == DEVELOPMENT_HASH_KEY
        if self.hash_mode == "keyed" and placeholder and not self._on_embedded_redis_in_development:
            raise ValueError(
                "ACCOUNT_RESET_HASH_KEY must be set outside development and on any real broker"
                " (or, for a dashboard without a key, ACCOUNT_RESET_HASH_MODE=unkeyed)"
            )
        return self

    @property
    def _on_embedded_redis(self) -> bool:
        return self.broker_url is None

    @property
    def _on_embedded_redis_in_development(self) -> bool:
        return self._on_embedded_redis and self.environment != "production"

    @model_validator(mode="after")
    def _refuse_weak_production_settings(self) -> Settings:
        if self.is_development:
            return self
        if self.broker_url is None:
            raise ValueError("ACCOUNT_RESET_BROKER_URL must be set outside development")
        key = self.hash_key.get_secret_value()
        if self.hash_mode == "keyed" and len(key) < MIN_HASH_KEY_LENGTH:
            raise ValueError(
                f"ACCOUNT_RESET_HASH_KEY must be at least {MIN_HASH_KEY_LENGTH} characters"
                " outside development"
            )
        if self.bcrypt_rounds < MIN_PRODUCTION_BCRYPT_ROUNDS:
            raise ValueError(
                f"ACCOUNT_RESET_BCRYPT_ROUNDS must be at least {MIN_PRODUCTION_BCRYPT_ROUNDS}"
                " outside development (set ACCOUNT_RESET_ENVIRONMENT=development to test with less)"
            )
        return self

    @property
    def dashboard_key(self) -> str:
        """The key the dashboard hashes with; "" for a stock dashboard (security/hashing.py)."""
        return "" if self.hash_mode == "unkeyed" else self.hash_key.get_secret_value()

    @property
    def fingerprint_secret(self) -> str | None:
        """What the request fingerprints' key derives from; None: none (see IDEMPOTENCY_KEY)."""
        if self.idempotency_key is not None:
            return self.idempotency_key.get_secret_value()
        return None if self.hash_mode == "unkeyed" else self.hash_key.get_secret_value()

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
