"""Which delivery carries an every_account run on: one sender of each next message.

An every_account reset-session-keys run is a chain: each message, once committed, sends the
next (`schemas.commands.next_chunk`). A crash between that send and the acknowledgement
redelivers the message, whose replay may send its next again: two copies of one message. Were
each copy free to send the message after it, and the two pool children took them together, the
chain would run twice to its end (a run of 5 messages gave 10 events, not 6). So each next
message has one sender, named on the broker's Redis next to the queue: the Celery task id of the
delivery that first claimed it. That delivery, however often it is redelivered or retried
(Celery keeps the task id), may send; another copy of the same message may not.

The claim moves on to "sent" once the message is out, so a replay after the send sends nothing;
only a crash between the send and that mark sends a second copy, which its claim then stops.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from worker import keys

SENT = " sent"


@dataclass(frozen=True)
class ChunkSenders:
    client: redis.Redis
    queue: str
    # Long enough to outlive any copy of the message still queued (the outcomes' retention).
    ttl_s: int

    def may_send(self, command_id: str, sender: str) -> bool:
        """Claim the sending of `command_id` for `sender`; True if it is this sender's to send
        and not yet sent."""
        key = keys.chunk_sender(self.queue, command_id)
        if self.client.set(key, sender, nx=True, ex=self.ttl_s):
            return True
        return self.client.get(key) in (sender, sender.encode())

    def sent(self, command_id: str, sender: str) -> None:
        """`sender` has sent `command_id`: a replay of it sends nothing again."""
        key = keys.chunk_sender(self.queue, command_id)
        self.client.set(key, sender + SENT, xx=True, keepttl=True)
