"""The Celery tasks. Each names its command's schema and handler; the rest is shared.

Producers call them by name with keyword arguments only (see the README's wire contract).
"""

from __future__ import annotations

from typing import Any

from schemas import ResetAccountPassword, ResetSessionKey
from tasks import handlers
from worker.app import app
from worker.broker.task import CommandTask


@app.task(name=ResetSessionKey.name, base=CommandTask, bind=True)
def reset_session_key(self: CommandTask, *args: Any, **payload: Any) -> str:
    return self.process(ResetSessionKey, handlers.reset_session_key, args, payload)


@app.task(name=ResetAccountPassword.name, base=CommandTask, bind=True)
def reset_account_password(self: CommandTask, *args: Any, **payload: Any) -> str:
    return self.process(ResetAccountPassword, handlers.reset_account_password, args, payload)
