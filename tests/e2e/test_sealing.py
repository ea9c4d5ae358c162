"""Sealed secret fields in a real worker: a dead-letter retry seals them again (the rest of
sealing: tests/unit/test_sealing.py and tests/integration/test_sealing.py)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

import redis

from tests.support.ids import unique
from tests.support.keys import (
    TEST_PAYLOAD_KEY,
)
from tests.support.probes import CLI
from tests.support.sealing import (
    NEW_PASSWORD,
    PASSWORD_RESET,
    TWO_HOURS_S,
    sealed_payload,
)
from tests.support.seeding import Seeder
from tests.support.workers import WorkerProcess
from worker.security.sealing import Sealer
from worker.streams.dead_letters import DeadLetterBox, Reason, sealed_letter

DEADLINE_S = 60.0


def test_a_dead_letter_retry_seals_its_fields_again(
    running_worker: WorkerProcess, seeder: Seeder, redis_client: redis.Redis
) -> None:
    """A dead letter keeps the command as first sent: its tokens, sealed two hours ago, would be
    sealed-value-expired. `failed retry` opens them (binding checked, age not) and seals them
    again: the reset applies. A letter whose token is bound to another command_id is not sent."""
    env = running_worker.env
    box = DeadLetterBox(
        redis_client,
        env["ACCOUNT_RESET_DEAD_LETTERS_KEY"],
        maxlen=None,
        sealer=Sealer([TEST_PAYLOAD_KEY]),
    )
    user = seeder.account()
    command_id = unique("cmd")
    kwargs = sealed_payload(
        user.username, seeder.code(user), NEW_PASSWORD, command_id=command_id, age_s=TWO_HOURS_S
    )
    misbound = {**kwargs, "command_id": unique("elsewhere")}
    # Dead-lettered a minute after it was sealed, two hours ago: young then, expired now.
    lettered_at = datetime.now(UTC) - timedelta(seconds=TWO_HOURS_S - 60)
    letters = [
        box.put(sealed_letter(
            reason=Reason.RETRIES_EXHAUSTED, detail="OperationalError", task=PASSWORD_RESET,
            task_id=payload["command_id"], kwargs=payload, sealer=box.sealer,
        ).model_copy(update={"dead_lettered_at": lettered_at}))
        for payload in (kwargs, misbound)
    ]  # fmt: skip
    try:
        retried = subprocess.run(
            [CLI, "failed", "retry", *letters], env=env, capture_output=True, text=True,
            timeout=DEADLINE_S,
        )  # fmt: skip
        outcome = running_worker.outcomes(redis_client, {command_id})[command_id]
    finally:
        for letter in letters:
            box.drop(letter)

    assert f"retried as command_id {command_id}" in retried.stdout
    assert f"{letters[1]}: not retried" in retried.stderr
    assert "sealed for another command, field or command_id" in retried.stderr
    assert retried.returncode == 1
    assert outcome.status == "success"
    account = seeder.load(user.accountid)
    assert seeder.hasher.password_matches(NEW_PASSWORD, account.password_hash or "")
