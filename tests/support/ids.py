"""Ids that never collide, so tests sharing a Redis and a database never meet."""

from __future__ import annotations

import uuid


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
