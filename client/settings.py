"""The client's settings, and what a producer shares with the worker, declared once.

`SharedSettings` holds the names both sides read (the queues, the events stream, reaching Redis
through Sentinel and over TLS, the legacy Fernet keys, message signing) and their checks; the
worker's `Settings` (worker/settings.py) and `ClientSettings` both extend it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from joserfc.jwk import ECKey
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from client.redis_clients import RedisOptions, check_redis_url
from client.sealing import fernet_keys, multi_fernet, public_sealing_key
from client.signing import check_key_pair


class SharedSettings(BaseSettings):
    """The `ACCOUNT_RESET_*` settings a producer and the worker must agree on."""

    model_config = SettingsConfigDict(
        env_prefix="ACCOUNT_RESET_", extra="ignore", frozen=True, hide_input_in_errors=True
    )
    # The fields holding Redis URLs, checked against the Sentinel and TLS settings below.
    redis_url_fields: ClassVar[tuple[str, ...]] = ("broker_url", "events_url")

    queue: str = Field(
        default="account-reset",
        description="The queue of both commands; its nodes take both, whatever `SESSIONS_QUEUE`"
        " says.",
    )
    sessions_queue: str | None = Field(
        default=None,
        description="Session revocations' own queue, consumed by nodes of their own (`account-reset"
        " worker --sessions`), so that a revocation never waits behind password resets (bcrypt)"
        " or junk; the client and the Node example send `reset-session-key` there when it is"
        " set. Unset: both commands share `QUEUE`. Must differ from `QUEUE`.",
    )

    # Result events, on the broker's Redis unless another is named.
    events_url: str | None = Field(
        default=None,
        description="The Redis of the events stream, the dead letters and the attempt counts;"
        " unset: the broker's.",
    )
    events_stream: str = Field(
        default="account-reset:events", description="The stream of result events."
    )

    # Redis Sentinel, for any sentinel:// URL, and TLS (client/redis_clients.py).
    sentinel_master: str | None = Field(
        default=None,
        description="The master's name under Redis Sentinel; required with any `sentinel://` URL"
        " (operations.md: TLS and Sentinel).",
    )
    sentinel_password: SecretStr | None = Field(
        default=None,
        description="The sentinels' own password (their `requirepass`); the master's goes in the"
        " URL.",
    )
    sentinel_tls: bool = Field(
        default=False,
        description="The sentinels, and the master they name, speak TLS (verified as `rediss://`).",
    )
    redis_ca_file: Path | None = Field(
        default=None,
        description="The CA of the Redis servers' certificates, for `rediss://` and"
        " `SENTINEL_TLS`, when a URL names none in `ssl_ca_certs`; unset: the system's CAs."
        " Certificates are always verified.",
    )

    payload_key: SecretStr | None = Field(
        default=None,
        description="Fernet keys, comma-separated, newest first (the first seals, any opens):"
        " seal the secret fields of dead letters, worker-side only (unset: a dead letter"
        " withholds them); with `LEGACY_FERNET_SEALED`, also open producers' legacy sealed"
        " fields. A producer without `SEALING_PUBLIC_KEY` seals its secret fields with the first"
        " (legacy, removed in 0.3.0).",
    )

    # Celery's message signing (RSA, PEM); a worker adds SIGNING_CERT_STORE.
    signing_key_file: Path | None = Field(
        default=None,
        description="Celery's message signing: an unencrypted RSA private key (PEM), set with"
        " `SIGNING_CERTIFICATE_FILE`. On a producer (the client, `enqueue`) every message is"
        " signed with it; on a worker, its retries and `failed retry` are (security.md: who may"
        " enqueue).",
    )
    signing_certificate_file: Path | None = Field(
        default=None,
        description="The certificate (PEM) of `SIGNING_KEY_FILE`; a worker's must be in"
        " `SIGNING_CERT_STORE`.",
    )

    @field_validator("sentinel_master", "redis_ca_file", mode="before")
    @classmethod
    def _empty_redis_option_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _redis_urls_are_usable(self) -> SharedSettings:
        for name in self.redis_url_fields:
            check_redis_url(
                getattr(self, name), self.redis_options, variable=f"ACCOUNT_RESET_{name.upper()}"
            )
        return self

    @property
    def redis_options(self) -> RedisOptions:
        """How every Redis URL is reached (Sentinel, TLS)."""
        password = self.sentinel_password
        return RedisOptions(
            sentinel_master=self.sentinel_master,
            sentinel_password=password.get_secret_value() if password else None,
            sentinel_tls=self.sentinel_tls,
            ca_file=self.redis_ca_file,
        )

    @field_validator("payload_key")
    @classmethod
    def _payload_keys_are_fernet_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        try:
            multi_fernet(fernet_keys(value.get_secret_value()))
        except ValueError:
            raise ValueError(
                "ACCOUNT_RESET_PAYLOAD_KEY must be Fernet keys (url-safe base64 of 32 bytes),"
                " comma-separated"
            ) from None
        return value

    @field_validator("signing_key_file", "signing_certificate_file", mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _a_signing_key_with_its_certificate(self) -> SharedSettings:
        check_key_pair(
            key_file=self.signing_key_file, certificate_file=self.signing_certificate_file
        )
        return self


class ClientSettings(SharedSettings):
    """A producer's and an audit consumer's settings: the shared ones, and the public key."""

    broker_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="The broker's Redis URL (`redis://`, `rediss://`, `unix://`, `sentinel://`).",
    )
    sealing_public_key: str | None = Field(
        default=None,
        description="The worker's public sealing key (a JWK: `account-reset sealing-keys"
        " public`): each secret field leaves the producer sealed to it, bound to its command,"
        " field and command_id.",
    )
    sealing_public_key_file: Path | None = Field(
        default=None,
        description="A file holding `SEALING_PUBLIC_KEY`; set one or the other.",
    )

    @property
    def events_redis_url(self) -> str:
        return self.events_url or self.broker_url

    @model_validator(mode="before")
    @classmethod
    def _public_key_from_its_file(cls, data: Any) -> Any:
        return read_key_file(
            data,
            field="sealing_public_key",
            variable="ACCOUNT_RESET_SEALING_PUBLIC_KEY",
        )

    @field_validator("sealing_public_key")
    @classmethod
    def _a_public_p256_jwk(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        public_sealing_key(value, variable="ACCOUNT_RESET_SEALING_PUBLIC_KEY")
        return value

    @property
    def sealing_key(self) -> ECKey | None:
        """The key secret fields are sealed to, when there is one."""
        if self.sealing_public_key is None:
            return None
        return public_sealing_key(
            self.sealing_public_key, variable="ACCOUNT_RESET_SEALING_PUBLIC_KEY"
        )


def read_key_file(data: Any, *, field: str, variable: str) -> Any:
    """Settings `data` with `field` read from the file `<variable>_FILE` names (compose passes
    keys as secret files); both set, or an unreadable file, is a ValueError naming them."""
    path = data.get(f"{field}_file") if isinstance(data, dict) else None
    if not path:
        return data
    if data.get(field):
        raise ValueError(f"set {variable} or {variable}_FILE, not both")
    try:
        # Without the newline `echo` or an editor leaves: a key or a URL never ends in one.
        text = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError):
        raise ValueError(f"{variable}_FILE names a file that cannot be read") from None
    return {**data, field: text}


def settings_problems(error: ValidationError, *, prefix: str = "ACCOUNT_RESET_") -> str:
    """A settings error in one line, each problem with the variable it is about (its message
    alone when it names one already); never the value (hide_input_in_errors)."""
    problems = []
    for each in error.errors():
        message = str(each["msg"]).removeprefix("Value error, ")
        name = f"{prefix}{'_'.join(map(str, each['loc'])).upper()}" if each["loc"] else ""
        problems.append(message if not name or prefix in message else f"{name}: {message}")
    return "; ".join(problems)
