"""A Celery protocol-2 message as a producer without a Celery library writes it (docs/contract.md's
wire contract): what the Node example sends, and what the tests and the benchmark push."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any


def raw_protocol2_message(
    task: str,
    kwargs: Any,
    queue: str,
    *,
    body: bytes | None = None,
    content_type: str = "application/json",
    task_id: str | None = None,
) -> str:
    """The message to LPUSH onto the queue's list. `body` replaces the encoded
    `[args, kwargs, embed]` (the tests' malformed messages)."""
    task_id = task_id or str(uuid.uuid4())
    encoded = json.dumps([[], kwargs, {}]).encode() if body is None else body
    return json.dumps(
        {
            "body": base64.b64encode(encoded).decode(),
            "content-encoding": "utf-8",
            "content-type": content_type,
            "headers": {"lang": "js", "task": task, "id": task_id, "root_id": task_id},
            "properties": {
                "correlation_id": task_id,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )


def task_id_of(message: str) -> str:
    return str(json.loads(message)["headers"]["id"])
