"""Producers: the Python client, `account-reset enqueue` and `schema`, run as the real console
script against a real Redis and worker.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any, cast

import jsonschema
import pytest
import redis

from client import AccountResetClient, ClientSettings
from client.raw_message import task_id_of
from tests.support.ids import unique
from tests.support.messages import own_sessions_reset
from tests.support.probes import run_cli
from tests.support.seeding import Seeder
from tests.support.workers import WorkerProcess, clean_env

DEADLINE_S = 60.0


def client_for(worker: WorkerProcess) -> AccountResetClient:
    env = worker.env
    return AccountResetClient(
        ClientSettings(
            broker_url=env["ACCOUNT_RESET_BROKER_URL"],
            queue=env["ACCOUNT_RESET_QUEUE"],
            events_stream=env["ACCOUNT_RESET_EVENTS_STREAM"],
            sealing_public_key=env["ACCOUNT_RESET_SEALING_PUBLIC_KEY"],
        )
    )


def test_the_client_waits_for_the_event_and_a_resend_is_only_a_replay(
    running_worker: WorkerProcess, seeder: Seeder
) -> None:
    user = seeder.account()
    code = seeder.code(user)
    with client_for(running_worker) as client:
        sent = client.reset_account_password(
            username=user.username, secret_code=code, new_password="a-new-password"
        )
        first = client.wait(sent, timeout_s=DEADLINE_S)
        again = client.reset_account_password(
            username=user.username, secret_code=code, new_password="another-password",
            command_id=sent,
        )  # fmt: skip
        second = client.wait(again, timeout_s=DEADLINE_S)

    assert again == sent
    assert (first.status, second.status) == ("success", "success")
    assert second.event_id == first.event_id
    account = seeder.load(user.accountid)
    assert seeder.hasher.password_matches("a-new-password", account.password_hash or "")
    assert account.session_key_number == 2


def test_waiting_past_the_deadline_raises_timeout(redis_url: str) -> None:
    settings = ClientSettings(broker_url=redis_url, queue=unique("nobody-consumes"))
    with AccountResetClient(settings) as client:
        sent = client.reset_session_key("acct_nobody")
        with pytest.raises(TimeoutError, match=sent):
            client.wait(sent, timeout_s=0.5)
        redis.Redis.from_url(redis_url).delete(settings.queue)


def test_enqueue_reset_session_key_waits_and_summarises(
    running_worker: WorkerProcess, seeder: Seeder
) -> None:
    user = seeder.account()
    done = run_cli(
        running_worker.env, "enqueue", "reset-session-key",
        "--accountid", user.accountid, "--wait", "30",
    )  # fmt: skip
    command_id, summary = done.stdout.splitlines()
    assert summary == "outcomes: success 1"
    assert len(command_id) == 36
    assert seeder.load(user.accountid).session_key_number == 2


def test_enqueue_reset_account_password_reads_secrets_from_stdin(
    running_worker: WorkerProcess, seeder: Seeder, redis_client: redis.Redis
) -> None:
    user = seeder.account()
    code = seeder.code(user)
    password = unique("stdin-password")[:40]
    done = run_cli(
        running_worker.env, "enqueue", "reset-account-password",
        "--wait", "30", stdin=f"{user.username}\n{code}\n{password}\n",
    )  # fmt: skip
    assert done.stdout.splitlines()[-1] == "outcomes: success 1"
    account = seeder.load(user.accountid)
    assert seeder.hasher.password_matches(password, account.password_hash or "")
    assert password not in done.stdout + done.stderr
    refused = run_cli(
        running_worker.env, "enqueue", "reset-account-password",
        "--wait", "30", stdin=f"{user.username}\n{code}\n{password}\n", check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    assert refused.stdout.splitlines()[-1] == "outcomes: invalid-reset-code 1"


def test_there_is_no_option_for_a_secret_on_the_command_line(running_worker: WorkerProcess) -> None:
    for option in ("--new-password", "--password", "--secret-code", "--code"):
        refused = run_cli(
            running_worker.env, "enqueue", "reset-account-password", option, "x", check=False
        )
        assert refused.returncode == 2
        assert "No such option" in refused.stderr


def test_finding_7_the_username_is_never_an_argument(
    running_worker: WorkerProcess, redis_client: redis.Redis
) -> None:
    """Finding 7: `enqueue --username` put a username in the process list. The option is
    refused before anything is sent, saying where the username goes instead."""
    queue = running_worker.env["ACCOUNT_RESET_QUEUE"]
    before = redis_client.llen(queue)
    refused = run_cli(
        running_worker.env, "enqueue", "reset-account-password", "--username", "process-list",
        stdin="code\npassword\n", check=False,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "process list" in refused.stderr
    assert "first line of standard input" in refused.stderr
    assert redis_client.llen(queue) == before
    assert (
        "--username"
        not in run_cli(running_worker.env, "enqueue", "reset-account-password", "--help").stdout
    )


def test_two_lines_of_standard_input_are_refused_as_too_few(running_worker: WorkerProcess) -> None:
    refused = run_cli(
        running_worker.env, "enqueue", "reset-account-password",
        stdin="code\npassword\n", check=False,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "the username, the reset code and the password" in refused.stderr


def test_enqueue_from_a_file_ends_many_accounts_sessions(
    running_worker: WorkerProcess, seeder: Seeder, tmp_path: Path
) -> None:
    accounts = [seeder.account() for _ in range(40)]
    lines = [
        {
            "command": "reset-session-key",
            "accountid": a.accountid,
            "requester_accountid": a.accountid,
        }
        for a in accounts
    ] + [{"command": "reset-session-key", "accountid": "acct_no_such_account"}]
    source = tmp_path / "incident.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")

    done = run_cli(
        running_worker.env, "enqueue", "--from-file", str(source), "--wait", "60", check=False
    )

    print(f"\n{done.stdout.strip()} / {done.stderr.strip().splitlines()[-1]}")
    # Finding 7 (issue 16): none missing, so nothing but the summary on standard output.
    assert done.stdout.splitlines() == ["outcomes: invalid-accountid 1, success 40"]
    assert done.returncode == 1  # not every command succeeded
    assert "enqueued 41 commands" in done.stderr
    assert re.search(r"waiting for events .* 41/41", done.stderr)
    assert {seeder.load(a.accountid).session_key_number for a in accounts} == {2}


def test_a_wait_that_ends_first_names_every_missing_command_by_its_line(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Finding 7 (issue 16): on a timeout, `enqueue --from-file --wait` showed 10 of 301
    missing ids, no count, no line of the file, and nothing while it waited. No worker here:
    all 301 are missing, each on standard output with its line (blank lines counted) and the
    command_id it was sent under, given or new; the count on the error line; a progress bar."""
    env = clean_env(ACCOUNT_RESET_BROKER_URL=redis_url, ACCOUNT_RESET_QUEUE=unique("nobody"),
                    ACCOUNT_RESET_EVENTS_STREAM=unique("nobody") + ":events")  # fmt: skip
    lines = [{"command": "reset-session-key", "accountid": f"acct_{n}"} for n in range(301)]
    for line in lines[::2]:
        line["command_id"] = unique("given")
    text = [json.dumps(line) for line in lines]
    source = tmp_path / "incident.jsonl"
    source.write_text("\n".join([*text[:5], "", *text[5:]]) + "\n")  # line 6 is blank
    try:
        late = run_cli(env, "enqueue", "--from-file", str(source), "--wait", "0.5", check=False)
        queued = [json.loads(m) for m in redis_client.lrange(env["ACCOUNT_RESET_QUEUE"], 0, -1)]
    finally:
        redis_client.delete(env["ACCOUNT_RESET_QUEUE"])

    kwargs_sent = [json.loads(base64.b64decode(message["body"]))[1] for message in queued]
    sent_as = {kwargs["accountid"]: kwargs["command_id"] for kwargs in kwargs_sent}
    missing = [json.loads(line) for line in late.stdout.splitlines()]
    assert late.returncode == 1
    assert "no event after 0.5s for 301 of 301 commands" in late.stderr
    assert re.search(r"waiting for events .* 0/301", late.stderr)
    assert [m["line"] for m in missing] == [*range(1, 6), *range(7, 303)]
    assert [m["command_id"] for m in missing] == [sent_as[line["accountid"]] for line in lines]
    assert all(m["command_id"] == line["command_id"]
               for m, line in zip(missing, lines, strict=True) if "command_id" in line)  # fmt: skip


