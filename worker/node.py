"""The worker node `celery worker` builds for this app, with this worker's defaults.

`account-reset worker` and `celery -A worker worker` go through the same command, so the
defaults live here rather than in either command line: an option given on the command line
(or by Celery's environment) wins, one left at Celery's default takes this worker's.
"""

from __future__ import annotations

import os
from typing import Any

import click
from celery.apps.worker import Worker as CeleryWorker
from celery.utils.nodenames import host_format
from click.core import ParameterSource

from worker import bootstrap

# Gossip and mingle exchange state between nodes over broadcast; this worker needs neither,
# and they cost each node a startup round trip and a stream of broadcasts (always off, as
# Celery has no option to turn them on).
ALWAYS_OFF = ("without_gossip", "without_mingle")


def default_node_name(pid: int | None = None) -> str:
    """A name no other worker on this machine has: Celery's `celery@host` is the same for
    every worker on a host (DuplicateNodenameWarning; `celery status` shows one node)."""
    return host_format(f"account-reset-{os.getpid() if pid is None else pid}@%h")


def options_given() -> set[str] | None:
    """The options of the `celery worker` command now running that its caller chose; None
    outside a command (a worker built in code, whose arguments are all chosen)."""
    context = click.get_current_context(silent=True)
    if context is None:
        return None
    defaults = (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP, None)
    return {name for name in context.params if context.get_parameter_source(name) not in defaults}


class Worker(CeleryWorker):
    """Celery's worker program; the options nobody chose take this worker's defaults."""

    def __init__(self, app: Any = None, hostname: str | None = None, **kwargs: Any) -> None:
        given = options_given()

        def chosen(name: str) -> bool:
            return kwargs.get(name) is not None if given is None else name in given

        settings = bootstrap.settings()
        if hostname is None or not chosen("hostname"):
            hostname = default_node_name()
        if not chosen("loglevel"):
            kwargs["loglevel"] = settings.log_level
        if not kwargs.get("queues"):
            kwargs["queues"] = [settings.consumed_queue]
        kwargs.update(dict.fromkeys(ALWAYS_OFF, True))
        super().__init__(app, hostname, **kwargs)
