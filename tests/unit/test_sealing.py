"""Sealing keys (finding 1) without a service: a producer's public key opens nothing, keys that
are not a private P-256 set are refused in one line, keys come from a file, and a
dead letter's tokens are sealed again with their binding (never made young once expired). The
sealed commands themselves: tests/integration/test_sealing.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from pydantic import ValidationError

from client import ClientSettings
from client.sealing import REGISTRY
from tests.support.ids import unique
from tests.support.keys import (
    TEST_SEALING_KEYS,
    TEST_SEALING_KEYS_JSON,
    TEST_SEALING_PUBLIC_KEY,
)
from tests.support.sealing import (
    PASSWORD_RESET,
    TWO_HOURS_S,
    header_of,
    sealed,
    sealed_payload,
)
from worker.bootstrap import sealed_fields
from worker.security.sealed_fields import resealed
from worker.security.sealing import SealError
from worker.security.sealing_keys import SealingKeys
from worker.settings import Settings

DEADLINE_S = 60.0


def test_finding_1_a_producer_holding_the_public_key_cannot_open_a_sealed_value() -> None:
    """Finding 1: every producer held the symmetric key, so every producer could open every
    other producer's secrets. A producer now holds the public key, which opens nothing."""
    token = sealed("a-victims-code", field="secret-code", command_id="c-1")["sealed"]
    public = ECKey.import_key(json.loads(TEST_SEALING_PUBLIC_KEY))

    with pytest.raises(JoseError):
        jwe.decrypt_compact(token, public, registry=REGISTRY)
    with pytest.raises(JoseError):
        jwe.decrypt_compact(token, public)
    assert TEST_SEALING_KEYS.open(token).text == "a-victims-code"  # the worker's key does


def test_a_producer_is_refused_a_private_key_and_the_worker_a_public_one(tmp_path: Path) -> None:
    private = json.dumps(TEST_SEALING_KEYS.private_jwk_set()["keys"][0])
    with pytest.raises(
        ValidationError, match="ACCOUNT_RESET_SEALING_PUBLIC_KEY holds a private key"
    ) as refused:
        ClientSettings(sealing_public_key=private)
    assert TEST_SEALING_KEYS.private_jwk_set()["keys"][0]["d"] not in str(refused.value)
    key_file = tmp_path / "public.jwk"
    key_file.write_text(TEST_SEALING_PUBLIC_KEY)
    from_file = ClientSettings(sealing_public_key_file=key_file).sealing_key
    assert from_file is not None
    assert from_file.kid == TEST_SEALING_KEYS.newest.kid
    public_set = json.dumps({"keys": [TEST_SEALING_KEYS.public_jwk()]})
    with pytest.raises(
        ValidationError, match="ACCOUNT_RESET_SEALING_KEYS must be a JWK Set of private"
    ):
        Settings(sealing_keys=public_set)


@pytest.mark.parametrize(
    "keys",
    [
        "not json", "[]", '{"keys": []}', '{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "a"}]}',
        "P-384", "no kid", "same kid twice", "public only",
    ],
)  # fmt: skip
def test_sealing_keys_that_are_not_a_private_p256_set_are_refused_in_one_line(keys: str) -> None:
    key = TEST_SEALING_KEYS.private_jwk_set()["keys"][0]
    made: dict[str, Callable[[], dict[str, Any]]] = {
        "P-384": lambda: {
            "keys": [ECKey.generate_key("P-384", private=True, auto_kid=True).as_dict(private=True)]
        },
        "no kid": lambda: {"keys": [{k: v for k, v in key.items() if k != "kid"}]},
        "same kid twice": lambda: {
            "keys": [
                key,
                {**SealingKeys.generated().private_jwk_set()["keys"][0], "kid": key["kid"]},
            ]
        },
        "public only": lambda: {"keys": [TEST_SEALING_KEYS.public_jwk()]},
    }
    text = json.dumps(made[keys]()) if keys in made else keys

    with pytest.raises(ValidationError) as refused:
        Settings(sealing_keys=text)

    [error] = refused.value.errors()
    assert "ACCOUNT_RESET_SEALING_KEYS must be a JWK Set of private EC P-256 keys" in error["msg"]
    assert key["d"] not in str(refused.value)


def test_sealing_keys_are_read_from_their_file(tmp_path: Path) -> None:
    key_file = tmp_path / "sealing-keys.json"
    key_file.write_text(TEST_SEALING_KEYS_JSON)

    settings = Settings(sealing_keys_file=key_file, sealed_max_age_s=600)

    keys = settings.sealing_key_set
    assert keys is not None
    assert keys.newest.kid == TEST_SEALING_KEYS.newest.kid
    assert sealed_fields(settings).max_age_s == 600
    with pytest.raises(
        ValidationError,
        match="ACCOUNT_RESET_SEALING_KEYS or ACCOUNT_RESET_SEALING_KEYS_FILE, not both",
    ):
        Settings(sealing_keys=TEST_SEALING_KEYS_JSON, sealing_keys_file=key_file)
    with pytest.raises(
        ValidationError, match="ACCOUNT_RESET_SEALING_KEYS_FILE names a file that cannot be read"
    ):
        Settings(sealing_keys_file=tmp_path / "missing.json")


def test_resealing_keeps_the_binding_and_stamps_now() -> None:
    old = SealingKeys.generated()
    rotated = SealingKeys.generated(keeping=old)
    command_id = unique("cmd")
    kept = sealed_payload(
        "alice-1", "code", "password", command_id=command_id, keys=old, age_s=TWO_HOURS_S
    )

    lettered = int(time.time()) - TWO_HOURS_S + 60  # a minute after it was sealed
    again = resealed(
        kept, keys=rotated, command=PASSWORD_RESET, command_id=command_id,
        issued_after=lettered - 3600,
    )  # fmt: skip

    for field in ("username", "secret-code", "new-password"):
        header = header_of(again[field]["sealed"])
        assert (header["cmd"], header["fld"], header["cid"]) == (PASSWORD_RESET, field, command_id)
        assert header["kid"] == rotated.newest.kid
        assert abs(header["iat"] - time.time()) < 60
    assert rotated.open(again["secret-code"]["sealed"]).text == "code"
    with pytest.raises(SealError):
        resealed(kept, keys=rotated, command=PASSWORD_RESET, command_id=unique("another"),
                 issued_after=lettered - 3600)  # fmt: skip


def test_review_finding_a_retry_never_makes_an_expired_token_young() -> None:
    """The adversarial review of this issue: `failed retry` stamped any token afresh, a year
    old included, so an old message pushed where it would be dead-lettered (a retryable
    unknown-task letter) came back young at the next `failed retry --all`. A token that had
    expired by the time its command was dead-lettered stays refused."""
    keys = SealingKeys.generated()
    command_id = unique("cmd")
    year_old = sealed_payload("alice-1", "code", "password", command_id=command_id, keys=keys,
                              age_s=365 * 24 * 3600)  # fmt: skip
    with pytest.raises(SealError, match="expired before its command was dead-lettered"):
        resealed(year_old, keys=keys, command=PASSWORD_RESET, command_id=command_id,
                 issued_after=int(time.time()) - 3600)  # fmt: skip
