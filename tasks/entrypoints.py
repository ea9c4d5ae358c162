"""The Celery tasks. Each names its command's schema; its rules come from the handlers table.

Producers call them by name with keyword arguments only (see docs/contract.md).
The path of a command goes on in tasks/pipeline.py, then tasks/handlers.py.
"""

from __future__ import annotations

from typing import Any

from schemas import ResetAccountPassword, ResetSessionKey, ResetSessionKeys
from tasks.handlers import handler_for
from worker.app import app
from worker.broker.task import CommandTask


@app.task(name=ResetSessionKey.name, base=CommandTask, bind=True)
def reset_session_key(self: CommandTask, *args: Any, **payload: Any) -> str:
    return self.process(ResetSessionKey, handler_for(ResetSessionKey), args, payload)


@app.task(name=ResetAccountPassword.name, base=CommandTask, bind=True)
def reset_account_password(self: CommandTask, *args: Any, **payload: Any) -> str:
    return self.process(ResetAccountPassword, handler_for(ResetAccountPassword), args, payload)


@app.task(name=ResetSessionKeys.name, base=CommandTask, bind=True)
def reset_session_keys(self: CommandTask, *args: Any, **payload: Any) -> str:
    return self.process(ResetSessionKeys, handler_for(ResetSessionKeys), args, payload)
