"""Secret fields sealed as a producer seals them (a compact JWE to the worker's public key, bound
to one command, field and command_id), legacy Fernet tokens made with openssl, and a processor
that opens them with the keys a test chooses."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from joserfc import jwe
from joserfc.jwk import ECKey

from client.sealing import REGISTRY
from tasks.pipeline import CommandProcessor
from tests.support.keys import TEST_PAYLOAD_KEY, TEST_SEALING_KEYS
from worker.security.sealed_fields import SealedFields
from worker.security.sealing import Sealer
from worker.security.sealing_keys import SealingKeys

SEAL_SH = Path(__file__).parents[2] / "examples" / "seal.sh"
PASSWORD_RESET = "reset-account-password"
NEW_PASSWORD = "sealed-new-pässword"
TWO_HOURS_S = 7200


def sealed(
    text: str,
    *,
    field: str,
    command_id: str,
    command: str = PASSWORD_RESET,
    keys: SealingKeys = TEST_SEALING_KEYS,
    age_s: int = 0,
) -> dict[str, str]:
    """`text` sealed as a producer seals it: to the newest key's public half, with joserfc."""
    public = ECKey.import_key(keys.public_jwk())
    header = {
        "alg": "ECDH-ES", "enc": "A256GCM", "kid": public.kid,
        "cmd": command, "fld": field, "cid": command_id, "iat": int(time.time()) - age_s,
    }  # fmt: skip
    return {"sealed": jwe.encrypt_compact(header, text.encode(), public, registry=REGISTRY)}


def sealed_payload(
    username: str, code: str, password: str, *, command_id: str, **how: Any
) -> dict[str, Any]:
    """A password reset with every secret field sealed for it, and its command_id."""
    values = {"username": username, "secret-code": code, "new-password": password}
    fields = {k: sealed(v, field=k, command_id=command_id, **how) for k, v in values.items()}
    return {**fields, "command_id": command_id}


def seal_with_openssl(secret: str, key: str = TEST_PAYLOAD_KEY) -> dict[str, str]:
    """A legacy Fernet token, made by examples/seal.sh with openssl alone."""
    env = {"PATH": os.environ["PATH"], "ACCOUNT_RESET_PAYLOAD_KEY": key}
    token = subprocess.run(
        ["bash", str(SEAL_SH)], input=secret.encode(), env=env, capture_output=True, check=True,
        timeout=30,
    ).stdout.decode()  # fmt: skip
    return {"sealed": token.strip()}


def sealing(
    processor: CommandProcessor,
    *,
    required: bool = False,
    keys: SealingKeys | None = TEST_SEALING_KEYS,
    legacy: bool = False,
) -> CommandProcessor:
    fields = SealedFields(
        keys=keys,
        required=required,
        max_field_length=1024,
        legacy=Sealer([TEST_PAYLOAD_KEY]) if legacy else None,
    )
    return dataclasses.replace(processor, sealed=fields)


def header_of(token: str) -> dict[str, Any]:
    protected = token.split(".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(protected + "=" * (-len(protected) % 4))))


def seal_bytes(data: bytes, *, field: str, command_id: str) -> str:
    public = ECKey.import_key(TEST_SEALING_KEYS.public_jwk())
    header = {
        "alg": "ECDH-ES", "enc": "A256GCM", "kid": public.kid, "cmd": PASSWORD_RESET,
        "fld": field, "cid": command_id, "iat": int(time.time()),
    }  # fmt: skip
    return jwe.encrypt_compact(header, data, public, registry=REGISTRY)
