"""The client's settings: the worker's names for what a producer shares with it."""

from __future__ import annotations

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    # Set: secret fields are sealed before they leave the producer (the first key seals).
    payload_key: SecretStr | None = None

    @field_validator("payload_key")
    @classmethod
    def _empty_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        return None if value is not None and not value.get_secret_value().strip() else value
