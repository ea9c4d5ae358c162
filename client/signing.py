"""Celery's message signing (its `auth` serializer), set up the same way by producers and worker.

Celery signs a message's body, the JSON `[args, kwargs, embed]`, with the sender's RSA key
(RSA-PSS, SHA-256) and names the certificate that verifies it. The headers, where protocol 2
keeps the task name and the task id, are not signed: a signed command therefore carries its
`command_id` in the signed kwargs, so a replay under a new task id meets the first outcome.

Celery's set-up is process-wide (kombu's serializer registry): one signing identity per process.
"""

from __future__ import annotations

from pathlib import Path

from celery import Celery
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

# The content type of Celery's auth serializer; the signed body inside it is JSON.
SIGNED_CONTENT_TYPE = "application/data"
SIGNING_DIGEST = "sha256"
# What stays decodable where no accepted content is given: the signed format (by its content
# type: the serializer is registered only after this applies) and plain JSON (kombu's default).
ALLOWED_SERIALIZERS = frozenset({SIGNED_CONTENT_TYPE, "json"})
# Celery's layout of a signed body: base64 of these five fields joined by FIELD_SEPARATOR
# (celery.security.serialization's DEFAULT_SEPARATOR), what a producer in another language writes.
SIGNED_FIELDS = ("signer", "signature", "content type", "content encoding", "body")
FIELD_SEPARATOR = b"\x00\x01"
KEY_VARIABLE = "ACCOUNT_RESET_SIGNING_KEY_FILE"
CERTIFICATE_VARIABLE = "ACCOUNT_RESET_SIGNING_CERTIFICATE_FILE"


def check_key_pair(*, key_file: Path | None, certificate_file: Path | None) -> None:
    """Raise ValueError, one line naming the variable, unless both are set, readable, RSA in
    PEM (the only kind Celery signs with), unencrypted, and the certificate is the key's."""
    if (key_file is None) != (certificate_file is None):
        raise ValueError(
            f"{KEY_VARIABLE} and {CERTIFICATE_VARIABLE} are set together or not at all"
        )
    if key_file is None or certificate_file is None:
        return
    public = load_certificate(certificate_file, variable=CERTIFICATE_VARIABLE).public_key()
    key = _private_key(key_file)
    if not isinstance(public, rsa.RSAPublicKey) or (
        key.public_key().public_numbers() != public.public_numbers()
    ):
        raise ValueError(f"{CERTIFICATE_VARIABLE} is not the certificate of {KEY_VARIABLE}'s key")


def load_certificate(path: Path, *, variable: str) -> x509.Certificate:
    """An RSA certificate in PEM; ValueError naming `variable` (and the file) otherwise."""
    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        raise ValueError(f"{variable}: {path} is not a readable PEM certificate") from None
    if not isinstance(certificate.public_key(), rsa.RSAPublicKey):
        raise ValueError(f"{variable}: {path} is not an RSA certificate (Celery signs with RSA)")
    return certificate


def _private_key(path: Path) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        # Never the library's text: the key's own bytes are what failed to parse.
        raise ValueError(
            f"{KEY_VARIABLE}: {path} is not a readable, unencrypted PEM private key"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"{KEY_VARIABLE}: {path} is not an RSA key (Celery signs with RSA)")
    return key


def sign_messages(
    app: Celery, *, key_file: Path, certificate_file: Path, cert_store: Path | None = None
) -> None:
    """Have `app` sign what it sends with the key, and accept only signed messages.

    Celery's set-up wants a store of trusted certificates even where nothing is verified (a
    producer): the producer's own certificate stands in for it.
    """
    app.conf.update(signing_config(key_file, certificate_file, cert_store or certificate_file))
    enable_signing(app)


def signing_config(key_file: Path, certificate_file: Path, cert_store: Path) -> dict[str, object]:
    """Celery's settings for the auth serializer; `enable_signing` then registers it."""
    return {
        "task_serializer": "auth",
        "accept_content": ["auth"],
        "security_key": str(key_file),
        "security_certificate": str(certificate_file),
        "security_cert_store": str(cert_store),
        "security_digest": SIGNING_DIGEST,
    }


def enable_signing(app: Celery) -> None:
    """Celery's `setup_security` on an app configured by `signing_config`."""
    app.setup_security(allowed_serializers=set(ALLOWED_SERIALIZERS), digest=SIGNING_DIGEST)
