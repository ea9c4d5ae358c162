"""Request fingerprints: what binds a recorded outcome to the one request it answers.

An outcome is replayed only to a request with the same fingerprint, so a `command_id` sent
with someone else's command learns nothing of the first (`command-id-conflict`). The
fingerprint is HMAC-SHA256 over a canonical JSON of the command name, the appid and every
field the command declares but `command_id`, each under its canonical spelling (`secret_code`
is `secret-code`). Secret fields count as their opened plaintext, so a resend that was sealed
again matches; the HMAC key keeps them from being tested offline, so with no key (a stock
dashboard and no IDEMPOTENCY_KEY) they are left out rather than stored under a fast hash.
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

# HKDF's `info`: this key does one job, apart from every other use of the same secret.
_KEY_PURPOSE = b"account-reset-worker/request-fingerprint/v1"
# The request's own fields: never part of what identifies the request.
_NOT_FINGERPRINTED = frozenset({"command_id", "appid"})


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
        opened: bool,
        positional: int,
    ) -> str:
        """The fingerprint of one request, 64 hex digits.

        `fields` is the payload with its sealed fields opened, or as sent when they did not
        open (`opened` False): such a request never matches one whose fields opened.
        `positional` counts positional arguments, which make any request `invalid-payload`.
        """
        canonical = {
            "command": command,
            "appid": appid,
            "fields": self._fields(model, fields),
            "opened": opened,
            "positional": positional,
        }
        # ensure_ascii: lone surrogates (JSON allows them) are escaped, not unencodable.
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=repr)
        return hmac.new(self.key or b"", text.encode("ascii"), hashlib.sha256).hexdigest()

    def _fields(self, model: type[BaseModel], fields: dict[str, Any]) -> dict[str, Any]:
        canonical = {}
        for name, info in model.model_fields.items():
            if name in _NOT_FINGERPRINTED or (_is_secret(info) and not self.covers_secrets):
                continue
            spellings = _spellings(name, info)
            given = next((key for key in spellings if key in fields), None)
            if given is not None:
                canonical[spellings[0]] = fields[given]
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
