"""Celery message signing as a setting (issue 12, finding 4), against one real signing worker.

Finding 4: signing existed only as README prose, the bundled client, CLI and Node example could
not sign, and a captured signed body re-sent under a new task id applied again (Celery signs the
body only; the task id, the default command_id, is in the unsigned headers).

Keys and self-signed certificates are made here with `cryptography`: the worker's own (it signs
its retries), a trusted producer's, and a stranger's that the worker's store does not hold.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import pickle
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import celery.security.serialization as celery_signing
import kombu.serialization
import pytest
import redis
from celery import Celery
from celery.security.certificate import Certificate
from celery.security.key import PrivateKey
from celery.security.serialization import SecureSerializer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import ValidationError

from client import AccountResetClient, ClientSettings
from client.events import read_outcome, stream_outcomes
from client.raw_message import raw_protocol2_message, task_id_of
from client.signing import FIELD_SEPARATOR
from schemas import CommandOutcome
from tests.support.databases import migrated_sqlite
from tests.support.ids import unique
from tests.support.probes import CLI
from tests.support.seeding import Seeder
from tests.support.streams import Fields, follow_stream
from tests.support.workers import WorkerProcess, worker_env
from worker.broker.signing import worker_signing_config
from worker.security.hashing import Hasher
from worker.settings import Settings
from worker.streams.dead_letters import DeadLetter, DeadLetterBox, Reason

EXAMPLE = Path(__file__).parents[2] / "examples" / "node-producer"
DEADLINE_S = 60.0
LOCK_TIMEOUT_S = "0.5"


@dataclass(frozen=True)
class Identity:
    """An RSA key and its self-signed certificate, as PEM files."""

    key_file: Path
    certificate_file: Path

    @property
    def serializer(self) -> SecureSerializer:
        """Celery's own signer, outside kombu's registry (which holds one identity per process)."""
        return SecureSerializer(
            PrivateKey(self.key_file.read_text()), Certificate(self.certificate_file.read_text())
        )

    def sign(self, data: bytes) -> bytes:
        """RSA-PSS over `data`, as Celery signs (SHA-256, maximum salt length)."""
        key = serialization.load_pem_private_key(self.key_file.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        digest = hashes.SHA256()
        pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=padding.PSS.MAX_LENGTH)
        return key.sign(data, pss, digest)

    def key_lines(self) -> list[str]:
        """The private key's base64 lines: none may appear in a log."""
        return [line for line in self.key_file.read_text().splitlines() if "-----" not in line]


def make_identity(directory: Path, name: str) -> Identity:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "account-reset tests"),
        x509.NameAttribute(NameOID.COMMON_NAME, name),
    ])  # fmt: skip
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    identity = Identity(directory / f"{name}.key", directory / f"{name}.pem")
    identity.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    identity.certificate_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return identity


@dataclass(frozen=True)
class Identities:
    worker: Identity
    producer: Identity
    stranger: Identity
    store: Path

    def signing_env(self, identity: Identity) -> dict[str, str]:
        return {
            "ACCOUNT_RESET_SIGNING_KEY_FILE": str(identity.key_file),
            "ACCOUNT_RESET_SIGNING_CERTIFICATE_FILE": str(identity.certificate_file),
        }


@pytest.fixture(scope="module")
def identities(tmp_path_factory: pytest.TempPathFactory) -> Identities:
    directory = tmp_path_factory.mktemp("signing")
    store = directory / "trusted"
    store.mkdir()
    worker, producer, stranger = (make_identity(directory, n) for n in ("worker", "producer", "x"))
    for trusted in (worker, producer):
        shutil.copy(trusted.certificate_file, store)
    return Identities(worker=worker, producer=producer, stranger=stranger, store=store)


@pytest.fixture(scope="module")
def signing_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    # Signing is checked at intake, before any database: one backend shows it, and SQLite's
    # whole-database lock makes the transient fault that the retry tests need.
    return migrated_sqlite(tmp_path_factory.mktemp("signing-db"))


