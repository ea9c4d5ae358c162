"""The unit ring's fixtures: a command processor on an in-memory unit of work, attempt counter
and event list, with the observer that records what it reports."""

from __future__ import annotations

import pytest

from tests.support.in_memory import (
    InMemoryDatabase,
    RecordingObserver,
    UnitProcessor,
    in_memory_processor,
)
from tests.support.keys import TEST_HASH_KEY
from worker.security.hashing import Hasher


@pytest.fixture
def observer() -> RecordingObserver:
    return RecordingObserver()


@pytest.fixture
def processor(hasher: Hasher, observer: RecordingObserver) -> UnitProcessor:
    return in_memory_processor(hasher, observer, fingerprint_key=TEST_HASH_KEY)


@pytest.fixture
def db(processor: UnitProcessor) -> InMemoryDatabase:
    return processor.units.database
