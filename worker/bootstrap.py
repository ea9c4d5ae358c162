"""The one place where the worker's parts are built and wired together.

Nothing connects at import time. Each process builds its own runtime on first use, so a
prefork pool child never shares a database or Redis connection with its parent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import redis
from sqlalchemy import Engine

from worker.cache import DashboardCache
from worker.database import create_db_engine, session_factory
from worker.embedded_redis import shared_embedded_redis
from worker.events import EventStream
from worker.hashing import Hasher
from worker.processing import CommandProcessor
from worker.settings import Settings, get_settings


def broker_url(settings: Settings) -> str:
    """The configured broker, or (development only) an embedded Redis started now."""
    return settings.broker_url or shared_embedded_redis().url


def events_url(settings: Settings) -> str:
    return settings.events_url or broker_url(settings)


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: Engine
    processor: CommandProcessor
    pid: int


def build_runtime(settings: Settings) -> Runtime:
    engine = create_db_engine(settings.database_url, pool_size=settings.db_pool_size)
    cache_client = redis.Redis.from_url(settings.cache_url) if settings.cache_url else None
    processor = CommandProcessor(
        sessions=session_factory(engine),
        hasher=Hasher(
            key=settings.hash_key.get_secret_value(), bcrypt_rounds=settings.bcrypt_rounds
        ),
        events=EventStream(
            client=redis.Redis.from_url(events_url(settings)),
            stream=settings.events_stream,
            maxlen=settings.events_stream_maxlen,
        ),
        cache=DashboardCache(cache_client),
        limits=settings.limits,
        default_appid=settings.appid,
    )
    return Runtime(settings=settings, engine=engine, processor=processor, pid=os.getpid())


_runtime: Runtime | None = None


def runtime() -> Runtime:
    """This process's runtime, built on first use (and again in a forked child)."""
    global _runtime
    if _runtime is None or _runtime.pid != os.getpid():
        _runtime = build_runtime(get_settings())
    return _runtime
