"""Request fingerprints: what binds a recorded outcome to the one request it answers.

An outcome is replayed only to a request with the same fingerprint, so a `command_id` sent
with someone else's command learns nothing of the first (`command-id-conflict`). The
fingerprint is HMAC-SHA256 over a canonical JSON of the command name, the appid and every
field the command declares but `command_id`, as the message carries it, each under its
canonical spelling (`secret_code` is `secret-code`).

A sealed field counts as its token, not as the text it opens to: were it the text, anyone able
to seal (every producer holds the public key) could re-seal guesses under a recorded
command_id and learn from replay-or-conflict which guess is the reset code or the new password
there, with no attempt counted. A resend therefore sends the same tokens (the client keeps
them); a re-sealed resend is a different request. A plaintext secret counts as its text, under
the HMAC key, which keeps it from being tested offline; with no key at all (a stock dashboard
and no IDEMPOTENCY_KEY) plaintext secrets are left out rather than stored under a fast hash.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any, get_args

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import AliasChoices, BaseModel, SecretStr
from pydantic.fields import FieldInfo

from schemas.fields import APPID, COMMAND_ID

# HKDF's `info`: this key does one job, apart from every other use of the same secret.
_KEY_PURPOSE = b"account-reset-worker/request-fingerprint/v1"
# The request's own fields: never part of what identifies the request.
_NOT_FINGERPRINTED = frozenset({COMMAND_ID, APPID})


def derived_key(secret: str) -> bytes:
    """The fingerprint key derived from HASH_KEY or IDEMPOTENCY_KEY (HKDF-SHA256)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_PURPOSE)
    return hkdf.derive(secret.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True, slots=True)
class RequestFingerprints:
    # None: no key at all (a stock dashboard and no IDEMPOTENCY_KEY): secret fields left out.
    key: bytes | None = field(repr=False)

    @classmethod
    def keyed(cls, secret: str) -> RequestFingerprints:
        return cls(key=derived_key(secret))

    @property
    def covers_secrets(self) -> bool:
        return self.key is not None

    def of(
        self,
        model: type[BaseModel],
        *,
        command: str,
        appid: Any,
        fields: dict[str, Any],
        positional: int,
    ) -> str:
        """The fingerprint of one request, 64 hex digits.

        `fields` is the payload as sent (sealed fields as their tokens). `positional` counts
        positional arguments, which make any request `invalid-payload`.
        """
        canonical = {
            "command": command,
            "appid": appid,
            "fields": self._fields(model, fields),
            "positional": positional,
        }
        # ensure_ascii: lone surrogates (JSON allows them) are escaped, not unencodable.
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=repr)
        return hmac.new(self.key or b"", text.encode("ascii"), hashlib.sha256).hexdigest()

    def _fields(self, model: type[BaseModel], fields: dict[str, Any]) -> dict[str, Any]:
        canonical = {}
        for name, info in model.model_fields.items():
            if name in _NOT_FINGERPRINTED:
                continue
            spellings = _spellings(name, info)
            given = next((key for key in spellings if key in fields), None)
            if given is None:
                continue
            value = fields[given]
            if _is_secret(info) and not self.covers_secrets and not _is_sealed(value):
                continue  # a plaintext secret with no key to hide it under
            canonical[spellings[0]] = value
        return canonical


def _spellings(name: str, info: FieldInfo) -> list[str]:
    """The keys pydantic reads the field from, in its order; the first is the canonical one."""
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return [*(choice for choice in alias.choices if isinstance(choice, str)), name]
    if isinstance(alias, str):
        return [alias, name]
    return [name]


def _is_secret(info: FieldInfo) -> bool:
    """A `SecretStr` field, optional or not."""
    kinds = get_args(info.annotation) or (info.annotation,)
    return any(isinstance(kind, type) and issubclass(kind, SecretStr) for kind in kinds)


def _is_sealed(value: Any) -> bool:
    """`{"sealed": TOKEN}`: ciphertext, safe to fingerprint with or without a key."""
    return isinstance(value, dict) and value.keys() == {"sealed"}
