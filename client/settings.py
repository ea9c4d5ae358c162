"""The client's settings: the worker's names for what a producer shares with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey
from pydantic import SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from client.redis_clients import RedisOptions, check_redis_url
from client.sealing import public_sealing_key
from client.signing import check_key_pair


class ClientSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ACCOUNT_RESET_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    broker_url: str = "redis://127.0.0.1:6379/0"
    queue: str = "account-reset"
    # Set: reset-session-key goes to this queue, which nodes of its own consume (the worker's
    # ACCOUNT_RESET_SESSIONS_QUEUE); unset, to QUEUE with everything else.
    sessions_queue: str | None = None
    # Where the worker publishes outcomes (the broker's Redis unless another is named).
    events_url: str | None = None
    events_stream: str = "account-reset:events"
    # The worker's names for reaching Redis through Sentinel and over TLS (client/redis_clients.py).
    sentinel_master: str | None = None
    sentinel_password: SecretStr | None = None
    sentinel_tls: bool = False
    redis_ca_file: Path | None = None
    # The worker's public sealing key (a JWK, `account-reset sealing-keys public`), or a file
    # holding it: each secret field leaves the producer sealed to it, bound to its command.
    sealing_public_key: str | None = None
    sealing_public_key_file: Path | None = None
    # Legacy (goes in 0.3.0), used only without SEALING_PUBLIC_KEY: secret fields sealed with
    # Fernet (the first key seals), which the worker opens only with LEGACY_FERNET_SEALED=true.
    payload_key: SecretStr | None = None
    # Both set: every message is signed with Celery's message signing (RSA key and its
    # certificate, PEM), for a worker that accepts only signed messages (its SIGNING_CERT_STORE).
    signing_key_file: Path | None = None
    signing_certificate_file: Path | None = None

    @field_validator("signing_key_file", "signing_certificate_file", mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _a_signing_key_with_its_certificate(self) -> ClientSettings:
        check_key_pair(
            key_file=self.signing_key_file, certificate_file=self.signing_certificate_file
        )
        return self

    @field_validator("sentinel_master", "redis_ca_file", mode="before")
    @classmethod
    def _empty_redis_option_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _redis_urls_are_usable(self) -> ClientSettings:
        check_redis_url(self.broker_url, self.redis_options, variable="ACCOUNT_RESET_BROKER_URL")
        check_redis_url(self.events_url, self.redis_options, variable="ACCOUNT_RESET_EVENTS_URL")
        return self

    @property
    def redis_options(self) -> RedisOptions:
        """How the broker and the events Redis are reached (Sentinel, TLS)."""
        password = self.sentinel_password
        return RedisOptions(
            sentinel_master=self.sentinel_master,
            sentinel_password=password.get_secret_value() if password else None,
            sentinel_tls=self.sentinel_tls,
            ca_file=self.redis_ca_file,
        )

    @property
    def events_redis_url(self) -> str:
        return self.events_url or self.broker_url

    @field_validator("payload_key")
    @classmethod
    def _empty_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        return None if value is not None and not value.get_secret_value().strip() else value

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
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise ValueError(f"{variable}_FILE names a file that cannot be read") from None
    return {**data, field: text}
