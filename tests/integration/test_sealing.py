"""Sealed secret fields (finding 1): a compact JWE (ECDH-ES, A256GCM) to the worker's public key,
bound by its protected header to one command, one field and one command_id, and stamped.

The worker opens a value only where it was sealed for and only while it is young; a producer
holding the public key cannot open anything; keys rotate; today's Fernet tokens open only behind
LEGACY_FERNET_SEALED (examples/seal.sh makes them with openssl alone); the Python client's
message holds bound tokens only. Values are sealed with joserfc directly (the library, not this
project's code) wherever the test is about the format; the CLI makes and rotates keys. The keys
and resealing alone:
tests/unit/test_sealing.py; a dead-letter retry in a real worker: tests/e2e/test_sealing.py.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwe
from joserfc.jwk import ECKey
from pydantic import ValidationError

from client import ClientSettings
from client.sealing import Binding, seal
from tasks.pipeline import CommandProcessor
from tests.support.commands import reset_password
from tests.support.ids import unique
from tests.support.keys import (
    TEST_PAYLOAD_KEY,
    TEST_SEALING_KEYS,
    TEST_SEALING_KEYS_JSON,
    TEST_SEALING_PUBLIC_KEY,
)
from tests.support.probes import CLI
from tests.support.sealing import (
    NEW_PASSWORD,
    PASSWORD_RESET,
    TWO_HOURS_S,
    header_of,
    seal_bytes,
    seal_with_openssl,
    sealed,
    sealed_payload,
    sealing,
)
from tests.support.seeding import Seeder
from worker.bootstrap import sealed_fields
from worker.security.sealing_keys import SealingKeys
from worker.settings import Settings

DEADLINE_S = 60.0


def test_fields_sealed_to_the_public_key_are_opened(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    user = seeder.account()
    code = seeder.code(user)
    payload = sealed_payload(user.username, code, NEW_PASSWORD, command_id=unique("cmd"))

    outcome = reset_password(sealing(processor, required=True), **payload)

    assert outcome.status == "success"
    account = seeder.load(user.accountid)
    assert seeder.hasher.password_matches(NEW_PASSWORD, account.password_hash or "")


@pytest.mark.parametrize(
    "moved", ["under a new command_id", "into another field", "another command"]
)
def test_finding_1_a_victims_sealed_fields_pasted_into_another_command_are_refused(
    processor: CommandProcessor, seeder: Seeder, moved: str
) -> None:
    """Finding 1: with Redis read and write access, an attacker took a victim's sealed username
    and reset code from the append-only file, added the sealed token of a password of their own,
    and the recombined command reset the victim's password (`success`). Now: invalid-payload, the
    password unchanged, the victim's code unused."""
    victim = seeder.account()
    code = seeder.code(victim)
    before = seeder.load(victim.accountid).password_hash
    victims_id = unique("victims-cmd")
    # What the victim's producer sent (and the attacker copied out of the broker's file).
    victims = sealed_payload(victim.username, code, "victims-own-password", command_id=victims_id)
    if moved == "under a new command_id":
        # The attacker is a producer too: their own password, sealed for their own command.
        attackers_id = unique("attackers-cmd")
        payload = {
            "username": victims["username"], "secret-code": victims["secret-code"],
            "new-password": sealed(NEW_PASSWORD, field="new-password", command_id=attackers_id),
            "command_id": attackers_id,
        }  # fmt: skip
    elif moved == "into another field":
        # Same command_id, the victim's reset code sent as the password and the other way round.
        payload = {
            **victims, "new-password": victims["secret-code"],
            "secret-code": sealed(NEW_PASSWORD, field="secret-code", command_id=victims_id),
        }  # fmt: skip
    else:
        # Tokens sealed for another command, under the same command_id and field names.
        other = sealed_payload(
            victim.username, code, NEW_PASSWORD, command_id=victims_id, command="reset-session-key"
        )
        payload = other

    outcome = reset_password(sealing(processor, required=True), **payload)

    print(f"\nfinding 1, victim's sealed fields {moved}: {outcome.code}")
    assert outcome.code == "invalid-payload"
    assert seeder.load(victim.accountid).password_hash == before
    assert seeder.codes_of(victim.accountid) == 1