@pytest.fixture(scope="module")
def worker(
    redis_url: str,
    signing_db: str,
    identities: Identities,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    env = worker_env(
        redis_url=redis_url,
        database_url=signing_db,
        **identities.signing_env(identities.worker),
        ACCOUNT_RESET_SIGNING_CERT_STORE=str(identities.store),
        ACCOUNT_RESET_MAX_RETRIES="1",
        ACCOUNT_RESET_RETRY_BACKOFF_MAX_S="1",
        ACCOUNT_RESET_DB_LOCK_TIMEOUT_S=LOCK_TIMEOUT_S,
    )
    process = WorkerProcess(env=env, log_path=tmp_path_factory.mktemp("w") / "worker.log").start()
    yield process
    process.stop()
    process.remove_keys(redis_url)


@pytest.fixture(scope="module")
def seeder(signing_db: str, hasher: Hasher) -> Iterator[Seeder]:
    seeder = Seeder(signing_db, hasher)
    yield seeder
    seeder.engine.dispose()


def client_settings(worker: WorkerProcess, identity: Identity, **changes: Any) -> ClientSettings:
    return ClientSettings(
        broker_url=worker.env["ACCOUNT_RESET_BROKER_URL"],
        queue=worker.env["ACCOUNT_RESET_QUEUE"],
        events_stream=worker.env["ACCOUNT_RESET_EVENTS_STREAM"],
        payload_key=None,
        signing_key_file=identity.key_file,
        signing_certificate_file=identity.certificate_file,
        **changes,
    )


@pytest.fixture(scope="module")
def client(worker: WorkerProcess, identities: Identities) -> Iterator[AccountResetClient]:
    """The Python client, signing as the trusted producer; kombu's registry restored after."""
    with AccountResetClient(client_settings(worker, identities.producer)) as signing:
        yield signing
    kombu.serialization.unregister("auth")
    vars(kombu.serialization)["registry"]._set_default_serializer("json")


def letters(client: redis.Redis, worker: WorkerProcess) -> DeadLetterBox:
    return DeadLetterBox(
        client, worker.env["ACCOUNT_RESET_DEAD_LETTERS_KEY"], maxlen=None, sealer=None
    )


def letter_for(box: DeadLetterBox, task_id: str) -> DeadLetter:
    [letter] = [letter for letter in box.all() if letter.task_id == task_id]
    return letter


def send_good_command(client: AccountResetClient, worker: WorkerProcess, seeder: Seeder) -> str:
    """A signed revocation, applied: everything queued before it has been taken."""
    account = seeder.account()
    command_id = client.reset_session_key(account.accountid)
    assert client.wait(command_id, timeout_s=DEADLINE_S).status == "success"
    assert seeder.load(account.accountid).session_key_number == 2
    assert worker.process is not None
    assert worker.process.poll() is None
    return command_id


def assert_log_holds_none_of(worker: WorkerProcess, identities: Identities, *secrets: str) -> None:
    log = worker.log()
    for identity in (identities.worker, identities.producer, identities.stranger):
        for line in identity.key_lines():
            assert line not in log
    for secret in secrets:
        assert secret not in log


def signed_entry(
    identity: Identity, kwargs: dict[str, Any], queue: str, *, task_id: str | None = None
) -> str:
    """A queue entry for reset-session-key, its body signed by `identity` with Celery's code."""
    packed: str | bytes = identity.serializer.serialize([[], kwargs, {}])
    return raw_protocol2_message(
        "reset-session-key",
        None,
        queue,
        body=packed if isinstance(packed, bytes) else packed.encode(),
        content_type="application/data",
        task_id=task_id,
    )


def under_a_new_task_id(entry: str) -> tuple[str, str]:
    """The same entry, body untouched, with new task id and delivery tag (the unsigned parts)."""
    message = json.loads(entry)
    task_id = str(uuid.uuid4())
    message["headers"].update(id=task_id, root_id=task_id)
    message["properties"].update(correlation_id=task_id, delivery_tag=str(uuid.uuid4()))
    return json.dumps(message), task_id


def with_signed_body(entry: str, change: Any) -> str:
    """`entry` with its signed fields (signer, signature, type, encoding, body) changed."""
    message = json.loads(entry)
    packed = base64.b64decode(base64.b64decode(message["body"]))
    fields = change(packed.split(FIELD_SEPARATOR, 4))
    repacked = base64.b64encode(FIELD_SEPARATOR.join(fields))
    message["body"] = base64.b64encode(repacked).decode()
    return json.dumps(message)


def test_signing_settings_are_set_together_and_checked(identities: Identities) -> None:
    """Each misconfiguration is refused in one line naming the variable, never with key text."""
    worker, producer = identities.worker, identities.producer
    cases: list[tuple[dict[str, Any], str]] = [
        ({"signing_key_file": worker.key_file},
         "ACCOUNT_RESET_SIGNING_KEY_FILE and ACCOUNT_RESET_SIGNING_CERTIFICATE_FILE are set"),
        ({"signing_key_file": worker.key_file,
          "signing_certificate_file": producer.certificate_file},
         "ACCOUNT_RESET_SIGNING_CERTIFICATE_FILE is not the certificate of"),
        ({"signing_key_file": worker.certificate_file,
          "signing_certificate_file": worker.certificate_file},
         "is not a readable, unencrypted PEM private key"),
        ({"signing_cert_store": identities.store},
         "ACCOUNT_RESET_SIGNING_CERT_STORE needs ACCOUNT_RESET_SIGNING_KEY_FILE"),
        ({"signing_key_file": identities.stranger.key_file,
          "signing_certificate_file": identities.stranger.certificate_file,
          "signing_cert_store": identities.store},
         "must hold the worker's own certificate"),
        ({"signing_key_file": worker.key_file, "signing_certificate_file": worker.certificate_file,
          "signing_cert_store": worker.key_file.parent / "missing"},
         "ACCOUNT_RESET_SIGNING_CERT_STORE: "),
    ]  # fmt: skip
    for fields, message in cases:
        with pytest.raises(ValidationError, match=message) as refused:
            Settings.model_validate(fields)
        for line in worker.key_lines():
            assert line not in str(refused.value)
    with pytest.raises(ValidationError, match="are set together or not at all"):
        ClientSettings(signing_certificate_file=producer.certificate_file)
    # A producer's pair is valid settings (for `account-reset enqueue`), but no worker's.
    pair = Settings(
        signing_key_file=producer.key_file, signing_certificate_file=producer.certificate_file
    )
    with pytest.raises(ValueError, match="a worker that signs needs ACCOUNT_RESET_SIGNING_CERT"):
        worker_signing_config(pair)
    assert worker_signing_config(Settings()) == {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCOUNT_RESET_")}
    started = subprocess.run(
        [CLI, "worker"], env={**env, **identities.signing_env(producer)},
        capture_output=True, text=True, timeout=DEADLINE_S,
    )  # fmt: skip
    assert started.returncode != 0
    assert started.stderr.strip() == (
        "Error: a worker that signs needs ACCOUNT_RESET_SIGNING_CERT_STORE: it accepts only"
        " messages signed by the certificates in it"
    )
    assert vars(celery_signing)["DEFAULT_SEPARATOR"] == FIELD_SEPARATOR


def test_the_python_client_signs_and_the_worker_applies_both_commands(
    worker: WorkerProcess,
    client: AccountResetClient,
    seeder: Seeder,
    identities: Identities,
) -> None:
    user = seeder.account()
    code = seeder.code(user)
    password = unique("signed-password")[:40]
    ended = client.reset_session_key(user.accountid)
    reset = client.reset_account_password(
        username=user.username, secret_code=code, new_password=password
    )
    outcomes = client.wait_all([ended, reset], timeout_s=DEADLINE_S)
    assert {outcome.status for outcome in outcomes.values()} == {"success"}
    account = seeder.load(user.accountid)
    assert account.session_key_number == 3
    assert seeder.hasher.password_matches(password, account.password_hash or "")
    assert_log_holds_none_of(worker, identities, password, code)


def test_an_unsigned_command_is_dead_lettered_unread_and_not_answered(
    worker: WorkerProcess, client: AccountResetClient, seeder: Seeder, redis_client: redis.Redis
) -> None:
    """A plain JSON command, as every producer sent before signing: refused, and no event
    answers it (an unauthenticated message must not publish under a command_id it chose)."""
    victim = seeder.account()
    queue = worker.env["ACCOUNT_RESET_QUEUE"]
    secret = unique("unsigned-secret")
    kwargs = {"accountid": victim.accountid, "requester_accountid": victim.accountid,
              "command_id": unique("cmd"), "new-password": secret}  # fmt: skip
    entry = raw_protocol2_message("reset-session-key", kwargs, queue)
    redis_client.lpush(queue, entry)
    send_good_command(client, worker, seeder)

    letter = letter_for(letters(redis_client, worker), task_id_of(entry))
    assert letter.reason == Reason.UNVERIFIED
    assert letter.detail.startswith("not signed (content type 'application/json')")
    assert (letter.has_payload, letter.fields, letter.sealed) == (False, {}, None)
    answered = {o.command_id for o in stream_outcomes(redis_client, client.settings.events_stream)}
    assert not answered & {task_id_of(entry), kwargs["command_id"]}
    assert seeder.load(victim.accountid).session_key_number == 1
    assert secret not in worker.log()


def test_the_cli_signs_and_a_strangers_certificate_is_refused(
    worker: WorkerProcess,
    client: AccountResetClient,
    seeder: Seeder,
    identities: Identities,
    redis_client: redis.Redis,
) -> None:
    """`account-reset enqueue` signs with the producer's pair; the same command signed with a
    key whose certificate is not in the worker's store is refused."""
    trusted, stranger = seeder.account(), seeder.account()
    env = {k: v for k, v in worker.env.items() if not k.startswith("ACCOUNT_RESET_SIGNING")}
    runs = {}
    for account, identity in ((trusted, identities.producer), (stranger, identities.stranger)):
        runs[account.accountid] = subprocess.run(
            [CLI, "enqueue", "reset-session-key", "--accountid", account.accountid],
            env={**env, **identities.signing_env(identity)},
            capture_output=True, text=True, check=True, timeout=DEADLINE_S,
        ).stdout.strip()  # fmt: skip
    assert client.wait(runs[trusted.accountid], timeout_s=DEADLINE_S).status == "success"
    send_good_command(client, worker, seeder)

    assert seeder.load(trusted.accountid).session_key_number == 2
    assert seeder.load(stranger.accountid).session_key_number == 1
    letter = letter_for(letters(redis_client, worker), runs[stranger.accountid])
    assert letter.reason == Reason.UNVERIFIED
    assert letter.detail == "signed by a certificate not in ACCOUNT_RESET_SIGNING_CERT_STORE"


def test_finding_4_a_captured_signed_command_resent_under_a_new_task_id_applies_once(
    worker: WorkerProcess,
    client: AccountResetClient,
    seeder: Seeder,
    identities: Identities,
    redis_client: redis.Redis,
) -> None:
    """Finding 4: a signed body captured from the queue and sent again under a new task id
    applied a second time. Now the signed kwargs carry the command_id: the replay gets the
    recorded outcome (same event_id) and the account's session key moves once, not twice. A
    signed command without a command_id is refused (invalid-payload), and so is its replay:
    without that rule, the two would move the session key twice more."""
    account = seeder.account()
    queue = worker.env["ACCOUNT_RESET_QUEUE"]
    capture = unique("account-reset-capture")
    capturing = AccountResetClient(client.settings.model_copy(update={"queue": capture}))
    try:
        command_id = capturing.reset_session_key(account.accountid)
        captured = redis_client.rpop(capture)
    finally:
        capturing.close()
        redis_client.delete(capture)
    assert isinstance(captured, bytes)
    assert json.loads(captured)["content-type"] == "application/data"

    redis_client.lpush(queue, captured)
    first = client.wait(command_id, timeout_s=DEADLINE_S)
    replay, replay_task_id = under_a_new_task_id(captured.decode())
    redis_client.lpush(queue, replay)
    both = events_for(redis_client, client.settings.events_stream, command_id, count=2)
    # Signed without a command_id (Celery's default: the task id), then replayed under another.
    unbound = signed_entry(
        identities.producer,
        {"accountid": account.accountid, "requester_accountid": account.accountid},
        queue,
    )
    unbound_replay, replay_id = under_a_new_task_id(unbound)
    redis_client.lpush(queue, unbound, unbound_replay)
    refused = client.wait_all([task_id_of(unbound), replay_id], timeout_s=DEADLINE_S)

    assert (first.status, [e.event_id for e in both]) == ("success", [first.event_id] * 2)
    assert seeder.load(account.accountid).session_key_number == 2
    assert {(o.status, o.code) for o in refused.values()} == {("failure", "invalid-payload")}
    box = letters(redis_client, worker)
    for task_id in (task_id_of(unbound), replay_id):
        letter = letter_for(box, task_id)
        assert (letter.reason, letter.detail) == (
            Reason.INVALID_MESSAGE, "a signed command must carry its command_id in its kwargs",
        )  # fmt: skip
    assert replay_task_id not in {e.command_id for e in both}


def events_for(
    client: redis.Redis, stream: str, command_id: str, *, count: int
) -> list[CommandOutcome]:
    """The first `count` events of `command_id` on the stream, waited for."""

    def ours(entries: list[Fields]) -> list[CommandOutcome]:
        found = [read_outcome(fields) for fields in entries]
        return [outcome for outcome in found if outcome.command_id == command_id]

    entries = follow_stream(client, stream, lambda e: len(ours(e)) >= count, DEADLINE_S)
    return ours(entries)[:count]


def test_a_tampered_signed_body_is_refused(
    worker: WorkerProcess,
    client: AccountResetClient,
    seeder: Seeder,
    identities: Identities,
    redis_client: redis.Redis,
) -> None:
    """A captured signed revocation of one account, its signed body changed to name another."""
    signed_for, victim = seeder.account(), seeder.account()
    queue = worker.env["ACCOUNT_RESET_QUEUE"]
    kwargs = {"accountid": signed_for.accountid, "requester_accountid": signed_for.accountid,
              "command_id": unique("cmd")}  # fmt: skip
    original = signed_entry(identities.producer, kwargs, queue)

    def renamed(fields: list[bytes]) -> list[bytes]:
        swapped = fields[4].replace(signed_for.accountid.encode(), victim.accountid.encode())
        return [*fields[:4], swapped]

    tampered = with_signed_body(original, renamed)
    redis_client.lpush(queue, tampered)
    send_good_command(client, worker, seeder)

    assert seeder.load(victim.accountid).session_key_number == 1
    letter = letter_for(letters(redis_client, worker), task_id_of(tampered))
    assert letter.reason == Reason.UNVERIFIED
    assert letter.detail == "the signature does not match the body (altered, or another key)"
    assert letter.fields == {}


SECRET_MARK = "hostile-secret-"


def _pickle_that_runs(marker: Path) -> bytes:
    # Unpickling calls os.mkdir(marker): the directory exists only if pickle ever opened it.
    class Runs:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (os.mkdir, (str(marker),))

    return pickle.dumps(Runs())


@st.composite
def hostile_signed_bodies(draw: Any, identities: Identities, marker: Path) -> tuple[bytes, str]:
    """A body in (or near) Celery's signed format, and the envelope content type it goes with."""
    secret = SECRET_MARK + draw(st.text("abcdef0123456789", min_size=8, max_size=8))
    kwargs = {"accountid": secret, "requester_accountid": secret, "command_id": secret,
              "new-password": secret}  # fmt: skip
    signer = draw(st.sampled_from([identities.producer, identities.stranger, identities.worker]))
    good = base64.b64decode(signer.serializer.serialize([[], kwargs, {}]))
    fields = good.split(FIELD_SEPARATOR, 4)
    junk = st.binary(max_size=64).map(lambda b: b + secret.encode() + b"\xff\xfe")
    kind = draw(st.sampled_from([
        "random", "field", "fewer-fields", "signer-text", "pickle", "empty", "stranger",
    ]))  # fmt: skip
    if kind == "random":
        return draw(st.one_of(junk, junk.map(base64.b64encode))), "application/data"
    if kind == "field":
        index = draw(st.integers(0, 4))
        fields[index] = draw(st.one_of(junk, junk.map(base64.b64encode)))
    elif kind == "fewer-fields":
        fields = [FIELD_SEPARATOR.join(fields[:2]) + b"\xff" + secret.encode(), *fields[2:]]
    elif kind == "signer-text":
        fields[0] = base64.b64encode(secret.encode() + b"\xff")
    elif kind == "pickle":
        # Signed by a trusted key, but the (unsigned) content type says pickle: Celery would
        # open the signed bytes with it.
        body = _pickle_that_runs(marker)
        signature = base64.b64encode(identities.producer.sign(body))
        fields = [fields[0], signature, b"application/x-python-serialize", b"binary", body]
    elif kind == "empty":
        return b"", draw(st.sampled_from(["application/data", "application/text"]))
    elif kind == "stranger":
        stranger = base64.b64decode(identities.stranger.serializer.serialize([[], kwargs, {}]))
        fields = stranger.split(FIELD_SEPARATOR, 4)
        content_type = draw(st.sampled_from(["application/data", "application/json"]))
        return base64.b64encode(FIELD_SEPARATOR.join(fields)), content_type
    return base64.b64encode(FIELD_SEPARATOR.join(fields)), "application/data"


def test_hostile_signed_bodies_are_dead_lettered_unread_and_the_worker_goes_on(
    worker: WorkerProcess,
    client: AccountResetClient,
    seeder: Seeder,
    identities: Identities,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    """hypothesis writes bodies in and around the signed format (random bytes, each field
    replaced with junk holding a secret and invalid UTF-8, fields run together, a signer that
    names a secret, a pickle signed by a trusted key under a pickle content type, empty bodies,
    a stranger's signature): each is dead-lettered unverified with nothing of it kept, none is
    answered, no secret reaches the log, the pickle never runs, and a signed command after them
    is applied."""
    marker = tmp_path / "pickle-ran"
    queue = worker.env["ACCOUNT_RESET_QUEUE"]
    box = letters(redis_client, worker)

    @hypothesis_settings(
        max_examples=4, deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )  # fmt: skip
    @given(bodies=st.lists(hostile_signed_bodies(identities, marker), min_size=8, max_size=16))
    def hostile(bodies: list[tuple[bytes, str]]) -> None:
        entries = [
            raw_protocol2_message("reset-session-key", None, queue, body=body, content_type=ctype)
            for body, ctype in bodies
        ]
        redis_client.rpush(queue, *entries)
        send_good_command(client, worker, seeder)
        refused = {letter.task_id: letter for letter in box.all()}
        for entry in entries:
            letter = refused[task_id_of(entry)]
            assert (letter.reason, letter.has_payload, letter.fields) == (
                Reason.UNVERIFIED, False, {},
            )  # fmt: skip
        answered = {
            o.command_id for o in stream_outcomes(redis_client, client.settings.events_stream)
        }
        assert not answered & {task_id_of(entry) for entry in entries}

    hostile()
    assert not marker.exists()
    assert SECRET_MARK not in worker.log()
    assert SECRET_MARK not in str(redis_client.xrange(worker.env["ACCOUNT_RESET_DEAD_LETTERS_KEY"]))
    assert_log_holds_none_of(worker, identities)


def test_a_pickle_signed_by_a_trusted_key_never_opens_even_without_a_task_header(
    worker: WorkerProcess,
    client: AccountResetClient,
    seeder: Seeder,
    identities: Identities,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    """Celery opens a verified body with the serializer the unsigned content-type field names,
    pickle included (`force=True`), and decodes a message without a task header itself, before
    any check of the worker's: a producer's key would run code in the worker. Both refused."""
    marker = tmp_path / "pickle-ran"
    queue = worker.env["ACCOUNT_RESET_QUEUE"]
    body = _pickle_that_runs(marker)
    fields = [base64.b64encode(signer_of(identities.producer).encode()),
              base64.b64encode(identities.producer.sign(body)),
              b"application/x-python-serialize", b"binary", body]  # fmt: skip
    signed = base64.b64encode(FIELD_SEPARATOR.join(fields))
    with_task = raw_protocol2_message(
        "reset-session-key", None, queue, body=signed, content_type="application/data"
    )
    without_task = json.loads(with_task)
    without_task["headers"] = {"id": str(uuid.uuid4())}
    redis_client.lpush(queue, with_task, json.dumps(without_task))
    send_good_command(client, worker, seeder)

    assert not marker.exists()
    box = letters(redis_client, worker)
    for task_id in (task_id_of(with_task), without_task["headers"]["id"]):
        letter = letter_for(box, task_id)
        assert (letter.reason, letter.detail) == (
            Reason.UNVERIFIED, "not in the signed format (the signed body is not JSON)",
        )  # fmt: skip


def test_unsigned_remote_control_is_refused(
    worker: WorkerProcess, client: AccountResetClient, seeder: Seeder, redis_client: redis.Redis
) -> None:
    """`celery inspect` without signing (say, Flower without the worker's settings): no reply,
    a dead letter, and the worker goes on."""
    send_good_command(client, worker, seeder)  # the worker is up and listening
    box = letters(redis_client, worker)
    before = len(box.all())
    unsigned = Celery(broker=worker.env["ACCOUNT_RESET_BROKER_URL"], set_as_current=False)
    try:
        replies = unsigned.control.inspect(timeout=1, destination=[worker.nodename]).ping()
    finally:
        unsigned.close()
    send_good_command(client, worker, seeder)

    assert not replies
    # (Other test sessions on this Redis may broadcast to every worker too: at least ours.)
    refused = [(x.reason, x.task, x.detail) for x in box.all()[before:]]
    assert (Reason.UNVERIFIED, None, "not signed (content type 'application/json')") in refused


def signer_of(identity: Identity) -> str:
    return str(Certificate(identity.certificate_file.read_text()).get_id())


def locked(database_url: str) -> sqlite3.Connection:
    """A connection holding SQLite's write lock: the worker's writes wait, then fail (a
    transient fault) after its lock timeout."""
    connection = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    return connection


def test_the_workers_own_retry_is_signed_and_verified(
    worker: WorkerProcess, client: AccountResetClient, seeder: Seeder, signing_db: str
) -> None:
    """The database is locked: the command fails with a transient fault and Celery re-sends it
    (a new message the worker signs with its own key); once the lock is gone, the retry is
    verified and applied."""
    account = seeder.account()
    retried_before = worker.log().count(": transient fault OperationalError, retrying")
    lock = locked(signing_db)
    try:
        command_id = client.reset_session_key(account.accountid)
        worker.wait_for_log(r"transient fault OperationalError, retrying", count=retried_before + 1)
    finally:
        lock.rollback() if lock.in_transaction else None
        lock.close()
    assert client.wait(command_id, timeout_s=DEADLINE_S).status == "success"
    assert seeder.load(account.accountid).session_key_number == 2


def test_failed_retry_signs_the_command_it_sends_again(
    worker: WorkerProcess,
    client: AccountResetClient,
    seeder: Seeder,
    signing_db: str,
    redis_client: redis.Redis,
) -> None:
    """Locked through the retry: internal-error and a dead letter. Then `account-reset failed
    retry`, with the worker's settings, sends it again signed with the worker's key: applied."""
    account = seeder.account()
    lock = locked(signing_db)
    try:
        command_id = client.reset_session_key(account.accountid)
        failed = client.wait(command_id, timeout_s=DEADLINE_S)
    finally:
        lock.rollback() if lock.in_transaction else None
        lock.close()
    assert (failed.status, failed.code) == ("failure", "internal-error")
    [letter] = [x for x in letters(redis_client, worker).all() if x.command_id == command_id]
    assert letter.reason == Reason.RETRIES_EXHAUSTED

    subprocess.run(
        [CLI, "failed", "retry", letter.letter_id], env=worker.env,
        capture_output=True, text=True, check=True, timeout=DEADLINE_S,
    )  # fmt: skip
    both = events_for(redis_client, client.settings.events_stream, command_id, count=2)
    assert both[1].status == "success"
    assert seeder.load(account.accountid).session_key_number == 2


@pytest.fixture(scope="module")
def node_signing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/node-producer/signing.mjs beside a small driver that pushes with the example's
    Redis client (installed from the npm registry)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node, "node is needed to test the Node producer's signing"
    assert npm, "npm is needed to install its Redis client"
    directory = tmp_path_factory.mktemp("node-signing")
    for name in ("package.json", "signing.mjs"):
        shutil.copy(EXAMPLE / name, directory / name)
    (directory / "push.mjs").write_text(NODE_DRIVER)
    subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=directory, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return directory


# Sign kwargs (argv[2]) with the producer's pair and push a reset-session-key; print the signer.
NODE_DRIVER = """
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createClient } from "redis";
import { signedBody, signerId } from "./signing.mjs";

const kwargs = JSON.parse(process.argv[2]);
const certificate = readFileSync(process.env.ACCOUNT_RESET_SIGNING_CERTIFICATE_FILE);
const key = readFileSync(process.env.ACCOUNT_RESET_SIGNING_KEY_FILE);
const queue = process.env.ACCOUNT_RESET_QUEUE;
const id = randomUUID();
const message = JSON.stringify({
  ...signedBody(kwargs, { key, certificate }),
  headers: { lang: "js", task: "reset-session-key", id, root_id: id },
  properties: { correlation_id: id, delivery_mode: 2, priority: 0, body_encoding: "base64",
                delivery_info: { exchange: "", routing_key: queue }, delivery_tag: randomUUID() },
});
const redis = await createClient({ url: process.env.ACCOUNT_RESET_BROKER_URL }).connect();
await redis.lPush(queue, message);
await redis.quit();
console.log(JSON.stringify({ signer: signerId(certificate) }));
"""


def test_a_node_producer_signs_with_node_crypto_and_the_worker_applies_it(
    node_signing: Path,
    worker: WorkerProcess,
    client: AccountResetClient,
    seeder: Seeder,
    identities: Identities,
) -> None:
    account = seeder.account()
    command_id = unique("node-signed")
    kwargs = {"accountid": account.accountid, "requester_accountid": account.accountid,
              "command_id": command_id}  # fmt: skip
    env = {**worker.env, **identities.signing_env(identities.producer)}
    done = subprocess.run(
        ["node", "push.mjs", json.dumps(kwargs)], cwd=node_signing, env=env,
        capture_output=True, text=True, timeout=DEADLINE_S,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["signer"] == signer_of(identities.producer)
    assert client.wait(command_id, timeout_s=DEADLINE_S).status == "success"
    assert seeder.load(account.accountid).session_key_number == 2


def test_finding_13_status_signs_its_remote_control_on_a_signing_deployment(
    worker: WorkerProcess, client: AccountResetClient, seeder: Seeder, redis_client: redis.Redis
) -> None:
    """Issue 16, finding 13: `account-reset status` with the worker's settings finds the signing
    worker live: its broadcast is signed, the worker's signed answer verified against the store,
    and nothing is dead-lettered (an unsigned one is refused and dead-lettered, above)."""
    send_good_command(client, worker, seeder)  # the worker is up and listening
    box = letters(redis_client, worker)
    before = len(box.all())
    result = subprocess.run(
        [CLI, "status", "--json"], env=worker.env, capture_output=True, text=True,
        timeout=DEADLINE_S,
    )  # fmt: skip
    send_good_command(client, worker, seeder)  # anything the broadcast caused came before this

    assert result.returncode == 0, result.stderr
    nodes = json.loads(result.stdout)["workers"]["nodes"]
    assert {"name": worker.nodename, "queues": [worker.queue]} in nodes
    assert box.all()[before:] == []
