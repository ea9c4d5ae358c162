"""The Celery app and its configuration, read lazily from settings."""

from __future__ import annotations

import gc
import importlib
import logging
import os
from typing import Any

from celery import Celery
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)
from celery.utils.imports import qualname
from kombu.utils.objects import cached_property

from client.redis_clients import broker_connection
from client.signing import enable_signing
from worker import bootstrap, keys
from worker.bootstrap import broker_url, events_url, warn_of_weak_settings
from worker.broker.consumer import DeadLetteringConsumer
from worker.broker.redaction import RefusedMessageFilter, RestoreFailureFilter
from worker.broker.signing import register_checked_serializer, worker_signing_config
from worker.broker.transport import SentinelTransport, Transport
from worker.ops.health_notes import forget_this_node, note_as_node, remove_exited_nodes_notes
from worker.ops.metrics import prepare_multiprocess_dir
from worker.security.eviction import refuse_an_evicting_redis
from worker.settings import Settings, cpu_list
from worker.steps.drain import DrainOnShutdown
from worker.steps.liveness import HealthNotes
from worker.steps.metrics_server import MetricsStep
from worker.steps.relay import OutboxRelayStep


def celery_config(settings: Settings) -> dict[str, Any]:
    # The worker's transport (BLMOVE, entry checks), on Sentinel's master for a sentinel:// URL;
    # a rediss:// URL encrypts and verifies (client/redis_clients.py).
    broker = broker_connection(broker_url(settings), settings.redis_options)
    transport = SentinelTransport if broker.sentinel else Transport
    return {
        "broker_url": broker.url,
        # Settings are names (`celery inspect conf` sends them as JSON): the imports' names.
        "broker_transport": f"{transport.__module__}:{transport.__qualname__}",
        "broker_transport_options": {**transport_options(settings), **broker.transport_options},
        "broker_use_ssl": broker.ssl or False,
        "broker_connection_retry_on_startup": True,
        "task_default_queue": settings.consumed_queue,
        "task_create_missing_queues": True,
        # JSON over message protocol 2; pickle is never accepted.
        "task_protocol": 2,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # Outcomes go to the events stream, not to a result backend.
        "task_ignore_result": True,
        # Acknowledge after the outcome is committed and published; a lost worker's commands
        # are redelivered once the visibility timeout passes.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_prefetch_multiplier": settings.prefetch_multiplier,
        "worker_concurrency": settings.worker_concurrency,
        "worker_soft_shutdown_timeout": settings.soft_shutdown_timeout_s,
        "worker_enable_soft_shutdown_on_idle": True,
        "worker_send_task_events": settings.task_events,
        "task_send_sent_event": settings.task_events,
        "worker_hijack_root_logger": False,
        "worker_consumer": qualname(DeadLetteringConsumer),
        # Signing set: Celery's auth serializer replaces JSON for sending and accepting.
        **worker_signing_config(settings),
    }


def transport_options(settings: Settings) -> dict[str, Any]:
    """Kombu's Redis transport: when an unacknowledged message is taken back, and how often.

    A message delivered and not acknowledged within the visibility timeout (its worker was
    killed), or taken and never recorded, is put back on the queue at the next sweep; kombu's
    default sweeps only every 100 s, so every restore interval is a real sweep here.
    """
    return {
        "visibility_timeout": settings.visibility_timeout_s,
        "unacked_restore_interval": settings.restore_interval_s,
        "unacked_restore_throttle": 1,
        # A sweeper killed while holding the sweep lock blocks sweeps until it expires.
        "unacked_mutex_expire": settings.visibility_timeout_s,
        # One key per queue (no priority sub-queues), so the worker can take a message with
        # BLMOVE into the queue's reserved list (worker/broker/transport.py).
        "priority_steps": [0],
        # The queue's own bookkeeping keys, next to it (worker/keys.py).
        "unacked_key": keys.unacked(settings.consumed_queue),
        "unacked_index_key": keys.unacked_index(settings.consumed_queue),
        "unacked_mutex_key": keys.unacked_mutex(settings.consumed_queue),
        # The whole raw entry is capped before it is parsed (worker/broker/transport.py).
        "max_entry_bytes": settings.max_entry_bytes,
    }


# Loggers whose DEBUG lines quote a task's real arguments (the pool's "Apply" line).
ARGUMENT_QUOTING_LOGGERS = ("celery.pool",)
# Each JSON log line: these, the message, and a line's own fields (command, command_id, ...).
JSON_LOG_FIELDS = "%(asctime)s %(levelname)s %(name)s %(processName)s %(message)s"
# The logger that reports refused messages with their whole body.
CONSUMER_LOGGER = "celery.worker.consumer.consumer"
# The logger that reports a message it could not restore, with its whole body.
RESTORE_LOGGER = "kombu.transport.redis"


