"""The worker's sealing keys: private EC P-256 JWKs that open what producers sealed (JWE).

`ACCOUNT_RESET_SEALING_KEYS` is a JWK Set, newest key first. Producers seal to the newest key's
public half (`account-reset sealing-keys public`); any key in the set opens, so a key is
rotated by adding a new one first and dropping the old once nothing sealed to it can remain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from client.sealing import CURVE, REGISTRY
from worker.security.sealing import SealError

KEYS_PROBLEM = (
    "ACCOUNT_RESET_SEALING_KEYS must be a JWK Set of private EC P-256 keys, each with its own kid"
    " (account-reset sealing-keys new)"
)


@dataclass(frozen=True)
class OpenedToken:
    text: str
    header: dict[str, Any]


@dataclass(frozen=True)
class SealingKeys:
    keys: tuple[ECKey, ...]

    @classmethod
    def from_json(cls, jwk_set_json: str) -> SealingKeys:
        """The set from its JSON; a ValueError naming ACCOUNT_RESET_SEALING_KEYS otherwise (its
        text never quoted: it holds private keys)."""
        try:
            data = json.loads(jwk_set_json)
        except ValueError:
            raise ValueError(KEYS_PROBLEM) from None
        entries = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(entries, list) or not entries:
            raise ValueError(KEYS_PROBLEM)
        keys = tuple(_private_key(entry) for entry in entries)
        if len({key.kid for key in keys}) != len(keys):
            raise ValueError(KEYS_PROBLEM)
        return cls(keys)

    @classmethod
    def generated(cls, *, keeping: SealingKeys | None = None) -> SealingKeys:
        """A new key, first (newest), followed by the keys of `keeping`."""
        new = ECKey.generate_key(CURVE, private=True, auto_kid=True)
        return cls((new, *(keeping.keys if keeping else ())))

    @property
    def newest(self) -> ECKey:
        return self.keys[0]

    def public_jwk(self) -> dict[str, Any]:
        """What producers hold: the newest key's public half."""
        return dict(self.newest.as_dict(private=False))

    def private_jwk_set(self) -> dict[str, Any]:
        return {"keys": [key.as_dict(private=True) for key in self.keys]}

    def open(self, token: str) -> OpenedToken:
        """The text and the (authenticated) protected header of a token one of the keys opens;
        SealError for one that no key opens (altered, another key, not a JWE, a header it may
        not have)."""
        try:
            opened = jwe.decrypt_compact(token, self._key_named, registry=REGISTRY)
            text = (opened.plaintext or b"").decode()
        except (JoseError, ValueError, TypeError, KeyError):
            # Every way a token can fail, and no word of it: the message could quote the token.
            raise SealError(
                "a sealed value does not open with ACCOUNT_RESET_SEALING_KEYS"
            ) from None
        return OpenedToken(text=text, header=dict(opened.protected))

    def _key_named(self, token: Any) -> ECKey:
        kid = token.headers().get("kid")
        for key in self.keys:
            if key.kid == kid:
                return key
        raise KeyError("no sealing key has this kid")


def _private_key(entry: Any) -> ECKey:
    if not isinstance(entry, dict) or entry.get("kty") != "EC" or entry.get("crv") != CURVE:
        raise ValueError(KEYS_PROBLEM)
    if not isinstance(entry.get("kid"), str) or not entry["kid"] or "d" not in entry:
        raise ValueError(KEYS_PROBLEM)
    try:
        key = ECKey.import_key(entry)
    except (JoseError, ValueError, TypeError):
        raise ValueError(KEYS_PROBLEM) from None
    if not key.is_private:
        raise ValueError(KEYS_PROBLEM)
    return key
