"""Enqueue a command as a Celery task message (protocol 2, JSON), get its command_id, and
optionally wait for its result event.

With the worker's public sealing key, `username`, `new-password` and `secret-code` leave the
producer sealed (a JWE bound to the command, the field and the command_id), so the broker never
holds them in plaintext and the worker opens each only where it was sent; with only the legacy
payload key, they are sealed with Fernet. Celery's displayed arguments (kwargsrepr, seen in
`task-sent` events) name no secret either way. Sending again with the same command_id is safe:
the worker applies a command once and replays its outcome.

With `SIGNING_KEY_FILE` and `SIGNING_CERTIFICATE_FILE`, every message is signed (Celery's
message signing, client/signing.py), and carries its command_id in the signed kwargs.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from celery import Celery

from client.bulk import (
    BulkProgress,
    BulkRun,
    chunk_payloads,
    every_account_payload,
    follow_run,
    new_bulk_id,
)
from client.events import wait_for_outcomes
from client.redis_clients import SOCKET_TIMEOUTS_S, broker_connection, redis_client
from client.sealing import Binding, fernet_keys, multi_fernet, seal
from client.settings import ClientSettings
from client.signing import sign_messages
from schemas import CommandOutcome, ResetSessionKeys
from schemas.display import redacted_kwargs
from schemas.fields import (
    ACCOUNTID,
    COMMAND_ID,
    NEW_PASSWORD,
    REQUESTER_ACCOUNTID,
    SEALABLE_FIELDS,
    SECRET_CODE,
    SOURCE,
    USERNAME,
    spellings,
)

# Either spelling of a field is sealed (`new_password` as well as `new-password`).
SEALABLE = spellings(*SEALABLE_FIELDS)
CLOCK_ALLOWANCE_S = 60.0
# Resends of this many recent commands reuse their sealed tokens (see `_message`).
REMEMBERED_SENDS = 10_000


class AccountResetClient:
    def __init__(self, settings: ClientSettings | None = None) -> None:
        self.settings = settings or ClientSettings()
        self._app = Celery("account-reset-client", set_as_current=False)
        # kombu's own transports; TLS verified, Sentinel followed (client/redis_clients.py).
        broker = broker_connection(self.settings.broker_url, self.settings.redis_options)
        self._app.conf.update(
            broker_url=broker.kombu_url,
            broker_use_ssl=broker.ssl or False,
            # A Redis that takes the connection and never answers: an error, not a wait forever.
            broker_transport_options={
                "priority_steps": [0],
                **SOCKET_TIMEOUTS_S,
                **broker.transport_options,
            },
            task_protocol=2,
            task_serializer="json",
            accept_content=["json"],
        )
        key_file, certificate_file = (
            self.settings.signing_key_file,
            self.settings.signing_certificate_file,
        )
        if key_file is not None and certificate_file is not None:
            # Signed: the worker accepts only messages from the certificates it trusts.
            sign_messages(self._app, key_file=key_file, certificate_file=certificate_file)
        self._sealing_key = self.settings.sealing_key
        # Legacy (goes in 0.3.0): Fernet, only for a producer not yet given the public key.
        key = self.settings.payload_key if self._sealing_key is None else None
        self._fernet = None if key is None else multi_fernet(fernet_keys(key.get_secret_value()))
        self._events = redis_client(
            self.settings.events_redis_url, self.settings.redis_options, decode_responses=True
        )
        # Where the stream stood before each command was sent: its event comes after that.
        self._sent_after: dict[str, str] = {}
        # What each recent command_id was sent as: a resend sends the same sealed tokens, since
        # the worker fingerprints a sealed field by its token (a re-sealed one is another request).
        self._sent_as: OrderedDict[str, tuple[str, dict[str, Any], dict[str, Any]]] = OrderedDict()

    def reset_session_key(
        self,
        accountid: str,
        *,
        requester_accountid: str | None = None,
        appid: str | None = None,
        command_id: str | None = None,
    ) -> str:
        """End every session of `accountid`; the requester is the account itself by default."""
        payload = {ACCOUNTID: accountid, REQUESTER_ACCOUNTID: requester_accountid or accountid}
        return self.send("reset-session-key", payload, appid=appid, command_id=command_id)

    def reset_session_keys(
        self,
        accountids: Iterable[str] | None = None,
        *,
        every_account: bool = False,
        appid: str | None = None,
        bulk_id: str | None = None,
        requested_by: str | None = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> BulkRun:
        """End every session of the listed accounts, or with `every_account` of each account of
        the appid (an operator's command after an incident; `requested_by` names who asked, in
        every event). Listed accounts go as messages of up to a thousand; `on_sent` is told
        how many accounts each message carried. Sending again with the same `bulk_id` is safe.
        """
        if every_account == (accountids is not None):
            raise ValueError("name accountids, or every_account, not both")
        bulk_id = bulk_id or new_bulk_id()
        after = self._stream_now()
        if every_account:
            payload = every_account_payload(requested_by=requested_by)
            self.send(ResetSessionKeys.name, payload, appid=appid, command_id=bulk_id)
            return BulkRun(bulk_id, [bulk_id], every_account=True, listed=None, after=after)
        sent, listed = [], 0
        assert accountids is not None
        for command_id, payload in chunk_payloads(
            accountids, bulk_id=bulk_id, requested_by=requested_by
        ):
            sent.append(
                self.send(ResetSessionKeys.name, payload, appid=appid, command_id=command_id)
            )
            listed += len(payload["accountids"])
            if on_sent is not None:
                on_sent(len(payload["accountids"]))
        return BulkRun(bulk_id, sent, every_account=False, listed=listed, after=after)

    def follow_bulk(
        self,
        run: BulkRun,
        *,
        timeout_s: float = 300.0,
        on_progress: Callable[[BulkProgress], None] | None = None,
    ) -> BulkProgress:
        """Read a bulk run's events until it is over; TimeoutError after `timeout_s`."""
        return follow_run(
            self._events, self.settings.events_stream, run,
            timeout_s=timeout_s, on_progress=on_progress,
        )  # fmt: skip

    def queue_of(self, command: str) -> str:
        """Session revocations go to their own queue when there is one."""
        if command == "reset-session-key" and self.settings.sessions_queue:
            return self.settings.sessions_queue
        return self.settings.queue

    def reset_account_password(
        self,
        *,
        username: str,
        secret_code: str,
        new_password: str,
        appid: str | None = None,
        command_id: str | None = None,
        source: str | None = None,
    ) -> str:
        """Set a new password with a reset code. `source` names where the request came from
        (a hashed client address, a device id, at most 200 characters; never a raw address):
        the worker then also limits attempts at codes per source."""
        payload = {USERNAME: username, SECRET_CODE: secret_code, NEW_PASSWORD: new_password}
        if source is not None:
            payload[SOURCE] = source
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
        self._sent_after.setdefault(command_id, self._stream_now())
        message = self._message(command, payload, command_id)
        if appid is not None:
            message["appid"] = appid
        self._app.send_task(
            command,
            kwargs=message,
            queue=self.queue_of(command),
            task_id=command_id,
            argsrepr="()",
            kwargsrepr=redacted_kwargs(message),
        )
        return command_id

    def wait(self, command_id: str, *, timeout_s: float = 30.0) -> CommandOutcome:
        """The result event of a command sent by this client; TimeoutError after the deadline.

        On a timeout, sending the same command again with the same command_id is safe: the
        worker applies it at most once and answers with its recorded outcome.
        """
        return self.wait_all([command_id], timeout_s=timeout_s)[command_id]

    def wait_all(
        self,
        command_ids: Iterable[str],
        *,
        timeout_s: float = 30.0,
        on_event: Callable[[CommandOutcome], None] | None = None,
    ) -> dict[str, CommandOutcome]:
        """The result events of several commands, each also handed to `on_event` as it comes
        (a progress bar); TimeoutError (OutcomesMissing) names every one still missing."""
        ids = set(command_ids)
        after = min((self._sent_after.get(i, "0-0") for i in ids), key=_stream_id, default="0-0")
        return wait_for_outcomes(
            self._events, self.settings.events_stream, ids,
            timeout_s=timeout_s, after=after, on_event=on_event,
        )  # fmt: skip

    @staticmethod
    def _stream_now() -> str:
        """A stream id safely before now: stream ids are the Redis server's milliseconds, so
        this allows for a clock that differs from Redis's by up to a minute (sending needs no
        read access to the events Redis)."""
        return f"{max(int((time.time() - CLOCK_ALLOWANCE_S) * 1000), 0)}-0"

    def _message(self, command: str, payload: dict[str, Any], command_id: str) -> dict[str, Any]:
        """The kwargs to send: the ones sent before under this command_id when it is a resend
        of the same command, so that the worker recognises it and replays its outcome."""
        before = self._sent_as.get(command_id)
        if before is not None and before[:2] == (command, payload):
            self._sent_as.move_to_end(command_id)
            return dict(before[2])
        # The command_id first: each sealed field is bound to it.
        message = self._sealed(payload, command=command, command_id=command_id)
        message[COMMAND_ID] = command_id
        self._sent_as[command_id] = (command, dict(payload), dict(message))
        while len(self._sent_as) > REMEMBERED_SENDS:
            self._sent_as.popitem(last=False)
        return message

    def _sealed(self, payload: dict[str, Any], *, command: str, command_id: str) -> dict[str, Any]:
        """Each secret field sealed, bound to this command, the field and the command_id."""
        sealed = dict(payload)
        if self._sealing_key is None and self._fernet is None:
            return sealed
        for field, value in payload.items():
            if field in SEALABLE and isinstance(value, str):
                sealed[field] = {"sealed": self._seal(value, command, field, command_id)}
        return sealed

    def _seal(self, text: str, command: str, field: str, command_id: str) -> str:
        if self._sealing_key is not None:
            binding = Binding.of(command=command, field=field, command_id=command_id)
            return seal(text, key=self._sealing_key, binding=binding)
        assert self._fernet is not None
        return self._fernet.encrypt(text.encode()).decode()

    def close(self) -> None:
        self._app.close()
        self._events.close()

    def __enter__(self) -> AccountResetClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
