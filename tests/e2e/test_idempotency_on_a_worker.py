"""Finding 3 through a real worker process: a different request under a used command_id is
refused and ends nothing; the rules themselves: tests/integration/test_idempotency.py."""

from __future__ import annotations

import re
from typing import Any

import redis

from client.events import read_outcome
from client.raw_message import raw_protocol2_message
from schemas import CommandOutcome
from tests.support.commands import assert_names_nothing_of_the_first
from tests.support.ids import unique
from tests.support.seeding import Seeder
from tests.support.streams import follow_stream
from tests.support.workers import WorkerProcess

EVENT_DEADLINE_S = 60.0


def test_finding_3_through_a_real_worker(
    running_worker: WorkerProcess, seeder: Seeder, redis_client: redis.Redis
) -> None:
    """Alice's revocation, then Bob's under her command_id: refused; Bob's sessions go on."""
    queue = running_worker.env["ACCOUNT_RESET_QUEUE"]
    stream = running_worker.env["ACCOUNT_RESET_EVENTS_STREAM"]
    alice, bob = seeder.account(), seeder.account()
    alices_id = unique("cmd")

    def send_and_wait(accountid: str, command_id: str, count: int) -> CommandOutcome:
        kwargs = {"accountid": accountid, "requester_accountid": accountid,
                  "command_id": command_id}  # fmt: skip
        redis_client.lpush(queue, raw_protocol2_message("reset-session-key", kwargs, queue))

        def mine(entries: list[Any]) -> list[CommandOutcome]:
            return [o for o in map(read_outcome, entries) if o.command_id == command_id]

        entries = follow_stream(redis_client, stream, lambda e: len(mine(e)) >= count,
                                EVENT_DEADLINE_S)  # fmt: skip
        return mine(entries)[count - 1]

    first = send_and_wait(alice.accountid, alices_id, 1)
    bobs = send_and_wait(bob.accountid, alices_id, 2)
    resent = send_and_wait(alice.accountid, alices_id, 3)
    own = send_and_wait(bob.accountid, unique("cmd"), 1)

    assert first.status == "success"
    assert_names_nothing_of_the_first(bobs, first)
    assert resent.event_id == first.event_id
    assert own.status == "success"
    assert seeder.load(bob.accountid).session_key_number == 2  # his own command only
    assert seeder.load(alice.accountid).session_key_number == 2
    assert re.search(rf"refused command_id={alices_id} ", running_worker.log())
