"""Raw queue messages a test pushes, as a producer on the wire would (client/raw_message.py)."""

from __future__ import annotations

from client.raw_message import raw_protocol2_message


def own_sessions_reset(accountid: str, queue: str) -> str:
    """A reset-session-key of an account by itself, as a protocol-2 message for `queue`."""
    return raw_protocol2_message(
        "reset-session-key", {"accountid": accountid, "requester_accountid": accountid}, queue
    )
