"""The sealed format, producer's side: a compact JWE (ECDH-ES, A256GCM) to the worker's public key.

A secret field travels as `{"sealed": TOKEN}`. TOKEN's protected header, which AES-GCM
authenticates, binds the value to where it was sealed for: `cmd` (the task name), `fld` (the
field, hyphen spelling), `cid` (the message's command_id) and `iat` (Unix seconds). The worker
opens it only there, and only while it is young (docs/security.md: "The sealed format"). A
producer holds the public key alone, so it cannot open what another producer sealed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, MultiFernet
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey
from joserfc.registry import HeaderParameter, is_str

ALGORITHM = "ECDH-ES"
ENCRYPTION = "A256GCM"
CURVE = "P-256"
# The binding, in the protected header: names the Node example and docs/security.md use too.
COMMAND_HEADER, FIELD_HEADER, COMMAND_ID_HEADER, ISSUED_AT_HEADER = "cmd", "fld", "cid", "iat"


def _is_seconds(value: Any) -> None:
    # JSON `true` is an int to Python; a time is a whole number of seconds and nothing else.
    if type(value) is not int:
        raise ValueError("must be an integer")


# Only this one algorithm pair opens (no `zip`: a compressed token would be inflated before its
# size is known), and every binding header is required: a token without one does not open.
REGISTRY = jwe.JWERegistry(
    header_registry={
        COMMAND_HEADER: HeaderParameter("Command (task name)", is_str, required=True),
        FIELD_HEADER: HeaderParameter("Field, hyphen spelling", is_str, required=True),
        COMMAND_ID_HEADER: HeaderParameter("The message's command_id", is_str, required=True),
        ISSUED_AT_HEADER: HeaderParameter("Sealed at, Unix seconds", _is_seconds, required=True),
    },
    algorithms=[ALGORITHM, ENCRYPTION],
)


@dataclass(frozen=True)
class Binding:
    """Where a sealed value may be opened: one field of one command."""

    command: str
    field: str
    command_id: str

    @classmethod
    def of(cls, *, command: str, field: str, command_id: str) -> Binding:
        # `new_password` and `new-password` are one field; the header names it one way.
        return cls(command=command, field=field.replace("_", "-"), command_id=command_id)


def public_sealing_key(jwk_json: str, *, variable: str) -> ECKey:
    """The worker's public key, from its JWK JSON; a ValueError naming `variable` otherwise."""
    problem = (
        f"{variable} must be a public EC P-256 JWK with a kid (account-reset sealing-keys public)"
    )
    try:
        data = json.loads(jwk_json)
    except ValueError:
        raise ValueError(problem) from None
    if not isinstance(data, dict):
        raise ValueError(problem)
    if "d" in data:
        # A producer that holds the private key could open every producer's secrets.
        raise ValueError(f"{variable} holds a private key: give producers the public key only")
    key = _ec_key(data, problem=problem)
    if key.is_private:
        raise ValueError(problem)
    return key


def _ec_key(data: dict[str, Any], *, problem: str) -> ECKey:
    if data.get("kty") != "EC" or data.get("crv") != CURVE or not isinstance(data.get("kid"), str):
        raise ValueError(problem)
    try:
        return ECKey.import_key(data)
    except (JoseError, ValueError, TypeError):
        raise ValueError(problem) from None


def seal(text: str, *, key: ECKey, binding: Binding, issued_at: int | None = None) -> str:
    """A compact JWE of `text`, to `key`, bound to `binding`, stamped now (or at `issued_at`)."""
    header = {
        "alg": ALGORITHM,
        "enc": ENCRYPTION,
        "kid": key.kid,
        COMMAND_HEADER: binding.command,
        FIELD_HEADER: binding.field,
        COMMAND_ID_HEADER: binding.command_id,
        ISSUED_AT_HEADER: int(time.time()) if issued_at is None else issued_at,
    }
    return jwe.encrypt_compact(header, text.encode(), key, registry=REGISTRY)


# Legacy (goes in 0.3.0): Fernet, the format before the JWE above. The same keys, in one
# variable (PAYLOAD_KEY), seal a producer's secret fields and the worker's dead letters.


def fernet_keys(keys: str) -> list[str]:
    """The keys of a comma-separated list, newest first, blanks left out."""
    return [key.strip() for key in keys.split(",") if key.strip()]


def multi_fernet(keys: Sequence[str]) -> MultiFernet:
    """Fernet with the first key sealing and any opening, so keys can be rotated; a ValueError
    (never quoting a key) unless each is a Fernet key."""
    if not keys:
        raise ValueError("no key")
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except (ValueError, TypeError):
        # Fernet's message is generic, but keep the key's text out of any traceback.
        raise ValueError("not a Fernet key") from None
