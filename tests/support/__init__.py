"""Helpers the tests share, one module for each kind; fixtures live in tests/conftest.py.

- `ids`: ids that never collide; `keys`: this session's hash, payload and sealing keys;
- `workers`: real worker processes and their environments; `streams`: reading a stream;
- `databases`: throwaway databases per backend, and row-lock waiters; `seeding`: accounts and
  codes the dashboard's way; `commands`: the worker's command path in the test's process;
- `services`: private PostgreSQL and Redis servers a test may stop and kill; `tls_redis`: one that
  speaks TLS alone; `celery_events`: the events Flower shows; `waiting`: the one polling helper.
"""

import pytest

# Helpers that assert explain a failure as a test module would (before they are imported).
pytest.register_assert_rewrite("tests.support.commands", "tests.support.seeding")
