"""Every setting of the worker, read from `ACCOUNT_RESET_*` environment variables."""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator

from client.sealing import fernet_keys
from client.settings import SharedSettings, read_key_file
from schemas import CommandLimits
from schemas.commands import MAX_BULK_ACCOUNTS
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


# The settings that may come from a file `<NAME>_FILE` names (Docker secrets).
SECRET_FILE_FIELDS = (
    "sealing_keys", "hash_key", "payload_key", "broker_url", "cache_url", "database_url",
)  # fmt: skip


class Settings(SharedSettings):
    """The worker's settings: those it shares with producers (client/settings.py), its own."""

    redis_url_fields: ClassVar[tuple[str, ...]] = (
        "broker_url", "events_url", "cache_url", "dashboard_metrics_url",
    )  # fmt: skip

    # Unset: development on an embedded Redis (no BROKER_URL), production on a real broker, so a
    # worker that reaches a real broker never runs with development's leniency by omission.
    environment: Literal["development", "production"] | None = Field(
        default=None,
        description="Unset: `development` on the embedded Redis, `production` on a real broker."
        " Outside development the worker refuses to start without `BROKER_URL`, with a"
        " `HASH_KEY` under 16 characters, or a `BCRYPT_ROUNDS` under 10 (the dashboard's"
        " default); the development placeholder `HASH_KEY` is refused on any real broker,"
        " whatever this says. `HASH_MODE=unkeyed` (a stock dashboard, chosen explicitly) needs"
        " no key and warns.",
    )

    # The broker (the queues' names: SharedSettings).
    broker_url: str | None = Field(
        default=None,
        description="The broker's Redis URL (`redis://`, `rediss://`, `unix://`, `sentinel://`);"
        " unset starts an embedded Redis (development only), which the other commands of this"
        " user find (operations.md: one Redis in development).",
    )
    node_role: Literal["all", "sessions"] = Field(
        default="all",
        description="What this node consumes: `all` (`QUEUE`, both commands) or `sessions`"
        " (`SESSIONS_QUEUE`, `reset-session-key` only), which `account-reset worker --sessions`"
        " sets.",
    )
    pool_nice: int = Field(
        default=0,
        ge=0,
        le=19,
        description="The pool processes' niceness: on a node taking password resets beside a"
        " sessions node on the same machine, 10 lets revocations (and the database, Redis)"
        " have the CPU first while bcrypt runs (BENCHMARKS.md: latency under mixed load);"
        " 0: as the main process.",
    )
    pool_cpus: str | None = Field(
        default=None,
        description="The CPUs the pool processes may run on (`1`, `0,2`, `2-3`): on a node taking"
        " password resets beside a sessions node on the same machine, the cores bcrypt may take,"
        " leaving the others to revocations, the database and Redis (BENCHMARKS.md: latency"
        " under mixed load); unset: any.",
    )

    @field_validator("pool_cpus")
    @classmethod
    def _a_cpu_list(cls, value: str | None) -> str | None:
        if value is not None and value.strip():
            cpu_list(value)
            return value
        return None

    appid: str = Field(
        default="dashboard",
        description="The appid of commands that give none (the dashboard's `APPID`).",
    )

    # Result events (their Redis and stream name: SharedSettings).
    events_stream_maxlen: int | None = Field(
        default=1_000_000,
        ge=1,
        description="Approximate trim length of the events stream (about 320 bytes an event:"
        " 1,000,000 is about 320 MB).",
    )
    events_retention_seconds: int | None = Field(
        default=None,
        ge=60,
        description="Also drop events older than this, at each relay round (`RELAY_INTERVAL_S`);"
        " unset keeps them, length permitting.",
    )

    cache_url: str | None = Field(
        default=None,
        description="The dashboard's storage cache (its `STORAGE_CACHE_REDIS_URL`); unset means"
        " the dashboard runs without one.",
    )

    database_url: str = Field(
        default="sqlite:///account-reset.db",
        description="The dashboard's database: `sqlite:///…`, `postgresql://…` (psycopg 3),"
        " `mariadb://…` or `mysql://…` (PyMySQL, utf8mb4); TLS options go in the URL.",
    )
    db_pool_size: int = Field(
        default=2, ge=1, description="Database connections per worker process."
    )

    @field_validator("database_url")
    @classmethod
    def _a_database_the_worker_knows(cls, value: str) -> str:
        scheme = value.partition(":")[0].partition("+")[0]
        if scheme not in ("sqlite", "postgresql", "postgres", "mariadb", "mysql"):
            raise ValueError(
                "ACCOUNT_RESET_DATABASE_URL must be a sqlite://, postgresql://, mariadb:// or"
                " mysql:// URL"
            )
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            parsed = make_url(value)
        except (ArgumentError, ValueError):  # its text may quote what stood in the port
            raise ValueError(
                "ACCOUNT_RESET_DATABASE_URL is not a URL SQLAlchemy reads: percent-encode /, #,"
                " ?, @ and : in a user or password, and give the port as a number"
            ) from None
        if parsed.get_backend_name() == "sqlite" and (parsed.host or parsed.username):
            raise ValueError(
                "ACCOUNT_RESET_DATABASE_URL: a SQLite URL names a file, sqlite:///path (or"
                " sqlite:////absolute/path), with no user, password or host"
            )
        return value

    # Hashes shared with the dashboard. keyed: HASH_KEY is its `dashboardEncryptionKey`, which
    # the application embedding the dashboard sets. unkeyed: a stock dashboard that sets none
    # (lookups hashed with the text "undefined", passwords with no key); HASH_KEY must be unset.
    hash_mode: Literal["keyed", "unkeyed"] = Field(
        default="keyed",
        description="`keyed`: the dashboard hashes with `HASH_KEY`; `unkeyed`: a dashboard"
        " without a key, as the package ships (contract.md: data and hashes); chosen, never"
        " assumed, and the worker warns at start.",
    )
    hash_key: SecretStr = Field(
        default=SecretStr(DEVELOPMENT_HASH_KEY),
        description="The dashboard's `dashboardEncryptionKey`; required outside development in"
        " `keyed` mode (16 characters or more), refused in `unkeyed`; the placeholder default is"
        " refused on any real broker.",
    )
    bcrypt_rounds: int = Field(
        default=12,
        ge=4,
        le=31,
        description="The bcrypt cost of new password hashes; 10 or more outside development.",
    )

    # The dashboard's own bookkeeping.
    dashboard_metrics: Literal["database", "redis", "off"] = Field(
        default="database",
        description="Where the dashboard counts `resetcodes-used`: `database` (its `metrics`"
        " table), `redis` (its `STORAGE_METRICS=redis`), `off` (its `DISABLE_METRICS=true`).",
    )
    dashboard_metrics_url: str | None = Field(
        default=None,
        description="The dashboard's `STORAGE_METRICS_REDIS_URL`; required with"
        " `DASHBOARD_METRICS=redis`.",
    )
    dashboard_timezone: str = Field(
        default="UTC",
        description="The time zone (IANA) of the dashboard's Node process, whose local date names"
        " the day counted.",
    )

    # The dashboard's length rules.
    min_username_length: int = Field(default=6, ge=1, description="The dashboard's default.")
    min_password_length: int = Field(
        default=6, ge=1, description="The dashboard's default (its reset checks only this)."
    )
    max_password_length: int = Field(
        default=50,
        ge=1,
        description="A longer new password is `invalid-password-length`: the dashboard's own"
        " maximum at sign-up, which its reset does not check.",
    )
    max_field_length: int = Field(
        default=1024,
        ge=1,
        description="Longer text counts as not given and is never hashed (a longer password:"
        " `invalid-password-length`); lengths in UTF-16 code units, as the dashboard counts.",
    )

    # Delivery: late acknowledgement, and how soon a lost worker's commands come back: after
    # the visibility timeout, at the next sweep for abandoned messages (within about a minute).
    visibility_timeout_s: int = Field(
        default=50,
        ge=5,
        description="An unacknowledged message older than this is put back on the queue.",
    )
    restore_interval_s: int = Field(
        default=5,
        ge=1,
        description="How often a worker sweeps for such messages (kombu's default is 100 s).",
    )
    prefetch_multiplier: int = Field(
        default=1, ge=1, description="Commands are short: one in hand per pool process."
    )
    worker_concurrency: int | None = Field(
        default=None, ge=1, description="Pool processes; unset: one per core."
    )
    soft_shutdown_timeout_s: float = Field(
        default=30.0,
        ge=0,
        description="Time to finish the commands in hand on SIGTERM (and SIGQUIT's soft shutdown).",
    )
    task_events: bool = Field(
        default=True, description="Celery task events (Flower, `celery events`)."
    )

    # Transient faults (database, Redis) are retried with exponential backoff and jitter.
    max_retries: int = Field(
        default=5,
        ge=0,
        description="Retries of a transient fault (database, Redis), with exponential backoff and"
        " full jitter; rule failures are never retried.",
    )
    # Below the visibility timeout: a retry waits in the worker as an unacknowledged message,
    # and one held past the timeout would be delivered a second time.
    retry_backoff_max_s: int = Field(
        default=30,
        ge=1,
        description="The retry backoff's cap; must be below `VISIBILITY_TIMEOUT_S`.",
    )

    db_lock_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="A longer row-lock wait fails and is retried (PostgreSQL `lock_timeout`,"
        " MariaDB/MySQL `innodb_lock_wait_timeout` in whole seconds, SQLite's busy timeout).",
    )
    # Ending an idle transaction frees its row locks before the other workers' retries for them
    # run out (see `lock_retry_budget_s`).
    db_idle_in_transaction_timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="A transaction idle this long (a frozen worker) is ended by the database,"
        " freeing its row locks (PostgreSQL `idle_in_transaction_session_timeout`, MariaDB"
        " `idle_transaction_timeout` in whole seconds; none on MySQL or SQLite). Unset: 10, or"
        " 80 % of the retry budget when that is shorter. Must be below the retry budget,"
        " `(MAX_RETRIES + 1) x DB_LOCK_TIMEOUT_S`, and above the longest step of a command"
        " inside its transaction (a bcrypt hash).",
    )

    # Commands that cannot be processed: poison messages, and faults that outlasted retries.
    dead_letters_key: str = Field(
        default="account-reset:dead-letters",
        description="The dead letters' stream, on the events Redis.",
    )
    dead_letters_maxlen: int = Field(
        default=100_000,
        ge=1,
        description="Approximate trim length of the dead letters (about 830 bytes a letter:"
        " 100,000 is about 83 MB).",
    )
    max_message_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="A larger message body is dead-lettered unread, answered `invalid-payload`"
        " under its `command_id` (a real command is under 4 KiB).",
    )
    max_entry_bytes: int = Field(
        default=256 * 1024,
        ge=4096,
        description="A larger raw queue entry (envelope, headers, body) is dead-lettered"
        " unparsed and gets no event: nothing of it is read, not even its task id. Must exceed"
        " 4/3 of `MAX_MESSAGE_BYTES` plus 4096 (a body is base64 in its entry).",
    )
    sealing_keys: SecretStr | None = Field(
        default=None,
        description="The worker's private sealing keys: a JWK Set of EC P-256 keys, each with a"
        " `kid`, newest first (`account-reset sealing-keys new`); any of them opens producers'"
        " sealed fields (security.md: the sealed format).",
    )
    sealing_keys_file: Path | None = Field(
        default=None,
        description="A file holding `SEALING_KEYS` (compose's secret files); set one or the other.",
    )
    # Compose hands every password and key over as a secret file, never in the environment.
    hash_key_file: Path | None = Field(
        default=None, description="A file holding `HASH_KEY`; set one or the other."
    )
    payload_key_file: Path | None = Field(
        default=None, description="A file holding `PAYLOAD_KEY`; set one or the other."
    )
    broker_url_file: Path | None = Field(
        default=None,
        description="A file holding `BROKER_URL` (a URL with a password); set one or the other.",
    )
    cache_url_file: Path | None = Field(
        default=None, description="A file holding `CACHE_URL`; set one or the other."
    )
    database_url_file: Path | None = Field(
        default=None,
        description="A file holding `DATABASE_URL` (a URL with a password); set one or the other.",
    )
    # A token copied out of the broker's files is of no use for long.
    sealed_max_age_s: int = Field(
        default=3600,
        ge=1,
        description="A field sealed longer ago than this is `sealed-value-expired`. Rotation"
        " drops a key this long after the last producer switched, plus the queue's backlog.",
    )
    legacy_fernet_sealed: bool = Field(
        default=False,
        description="Also open fields producers sealed with Fernet under `PAYLOAD_KEY` (the 0.1"
        " format, which binds nothing: any command, any field, any age); needs `PAYLOAD_KEY`;"
        " removed in 0.3.0.",
    )
    require_sealed: bool = Field(
        default=False,
        description="Refuse a plaintext `new-password` or `secret-code` (`invalid-payload`);"
        " needs `SEALING_KEYS` (or, legacy, `PAYLOAD_KEY` with `LEGACY_FERNET_SEALED`).",
    )
    # Celery's message signing (RSA, PEM): a worker's key and certificate (SharedSettings) and
    # this store, all three or none; the key and certificate alone are a producer's.
    signing_cert_store: Path | None = Field(
        default=None,
        description="A worker's directory of trusted certificates (PEM, unexpired, its own among"
        " them). Set, with the worker's pair, the worker accepts only messages signed by one of"
        " them, each carrying its `command_id`; unsigned or otherwise unverified messages are"
        " dead-lettered `unverified`, unanswered.",
    )

    # Guessing stopped: per account, per source (when the producer passes one) and per appid,
    # so that guesses spread thin over many accounts are stopped too.
    max_code_attempts: int = Field(
        default=5,
        ge=1,
        description="Wrong reset codes per account within the window before `too-many-attempts`"
        " (further attempts unchecked until the window passes).",
    )
    attempt_window_seconds: int = Field(
        default=900, ge=1, description="The per-account window, from the first wrong code."
    )
    max_source_attempts: int = Field(
        default=20,
        ge=1,
        description="Attempts at codes from one `source` (a command field), over all the appid's"
        " accounts, within the window from the first, before `too-many-attempts`; successes are"
        " given back. Counted under an HMAC keyed from `HASH_KEY` (with `HASH_MODE=unkeyed`, a"
        " public derivation, which still keeps the raw value out of Redis).",
    )
    source_attempt_window_seconds: int = Field(
        default=900, ge=1, description="The per-source window, from the first attempt."
    )
    max_appid_attempts: int = Field(
        default=200,
        ge=1,
        description="The ceiling on attempts at codes over all of an appid's accounts, from"
        " everywhere; successes are given back. Set it above the appid's normal rate of wrong"
        ' codes (`account_reset_guesses_refused_total{limit="appid"}` shows when it bites).',
    )
    appid_attempt_window_seconds: int = Field(
        default=900, ge=1, description="The per-appid window, from the first attempt."
    )
    attempts_key_prefix: str = Field(
        default="account-reset:code-attempts",
        description="The attempt counts, on the events Redis, which must not evict them: a"
        " worker refuses to start unless its `maxmemory` is 0 or its `maxmemory-policy` is"
        " `noeviction`.",
    )
    code_ttl_seconds: int | None = Field(
        default=None,
        ge=1,
        description="Reset codes older than this are `invalid-reset-code`; unset: codes never"
        " expire. Recommended for new deployments (compose: 2592000, 30 days; security.md:"
        " guessing).",
    )

    bulk_chunk: int = Field(
        default=MAX_BULK_ACCOUNTS,
        ge=1,
        le=MAX_BULK_ACCOUNTS,
        description="Accounts per transaction, and per result event, of an `every_account`"
        " reset-session-keys run (contract.md: bulk revocation).",
    )

    # The outbox relay publishes outcomes committed but never published (a crash in between).
    relay_interval_s: float = Field(
        default=5.0,
        gt=0,
        description="How often the outbox relay publishes outcomes committed but never published.",
    )
    relay_grace_s: float = Field(
        default=10.0,
        ge=0,
        description="The relay publishes only outcomes recorded longer ago than this (the task"
        " publishes its own).",
    )
    relay_batch_size: int = Field(
        default=500, ge=1, description="Outcomes the relay publishes per query."
    )
    outcome_retention_days: int = Field(
        default=30,
        ge=1,
        description="How long a `command_id` is remembered after its event is out; a resend"
        " after that applies again.",
    )
    idempotency_key: SecretStr | None = Field(
        default=None,
        description="Key (16 characters or more) of the request fingerprints that bind a"
        " `command_id` to its request; unset: derived from `HASH_KEY` in `keyed` mode, and in"
        " `unkeyed` mode the secret fields are left out of the fingerprints (the worker warns).",
    )
    command_id_conflict_code: Literal["command-id-conflict", "invalid-payload"] = Field(
        default="command-id-conflict",
        description="The code a different request under a recorded `command_id` gets;"
        " `invalid-payload` for consumers that do not know the new code (what the other"
        " command's id got before).",
    )

    log_level: str = Field(default="INFO", description="The log level (Python's names).")
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`json`: one JSON object per line (each command's line: `command`,"
        " `command_id`, `outcome`, `replayed`, `duration_ms`).",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Serve Prometheus metrics on this port (the pool's processes summed);"
        " unset: not served.",
    )

    health_file: Path = Field(
        default=Path(tempfile.gettempdir()) / "account-reset-worker.health",
        description="Where the liveness notes go: each worker node's main process keeps"
        " `<HEALTH_FILE>.d/<node>.health` while it consumes (removed when it stops), read by"
        " `account-reset health` (this machine's nodes, or `--node NAME`).",
    )
    health_max_age_s: float = Field(
        default=30.0,
        gt=0,
        description="How old the liveness note may be for `account-reset health` to pass.",
    )

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_their_files(cls, data: Any) -> Any:
        for field in SECRET_FILE_FIELDS:
            data = read_key_file(data, field=field, variable=f"ACCOUNT_RESET_{field.upper()}")
        return data

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

    @field_validator("signing_cert_store", mode="before")
    @classmethod
    def _empty_store_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _signing_files_hold_together(self) -> Settings:
        # The key and the certificate are checked together by SharedSettings, before this.
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
    return Sealer(fernet_keys(keys.get_secret_value()))


def cpu_list(text: str) -> set[int]:
    """The CPUs of a list such as `0,2-3`; ValueError naming the setting if it is not one."""
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            first, dash, last = part.strip().partition("-")
            cpus.update(range(int(first), int(last if dash else first) + 1))
    except ValueError:
        raise ValueError(
            "ACCOUNT_RESET_POOL_CPUS must be a CPU list such as 1, 0,2 or 2-3"
        ) from None
    if not cpus or min(cpus) < 0:
        raise ValueError("ACCOUNT_RESET_POOL_CPUS must be a CPU list such as 1, 0,2 or 2-3")
    return cpus


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
