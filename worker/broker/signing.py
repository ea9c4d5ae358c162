"""Message signing on the worker: which certificates it trusts, and what a signed message must be.

With `ACCOUNT_RESET_SIGNING_*` set, the worker accepts only messages in the format of Celery's
auth serializer (client/signing.py) whose signature a certificate in the store verifies; it
signs its own retries with its key, so its certificate must be in the store too.

Celery's deserializer is kept behind a check of the layout. On its own, it opens the signed
bytes with whatever serializer the unsigned content-type field names, with `force=True`, pickle
included: anyone holding a trusted producer key (who should only enqueue commands) could run
code in the worker. And it reports a failure with the text of the offending field (an unknown
signer's bytes, a field that is not UTF-8). Here only JSON opens, and a refusal says why in
words of its own.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import kombu.serialization
from celery.exceptions import InvalidTaskError, SecurityError
from celery.security.certificate import Certificate, FSCertStore
from celery.security.key import PrivateKey
from celery.security.serialization import SecureSerializer
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kombu.exceptions import DecodeError

from client.signing import (
    FIELD_SEPARATOR,
    SIGNED_CONTENT_TYPE,
    SIGNED_FIELDS,
    SIGNING_DIGEST,
    load_certificate,
    signing_config,
)

if TYPE_CHECKING:
    from worker.settings import Settings

STORE_VARIABLE = "ACCOUNT_RESET_SIGNING_CERT_STORE"
CERTIFICATE_VARIABLE = "ACCOUNT_RESET_SIGNING_CERTIFICATE_FILE"
# The signed body's own type, inside the signed format: JSON, never what a producer names.
SIGNED_BODY_TYPE = (b"application/json", b"utf-8")


class Unverified(InvalidTaskError):
    """A message not signed by a trusted certificate; its body is never read."""


def check_store(store: Path, *, certificate_file: Path) -> None:
    """Raise ValueError, one line naming the variable, unless the store is what Celery loads
    (a directory of unexpired RSA certificates in PEM, each named once) and holds the
    worker's own certificate, which signs its retries."""
    certificates = _store_certificates(store)
    own = load_certificate(certificate_file, variable=CERTIFICATE_VARIABLE)
    if signer_id(own) not in certificates:
        raise ValueError(
            f"{STORE_VARIABLE} must hold the worker's own certificate ({CERTIFICATE_VARIABLE}):"
            " its retries are signed with its key"
        )


def _store_certificates(store: Path) -> dict[str, x509.Certificate]:
    if not store.is_dir():
        raise ValueError(f"{STORE_VARIABLE}: {store} is not a directory")
    found: dict[str, x509.Certificate] = {}
    # Celery loads every entry that `<store>/*` matches as a certificate (dotfiles excepted).
    for path in sorted(p for p in store.iterdir() if not p.name.startswith(".")):
        certificate = load_certificate(path, variable=STORE_VARIABLE)
        if certificate.not_valid_after_utc <= datetime.now(UTC):
            raise ValueError(f"{STORE_VARIABLE}: {path} has expired")
        if signer_id(certificate) in found:
            raise ValueError(f"{STORE_VARIABLE}: {path} has the issuer and serial of another one")
        found[signer_id(certificate)] = certificate
    if not found:
        raise ValueError(f"{STORE_VARIABLE}: {store} holds no certificate")
    return found


def signer_id(certificate: x509.Certificate) -> str:
    """How Celery names a certificate in a signed message (its issuer's values and serial)."""
    pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    return str(Certificate(pem).get_id())


def worker_signing_config(settings: Settings) -> dict[str, object]:
    """Celery's settings for a worker that signs and verifies; none when signing is off."""
    key_file, store = settings.signing_key_file, settings.signing_cert_store
    if store is None and key_file is None:
        return {}
    if store is None or key_file is None or settings.signing_certificate_file is None:
        raise ValueError(
            f"a worker that signs needs {STORE_VARIABLE}: it accepts only messages signed by the"
            " certificates in it"
        )
    return signing_config(key_file, settings.signing_certificate_file, store)


def register_checked_serializer(settings: Settings) -> None:
    """Celery's auth serializer, registered again with its decoder behind `checked_deserializer`.

    After `setup_security`, in every process that loads the worker's app: each path that
    decodes a body (the guard, a dead letter's command_id, a message without a task header,
    the pool) then meets the same checks.
    """
    key_file, certificate_file = settings.signing_key_file, settings.signing_certificate_file
    store = settings.signing_cert_store
    if key_file is None or certificate_file is None or store is None:
        raise ValueError(f"message signing needs {STORE_VARIABLE} and the worker's key pair")
    secure = SecureSerializer(
        PrivateKey(key_file.read_text()),
        Certificate(certificate_file.read_text()),
        FSCertStore(str(store)),
        SIGNING_DIGEST,
    )
    kombu.serialization.register(
        "auth",
        cast(Any, secure.serialize),  # the stubs say bytes; kombu takes either
        checked_deserializer(secure, frozenset(_store_certificates(store))),
        content_type=SIGNED_CONTENT_TYPE,
        content_encoding="utf-8",
    )


def checked_deserializer(secure: SecureSerializer, trusted: frozenset[str]) -> Any:
    """Celery's verification and decoding, behind the layout check; refusals in fixed words."""

    def deserialize(data: bytes | str) -> Any:
        signer = signed_layout(data)
        if signer not in trusted:
            raise Unverified(f"signed by a certificate not in {STORE_VARIABLE}")
        try:
            return secure.deserialize(data if isinstance(data, bytes) else data.encode())
        except SecurityError as exc:
            if "Expired certificate" in str(exc):
                raise Unverified("signed by a certificate that has expired") from None
            raise Unverified(
                "the signature does not match the body (altered, or another key)"
            ) from None

    return deserialize


def verified_payload(message: Any) -> Any:
    """The decoded body of a message signed by a trusted certificate; Unverified if not."""
    content_type = message.content_type
    if content_type != SIGNED_CONTENT_TYPE:
        shown = str(content_type)[:100]
        raise Unverified(f"not signed (content type {shown!r}): the worker accepts signed only")
    if not message.body:  # kombu hands back an empty body without calling the decoder
        raise Unverified("not in the signed format (empty)")
    try:
        return message.payload
    except DecodeError as exc:
        refused = exc.args[0] if exc.args else None
        if isinstance(refused, Unverified):  # kombu wraps the decoder's error in its own
            raise refused from None
        raise  # the signature held: the signed body itself does not decode


def signed_layout(data: bytes | str) -> str:
    """The signer named by a body in the auth serializer's layout, with JSON signed inside."""
    try:
        fields = base64.b64decode(data.encode() if isinstance(data, str) else data, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise Unverified("not in the signed format (not base64)") from None
    parts = fields.split(FIELD_SEPARATOR, len(SIGNED_FIELDS) - 1)
    if len(parts) != len(SIGNED_FIELDS):
        raise Unverified("not in the signed format (fields missing)")
    signer, signature, *body_type, _signed = parts
    if tuple(body_type) != SIGNED_BODY_TYPE:
        raise Unverified("not in the signed format (the signed body is not JSON)")
    try:
        base64.b64decode(signature, validate=True)
        return base64.b64decode(signer, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise Unverified("not in the signed format (signer or signature)") from None
