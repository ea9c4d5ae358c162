"""Enqueue a command as a Celery task message (protocol 2, JSON) and return its command_id.

With a payload key, `username`, `new-password` and `secret-code` leave the producer sealed, so
the broker never holds them in plaintext. Celery's displayed arguments (kwargsrepr, seen in
`task-sent` events) name no secret either way. Sending again with the same command_id is safe:
the worker applies a command once and replays its outcome.
"""

from __future__ import annotations

import uuid
from typing import Any

from celery import Celery
from cryptography.fernet import Fernet

from client.settings import ClientSettings
from schemas.display import redacted_kwargs

SEALED_FIELDS = ("username", "new-password", "secret-code")


class AccountResetClient:
    def __init__(self, settings: ClientSettings | None = None) -> None:
        self.settings = settings or ClientSettings()
        self._app = Celery("account-reset-client", set_as_current=False)
        self._app.conf.update(
            broker_url=self.settings.broker_url,
            broker_transport_options={"priority_steps": [0]},
            task_protocol=2,
            task_serializer="json",
            accept_content=["json"],
        )
        key = self.settings.payload_key
        self._fernet = None if key is None else Fernet(key.get_secret_value().split(",")[0].strip())

    def reset_session_key(
        self,
        accountid: str,
        *,
        requester_accountid: str | None = None,
        appid: str | None = None,
        command_id: str | None = None,
    ) -> str:
        """End every session of `accountid`; the requester is the account itself by default."""
        payload = {"accountid": accountid, "requester_accountid": requester_accountid or accountid}
        return self.send("reset-session-key", payload, appid=appid, command_id=command_id)

    def reset_account_password(
        self,
        *,
        username: str,
        secret_code: str,
        new_password: str,
        appid: str | None = None,
        command_id: str | None = None,
    ) -> str:
        payload = {"username": username, "secret-code": secret_code, "new-password": new_password}
        return self.send("reset-account-password", payload, appid=appid, command_id=command_id)

    def send(
        self,
        command: str,
        payload: dict[str, Any],
        *,
        appid: str | None = None,
        command_id: str | None = None,
    ) -> str:
        """Enqueue `command` with `payload`; returns the command_id (given, or a new one)."""
        command_id = command_id or str(uuid.uuid4())
        message = {**self._sealed(payload), "command_id": command_id}
        if appid is not None:
            message["appid"] = appid
        self._app.send_task(
            command,
            kwargs=message,
            queue=self.settings.queue,
            task_id=command_id,
            argsrepr="()",
            kwargsrepr=redacted_kwargs(message),
        )
        return command_id

    def _sealed(self, payload: dict[str, Any]) -> dict[str, Any]:
        if self._fernet is None:
            return dict(payload)
        fernet = self._fernet
        return {
            key: {"sealed": fernet.encrypt(value.encode()).decode()}
            if key in SEALED_FIELDS and isinstance(value, str)
            else value
            for key, value in payload.items()
        }

    def close(self) -> None:
        self._app.close()