@worker_init.connect
def _warn_of_weak_settings(**_kwargs: Any) -> None:
    warn_of_weak_settings(bootstrap.settings())


@worker_init.connect
def _refuse_a_redis_that_could_evict_the_counts(**_kwargs: Any) -> None:
    # In the main process, before the pool forks: a refusal ends the worker with one line.
    settings = bootstrap.settings()
    refuse_an_evicting_redis(events_url(settings), settings.redis_options)


@worker_init.connect
def _metrics_files_shared_by_the_pool(**_kwargs: Any) -> None:
    # Before the pool forks and before prometheus-client is imported (worker/ops/metrics.py).
    if bootstrap.settings().metrics_port is not None:
        prepare_multiprocess_dir()


@worker_init.connect
def _health_notes_of_this_node(sender: Any, **_kwargs: Any) -> None:
    # Before the pool forks, so its processes note faults under this node's name too; the notes
    # of a killed worker of this machine are let go (the probe would report it forever).
    health_file = bootstrap.settings().health_file
    remove_exited_nodes_notes(health_file)
    note_as_node(health_file, sender.hostname)


@worker_process_init.connect
def _pool_process_niceness(**_kwargs: Any) -> None:
    # Each pool process, once forked: bcrypt yields the CPU to a sessions node's revocations,
    # and keeps to its cores.
    settings = bootstrap.settings()
    if settings.pool_nice:
        os.nice(settings.pool_nice)
    if settings.pool_cpus:
        os.sched_setaffinity(0, cpu_list(settings.pool_cpus) & os.sched_getaffinity(0))


@worker_init.connect
def _share_with_the_pool(**_kwargs: Any) -> None:
    # Last before the pool forks: the modules a pool process needs are loaded once, here, and
    # shared with every pool process (its runtime's, and prometheus-client, which its first
    # report loads; the step above has chosen its storage); gc.freeze keeps the collector from
    # writing to (so copying) the pages of every object made so far.
    bootstrap.runtime()
    importlib.import_module("prometheus_client")
    gc.freeze()


@worker_shutdown.connect
def _no_health_notes_once_stopped(**_kwargs: Any) -> None:
    # The probe says unhealthy as soon as the worker has stopped, not HEALTH_MAX_AGE_S later.
    forget_this_node()


@worker_process_shutdown.connect
def _mark_what_was_published(**_kwargs: Any) -> None:
    # A pool process ending: the outcomes it published and has not yet marked (the relay would
    # publish them once more).
    bootstrap.mark_what_was_published()


@after_setup_logger.connect
def _keep_payloads_out_of_logs(**_kwargs: Any) -> None:
    for name in ARGUMENT_QUOTING_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    logging.getLogger(CONSUMER_LOGGER).addFilter(RefusedMessageFilter())
    logging.getLogger(RESTORE_LOGGER).addFilter(RestoreFailureFilter())


@after_setup_logger.connect
@after_setup_task_logger.connect
def _json_lines_when_asked(logger: logging.Logger, **_kwargs: Any) -> None:
    if bootstrap.settings().log_format != "json":
        return
    from pythonjsonlogger.json import JsonFormatter

    formatter = JsonFormatter(JSON_LOG_FIELDS, rename_fields={"levelname": "level"})
    for handler in logger.handlers:
        handler.setFormatter(formatter)


class AccountResetApp(Celery):
    """Celery, whose `celery worker` takes this worker's defaults (worker/node.py), so that
    `celery -A worker worker` and `account-reset worker` start the same worker."""

    @cached_property
    def Worker(self) -> Any:  # noqa: N802  # Celery's name
        from worker.node import Worker  # the worker's program, not needed to send

        return self.subclass_with_self(Worker)


app = AccountResetApp("account-reset", include=["tasks.entrypoints"])
app.add_defaults(lambda: celery_config(bootstrap.settings()))
app.steps["worker"].add(OutboxRelayStep)
app.steps["worker"].add(MetricsStep)
app.steps["consumer"].add(DrainOnShutdown)
app.steps["consumer"].add(HealthNotes)


@app.on_after_configure.connect
def _sign_and_verify_when_set(sender: Celery, **_kwargs: Any) -> None:
    """Celery's signing set-up, in every process that loads this app (the worker's main process
    before its pool forks, and `account-reset failed retry`), before anything is sent or read."""
    settings = bootstrap.settings()
    if settings.signing_cert_store is not None:
        enable_signing(sender)
        register_checked_serializer(settings)