@pytest.mark.parametrize(
    ("age_s", "code"),
    [
        (TWO_HOURS_S, "sealed-value-expired"),
        (3600 + 5, "sealed-value-expired"),
        (3600 - 60, "success"),
        (-30, "success"),  # a producer's clock a little ahead
        (-120, "invalid-payload"),  # stamped two minutes in the future
    ],
)
def test_finding_1_a_token_sealed_two_hours_ago_is_sealed_value_expired(
    processor: CommandProcessor, seeder: Seeder, age_s: int, code: str
) -> None:
    """Finding 1: a token sealed a year ago still opened. Now one older than SEALED_MAX_AGE_S
    (3600 s) is sealed-value-expired, and nothing is applied."""
    user = seeder.account()
    secret = seeder.code(user)
    payload = sealed_payload(
        user.username, secret, NEW_PASSWORD, command_id=unique("cmd"), age_s=age_s
    )

    outcome = reset_password(sealing(processor), **payload)

    assert (outcome.code or "success") == code
    assert seeder.codes_of(user.accountid) == (0 if code == "success" else 1)


def test_expired_and_misbound_fields_together_are_invalid_payload(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    user = seeder.account()
    command_id = unique("cmd")
    payload = sealed_payload(user.username, seeder.code(user), NEW_PASSWORD, command_id=command_id)
    payload["username"] = sealed(
        user.username, field="username", command_id=command_id, age_s=TWO_HOURS_S
    )
    payload["new-password"] = sealed(NEW_PASSWORD, field="new-password", command_id=unique("other"))

    assert reset_password(sealing(processor), **payload).code == "invalid-payload"


@pytest.mark.parametrize(
    "header",
    [
        {"cmd": None}, {"fld": None}, {"cid": None}, {"iat": None},
        {"iat": "1700000000"}, {"iat": True}, {"iat": 1.5e9}, {"cmd": ["reset-account-password"]},
    ],
)  # fmt: skip
def test_a_token_whose_header_lacks_a_binding_is_invalid_payload(
    processor: CommandProcessor, seeder: Seeder, header: dict[str, Any]
) -> None:
    user = seeder.account()
    code = seeder.code(user)
    command_id = unique("cmd")
    public = ECKey.import_key(TEST_SEALING_KEYS.public_jwk())
    full = {
        "alg": "ECDH-ES", "enc": "A256GCM", "kid": public.kid, "cmd": PASSWORD_RESET,
        "fld": "new-password", "cid": command_id, "iat": int(time.time()),
    }  # fmt: skip
    changed = {k: v for k, v in {**full, **header}.items() if v is not None}
    lax = jwe.JWERegistry(strict_check_header=False, algorithms=["ECDH-ES", "A256GCM"])
    token = jwe.encrypt_compact(changed, NEW_PASSWORD.encode(), public, registry=lax)
    payload = sealed_payload(user.username, code, NEW_PASSWORD, command_id=command_id)

    outcome = reset_password(sealing(processor), **{**payload, "new-password": {"sealed": token}})

    assert outcome.code == "invalid-payload"
    assert seeder.codes_of(user.accountid) == 1


def test_a_sealed_field_needs_the_command_id_in_the_message(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    """Without a command_id the outcome is recorded under the task id, which no producer could
    have bound its fields to."""
    user = seeder.account()
    payload = sealed_payload(user.username, seeder.code(user), NEW_PASSWORD, command_id=unique("c"))
    del payload["command_id"]

    assert reset_password(sealing(processor), **payload).code == "invalid-payload"


def _another_key_token(command_id: str) -> dict[str, str]:
    return sealed(
        NEW_PASSWORD, field="new-password", command_id=command_id, keys=SealingKeys.generated()
    )


def _other_algorithm_token(command_id: str, alg: str, enc: str) -> dict[str, str]:
    public = ECKey.import_key(TEST_SEALING_KEYS.public_jwk())
    header = {
        "alg": alg, "enc": enc, "kid": public.kid, "cmd": PASSWORD_RESET, "fld": "new-password",
        "cid": command_id, "iat": int(time.time()),
    }  # fmt: skip
    lax = jwe.JWERegistry(strict_check_header=False, algorithms=[alg, enc])
    return {"sealed": jwe.encrypt_compact(header, NEW_PASSWORD.encode(), public, registry=lax)}


@pytest.mark.parametrize(
    "how",
    [
        "another key", "altered", "not a token", "five dots", "no key at the worker",
        "far too long", "not text", "A128GCM", "ECDH-ES+A256KW", "legacy Fernet, setting off",
    ],
)  # fmt: skip
def test_a_sealed_value_that_does_not_open_is_invalid_payload(
    processor: CommandProcessor, seeder: Seeder, how: str
) -> None:
    user = seeder.account()
    code = seeder.code(user)
    command_id = unique("cmd")
    good = sealed(NEW_PASSWORD, field="new-password", command_id=command_id)["sealed"]
    parts = good.split(".")
    bad: dict[str, Any] = {
        "another key": lambda: _another_key_token(command_id),
        "altered": lambda: {"sealed": ".".join([*parts[:3], parts[3][::-1], parts[4]])},
        "not a token": lambda: {"sealed": "not-a-token"},
        "five dots": lambda: {"sealed": "a.b.c.d.e"},
        "no key at the worker": lambda: {"sealed": good},
        "far too long": lambda: {"sealed": good + "A" * 5000},
        "not text": lambda: {
            "sealed": seal_bytes(b"\xff\xfe\xfd", field="new-password", command_id=command_id)
        },
        "A128GCM": lambda: _other_algorithm_token(command_id, "ECDH-ES", "A128GCM"),
        "ECDH-ES+A256KW": lambda: _other_algorithm_token(command_id, "ECDH-ES+A256KW", "A256GCM"),
        "legacy Fernet, setting off": lambda: seal_with_openssl(NEW_PASSWORD),
    }
    worker = sealing(processor, keys=None if how == "no key at the worker" else TEST_SEALING_KEYS)

    outcome = reset_password(
        worker,
        username=user.username,
        command_id=command_id,
        **{"secret-code": code, "new-password": bad[how]()},
    )

    assert outcome.code == "invalid-payload"
    assert seeder.codes_of(user.accountid) == 1


def test_key_rotation_an_old_key_opens_while_in_the_set_and_not_after(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    old = SealingKeys.generated()
    rotated = SealingKeys.generated(keeping=old)
    dropped = SealingKeys(rotated.keys[:1])
    outcomes = {}
    for name, keys in {"old key still in the set": rotated, "old key dropped": dropped}.items():
        user = seeder.account()
        payload = sealed_payload(
            user.username, seeder.code(user), NEW_PASSWORD, command_id=unique("c"), keys=old
        )
        outcomes[name] = reset_password(sealing(processor, keys=keys), **payload).code or "success"
    user = seeder.account()
    newest = sealed_payload(
        user.username, seeder.code(user), NEW_PASSWORD, command_id=unique("c"), keys=rotated
    )

    assert header_of(newest["username"]["sealed"])["kid"] == rotated.newest.kid != old.newest.kid
    assert outcomes == {"old key still in the set": "success", "old key dropped": "invalid-payload"}
    assert reset_password(sealing(processor, keys=dropped), **newest).status == "success"


def test_legacy_fernet_tokens_open_only_with_the_legacy_setting(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    """Today's format (examples/seal.sh, openssl alone) binds nothing: refused by default."""
    default = Settings(payload_key=TEST_PAYLOAD_KEY, sealing_keys=TEST_SEALING_KEYS_JSON)
    legacy = Settings(payload_key=TEST_PAYLOAD_KEY, legacy_fernet_sealed=True)
    outcomes = {}
    for name, settings in {"default": default, "LEGACY_FERNET_SEALED=true": legacy}.items():
        user = seeder.account()
        payload = {
            "username": seal_with_openssl(user.username),
            "secret-code": seal_with_openssl(seeder.code(user)),
            "new-password": seal_with_openssl(NEW_PASSWORD),
        }
        worker = dataclasses.replace(processor, sealed=sealed_fields(settings))
        outcomes[name] = reset_password(worker, **payload).code or "success"

    assert outcomes == {"default": "invalid-payload", "LEGACY_FERNET_SEALED=true": "success"}
    with pytest.raises(
        ValidationError, match="ACCOUNT_RESET_LEGACY_FERNET_SEALED needs ACCOUNT_RESET_PAYLOAD_KEY"
    ):
        Settings(legacy_fernet_sealed=True)


@pytest.mark.parametrize("plain", ["new-password", "secret-code"])
def test_when_sealing_is_required_a_plaintext_secret_is_invalid_payload(
    processor: CommandProcessor, seeder: Seeder, plain: str
) -> None:
    user = seeder.account()
    command_id = unique("cmd")
    values = {"secret-code": seeder.code(user), "new-password": NEW_PASSWORD}
    payload = {
        k: v if k == plain else sealed(v, field=k, command_id=command_id) for k, v in values.items()
    }

    outcome = reset_password(
        sealing(processor, required=True), username=user.username, command_id=command_id, **payload
    )

    assert outcome.code == "invalid-payload"
    assert seeder.codes_of(user.accountid) == 1


def test_plaintext_is_still_accepted_unless_sealing_is_required(
    processor: CommandProcessor, seeder: Seeder
) -> None:
    user = seeder.account()
    command_id = unique("cmd")

    outcome = reset_password(
        sealing(processor),
        username=user.username,
        command_id=command_id,
        **{
            "secret-code": seeder.code(user),
            # The other spelling: bound as `new-password`.
            "new_password": sealed(NEW_PASSWORD, field="new-password", command_id=command_id),
        },
    )

    assert outcome.status == "success"


def test_the_python_client_seals_bound_tokens_and_imports_no_database_code(redis_url: str) -> None:
    """The client's message, read back from the broker, holds only JWE tokens whose protected
    headers bind the command, the field and the command_id sent."""
    queue = unique("account-reset-test")
    secret = unique("client-secret")
    script = f"""
import sys, redis
from client import AccountResetClient, ClientSettings
settings = ClientSettings(
    broker_url={redis_url!r}, queue={queue!r}, sealing_public_key={TEST_SEALING_PUBLIC_KEY!r},
    payload_key={TEST_PAYLOAD_KEY!r})
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
    command_id = kwargs["command_id"]
    assert command_id == envelope["headers"]["id"]
    for field in ("username", "secret-code", "new-password"):
        token = kwargs[field]["sealed"]
        header = header_of(token)
        assert (header["alg"], header["enc"], header["kid"]) == (
            "ECDH-ES",
            "A256GCM",
            TEST_SEALING_KEYS.newest.kid,
        )
        assert (header["cmd"], header["fld"], header["cid"]) == (PASSWORD_RESET, field, command_id)
        assert abs(header["iat"] - time.time()) < 60
        assert TEST_SEALING_KEYS.open(token).text == secret
    assert secret not in envelope["headers"]["kwargsrepr"]


# The CLI's key commands (processes of their own, so not in the unit ring).


def test_the_cli_makes_keys_rotates_them_and_prints_the_public_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCOUNT_RESET_")}
    first = subprocess.run(
        [CLI, "sealing-keys", "new"], env=env, capture_output=True, text=True, check=True,
        timeout=60,
    ).stdout  # fmt: skip
    (tmp_path / "keys.json").write_text(first)
    second = subprocess.run(
        [CLI, "sealing-keys", "new", "--keys-file", str(tmp_path / "keys.json")],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    public = subprocess.run(
        [CLI, "sealing-keys", "public"], env={**env, "ACCOUNT_RESET_SEALING_KEYS": second},
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip

    old, rotated = SealingKeys.from_json(first), SealingKeys.from_json(second)
    assert [k.kid for k in rotated.keys] == [rotated.newest.kid, old.newest.kid]
    assert rotated.newest.kid != old.newest.kid
    assert json.loads(public) == rotated.public_jwk()
    assert "d" not in json.loads(public)
    producer = ClientSettings(sealing_public_key=public).sealing_key
    assert producer is not None
    token = seal("x", key=producer, binding=Binding.of(command="c", field="f", command_id="i"))
    assert rotated.open(token).text == "x"
