"""A private redis-server that speaks TLS alone, and certificates made for it.

Its plaintext port is 0 (off), so a client that reaches it at all reached it over TLS. The
certificates are made here with `cryptography`: a CA, and a server certificate it signs for
127.0.0.1 and localhost; another CA signs nothing the server holds (the wrong CA).
"""

from __future__ import annotations

import ipaddress
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Self

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.services import REDIS_SERVER, wait_until_serving
from worker.dev.processes import free_port

START_DEADLINE_S = 10.0
STOP_DEADLINE_S = 10.0
CERTIFICATE_LIFETIME = timedelta(days=1)


@dataclass(frozen=True)
class Certificates:
    ca_file: Path
    cert_file: Path
    key_file: Path
    wrong_ca_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + CERTIFICATE_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def make_certificates(directory: Path) -> Certificates:
    """A CA, a server certificate it signs for 127.0.0.1 and localhost, and a wrong CA."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = _ca("account-reset test CA")
    _, wrong_ca = _ca("account-reset test CA")  # same name, other key: only the key tells
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + CERTIFICATE_LIFETIME)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    made = Certificates(
        ca_file=directory / "ca.pem",
        cert_file=directory / "server.pem",
        key_file=directory / "server.key",
        wrong_ca_file=directory / "wrong-ca.pem",
    )
    made.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    made.wrong_ca_file.write_bytes(wrong_ca.public_bytes(serialization.Encoding.PEM))
    made.cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    made.key_file.write_bytes(_pem_key(key))
    made.key_file.chmod(0o600)
    return made


class TlsRedis:
    """redis-server on a TLS port only (`--port 0`), clients not asked for certificates."""

    def __init__(self, directory: Path, certificates: Certificates) -> None:
        self.directory = directory
        self.certificates = certificates
        self.port = free_port()
        self.log_path = directory / "redis-tls.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL as an operator would write it: no TLS options in it."""
        return f"rediss://127.0.0.1:{self.port}/0"

    def admin(self) -> redis.Redis:
        """A client that trusts the right CA (for the test's own reads and writes)."""
        return redis.Redis(
            host="127.0.0.1", port=self.port, ssl=True,
            ssl_ca_certs=str(self.certificates.ca_file), socket_connect_timeout=1.0,
        )  # fmt: skip

    def __enter__(self) -> Self:
        argv = [
            str(REDIS_SERVER),
            "--bind", "127.0.0.1",
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", str(self.certificates.cert_file),
            "--tls-key-file", str(self.certificates.key_file),
            "--tls-ca-cert-file", str(self.certificates.ca_file),
            "--tls-auth-clients", "no",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        client = self.admin()
        try:
            wait_until_serving(client, self.process, START_DEADLINE_S, self.log)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        finally:
            client.close()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=STOP_DEADLINE_S)
            self.process = None
