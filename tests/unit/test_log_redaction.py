"""Log lines of libraries that quote a whole message: held to the reason, as the worker sets
them up at start (worker/app.py)."""

from __future__ import annotations

import pytest
from kombu.transport import redis as kombu_redis

from worker.app import _keep_payloads_out_of_logs

SECRET = "restore-secret-password-1"


def test_a_message_kombu_could_not_restore_is_logged_without_its_body(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """kombu's `Could not restore message: %r` quotes the payload (kwargs, a plaintext secret
    when a producer did not seal) at CRITICAL: only the fault's type remains."""
    _keep_payloads_out_of_logs()
    payload = {"body": SECRET, "headers": {"kwargsrepr": SECRET}, "properties": {}}
    with caplog.at_level("CRITICAL", logger="kombu.transport.redis"):
        try:
            raise TypeError(f"cannot push {SECRET}")
        except TypeError:
            kombu_redis.crit("Could not restore message: %r", payload, exc_info=True)

    assert "Could not restore a message (TypeError)" in caplog.text
    assert SECRET not in caplog.text
    assert all(record.exc_info is None for record in caplog.records)
