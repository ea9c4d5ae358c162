"""Sealed secret fields: opened by the worker, refused when they do not open, and required when
`REQUIRE_SEALED` is on. Values are sealed by examples/seal.sh (openssl alone, none of this
project's code), by the Python client, and by Fernet with another key.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from tests.conftest import Seeder
from tests.support import TEST_PAYLOAD_KEY, unique
from tests.test_rules import reset_password
from worker.processing import CommandProcessor
from worker.sealed_fields import SealedFields
from worker.sealing import Sealer

SEAL_SH = Path(__file__).parent.parent / "examples" / "seal.sh"
NEW_PASSWORD = "sealed-new-pässword"


def seal_with_openssl(secret: str, key: str = TEST_PAYLOAD_KEY) -> dict[str, str]:
    env = {"PATH": os.environ["PATH"], "ACCOUNT_RESET_PAYLOAD_KEY": key}
    token = subprocess.run(
        ["bash", str(SEAL_SH)], input=secret.encode(), env=env, capture_output=True, check=True
    ).stdout.decode()
    return {"sealed": token.strip()}


def sealing(processor: CommandProcessor, *, required: bool = False) -> CommandProcessor:
    sealed = SealedFields(
        sealer=Sealer([TEST_PAYLOAD_KEY]), required=required, max_field_length=1024
    )
    return dataclasses.replace(processor, sealed=sealed)


def test_fields_sealed_with_openssl_are_opened(processor: CommandProcessor, seeder: Seeder) -> None:
    user = seeder.account()
    code = seeder.code(user)
    payload = {
        "username": seal_with_openssl(user.username),
        "secret-code": seal_with_openssl(code),
        "new-password": seal_with_openssl(NEW_PASSWORD),
    }

    outcome = reset_password(sealing(processor, required=True), **payload)

    assert outcome.status == "success"
    account = seeder.load(user.accountid)
    assert seeder.hasher.password_matches(NEW_PASSWORD, account.password_hash or "")


@pytest.mark.parametrize(
    "how",
    ["another key", "altered", "not a token", "no key at the worker", "far too long", "not text"],
)
def test_a_sealed_value_that_does_not_open_is_invalid_payload(
    processor: CommandProcessor, seeder: Seeder, how: str
) -> None:
    user = seeder.account()
    code = seeder.code(user)
    good = seal_with_openssl(NEW_PASSWORD)["sealed"]
    bad: dict[str, Any] = {
        "another key": {"sealed": Fernet(Fernet.generate_key()).encrypt(b"password").decode()},
        "altered": {"sealed": good[:-8] + ("A" * 8 if not good.endswith("A" * 8) else "B" * 8)},
        "not a token": {"sealed": "not-a-fernet-token"},
        "no key at the worker": {"sealed": good},
        "far too long": {"sealed": good * 100},
        "not text": {"sealed": Fernet(TEST_PAYLOAD_KEY).encrypt(b"\xff\xfe\xfd").decode()},
    }
    worker = processor if how == "no key at the worker" else sealing(processor)

    outcome = reset_password(
        worker, username=user.username, **{"secret-code": code, "new-password": bad[how]}
    )

    assert outcome.code == "invalid-payload"
    assert seeder.codes_of(user.accountid) == 1


@pytest.mark.parametrize("plain", ["new-password", "secret-code"])
def test_when_sealing_is_required_a_plaintext_secret_is_invalid_payload(
    processor: CommandProcessor, seeder: Seeder, plain: str
) -> None:
    user = seeder.account()
    code = seeder.code(user)
    values = {"secret-code": code, "new-password": NEW_PASSWORD}
    payload = {k: v if k == plain else seal_with_openssl(v) for k, v in values.items()}

    outcome = reset_password(sealing(processor, required=True), username=user.username, **payload)

    assert outcome.code == "invalid-payload"
    assert seeder.codes_of(user.accountid) == 1


def test_plaintext_is_still_accepted_unless_sealing_is_required(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    user = seeder.account()
    code = seeder.code(user)

    outcome = reset_password(
        sealing(processor),
        username=user.username,
        **{"secret-code": code, "new-password": seal_with_openssl(NEW_PASSWORD)},
    )

    assert outcome.status == "success"


def test_the_python_client_seals_with_the_key_and_imports_no_database_code(
    redis_url: str,
) -> None:
    """The client's message, read back from the broker, holds sealed secrets only."""
    queue = unique("account-reset-test")
    secret = unique("client-secret")
    script = f"""
import sys, redis
from client import AccountResetClient, ClientSettings
settings = ClientSettings(
    broker_url={redis_url!r}, queue={queue!r}, payload_key={TEST_PAYLOAD_KEY!r})
AccountResetClient(settings).reset_account_password(
    username={secret!r}, secret_code={secret!r}, new_password={secret!r})
assert "sqlalchemy" not in sys.modules and "worker" not in sys.modules, "database code imported"
print(redis.Redis.from_url({redis_url!r}).lpop({queue!r}).decode())
"""
    sent = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout

    assert secret not in sent
    envelope = json.loads(sent)
    kwargs = json.loads(base64.b64decode(envelope["body"]))[1]
    sealer = Sealer([TEST_PAYLOAD_KEY])
    opened = {k: sealer.open_text(kwargs[k]["sealed"]) for k in ("username", "new-password")}
    assert opened == {"username": secret, "new-password": secret}
    assert secret not in envelope["headers"]["kwargsrepr"]
