"""The worker's machinery. `celery -A worker worker` finds the Celery app here.

The app is loaded on first use, not on import: importing a part of the worker (its database
models, say) does not build Celery, and the rules in `tasks/` can import the worker's parts
while the worker's bootstrap imports the rules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

    app: Celery

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from worker.app import app as celery_app

        globals()["app"] = celery_app  # the submodule's import bound `app` to the module
        return celery_app
    raise AttributeError(name)