def test_a_bad_line_in_the_file_sends_nothing(
    running_worker: WorkerProcess, redis_client: redis.Redis, tmp_path: Path
) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text('{"command": "reset-session-key", "accountid": "a"}\nnot json\n')
    refused = run_cli(running_worker.env, "enqueue", "--from-file", str(source), check=False)
    assert refused.returncode == 1
    assert "line 2 is not JSON" in refused.stderr
    assert redis_client.llen(running_worker.env["ACCOUNT_RESET_QUEUE"]) == 0


def test_the_schema_accepts_what_the_worker_accepts_and_describes_its_events(
    running_worker: WorkerProcess, seeder: Seeder, redis_client: redis.Redis
) -> None:
    contract = json.loads(run_cli(running_worker.env, "schema").stdout)
    session = jsonschema.Draft202012Validator(contract["reset-session-key"])
    password = jsonschema.Draft202012Validator(contract["reset-account-password"])
    event = jsonschema.Draft202012Validator(contract["event"])
    sealed = {"sealed": "gAAAAAB-token"}

    session.validate({"accountid": "acct_1", "requester_accountid": "acct_1"})
    password.validate({"username": "alice1", "new-password": sealed, "secret-code": "abc"})
    for bad in ({}, {"accountid": 5}, {"accountid": "a", "command_id": ""}):
        assert not session.is_valid(bad)
    assert not password.is_valid({"username": "alice1", "new-password": {"sealed": 1}})

    user = seeder.account()
    message = own_sessions_reset(user.accountid, running_worker.env["ACCOUNT_RESET_QUEUE"])
    redis_client.lpush(running_worker.env["ACCOUNT_RESET_QUEUE"], message)
    running_worker.outcomes(redis_client, {task_id_of(message)})
    stream = running_worker.env["ACCOUNT_RESET_EVENTS_STREAM"]
    entries = cast(list[tuple[Any, dict[bytes, bytes]]], redis_client.xrange(stream))
    for _entry_id, fields in entries:  # the JSON exactly as the worker wrote it
        event.validate(json.loads(fields[b"event"]))
    print(f"\nevents validated against the schema: {len(entries)}")
    assert not event.is_valid({"command_id": "x"})
