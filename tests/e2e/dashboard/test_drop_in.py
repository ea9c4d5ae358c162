"""The worker beside the real dashboard: does what the worker did hold, by the dashboard's API?

The npm package `@layeredapps/dashboard` (pinned in `node/package-lock.json`) makes accounts,
sessions and reset codes through its own API, on SQLite (its default storage), PostgreSQL and
MariaDB; with a key set by the embedding application and as it ships (no key); with the
dashboard's tables made by the dashboard first or by `account-reset db upgrade` first. A real
worker then applies the commands, and the dashboard is asked: does the new password sign in, is
the old refused, are old sessions rejected (its own session check), are the codes gone, did its
`resetcodes-used` metric count, once, and is its cache entry gone.

Found before this suite (dashboard 0.0.150): on SQLite every command ended `internal-error`
(SQLAlchemy could not read `2026-11-23 17:55:51.669 +00:00`); with no key, no HASH_KEY matched
both the lookups and the password hash (the user was locked out); after `db upgrade` first,
the dashboard accepted two accounts with one username; resets were never counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import redis

from client import AccountResetClient
from client.settings import ClientSettings
from schemas import CommandOutcome, OutcomeStatus
from tests.e2e.dashboard.driver import Dashboard, DashboardError, dashboard_storage_env
from tests.support import databases
from tests.support.ids import unique
from tests.support.keys import TEST_HASH_KEY, TEST_SEALING_PUBLIC_KEY
from tests.support.workers import WorkerProcess, worker_env
from worker.db.migrate import upgrade
from worker.streams.bookkeeping import COUNTED_MARKER_PREFIX, RESET_CODES_USED

OUTCOME_DEADLINE_S = 60.0
# A date the worker wrote, read back by the dashboard, is this close to the test's clock.
CLOCK_ALLOWANCE = timedelta(seconds=120)


@dataclass(frozen=True)
class Setup:
    backend: str
    keys: str  # "keyed": the application set dashboardEncryptionKey; "unkeyed": stock
    first: str  # who made the dashboard's tables
    metrics: str = "database"  # the dashboard's STORAGE_METRICS

    @property
    def name(self) -> str:
        return f"{self.backend}-{self.keys}-{self.first}-{self.metrics}-metrics"


SETUPS = [
    Setup(backend, keys, first)
    for backend in databases.BACKENDS
    for keys in ("keyed", "unkeyed")
    for first in ("dashboard-first", "worker-first")
] + [
    Setup("sqlite", "unkeyed", "dashboard-first", metrics="redis"),
    Setup("postgresql", "keyed", "worker-first", metrics="redis"),
]


@dataclass
class Stack:
    setup: Setup
    dashboard: Dashboard
    worker: WorkerProcess
    client: AccountResetClient
    redis: redis.Redis
    appid: str
    cached_keys: set[str] = field(default_factory=set)

    def user(self) -> dict[str, str]:
        """An account made through the dashboard's sign-up, signed in once."""
        username, password = unique("user"), unique("password")
        created = self.dashboard.call("create-user", username=username, password=password)
        self.cached_keys.update((created["accountid"], created["sessionid"]))
        return {**created, "username": username, "password": password}

    def sign_in(self, username: str, password: str) -> dict[str, str]:
        return self.dashboard.call("sign-in", username=username, password=password)

    def session_valid(self, session: dict[str, str]) -> bool:
        reply = self.dashboard.call(
            "session-valid", sessionid=session["sessionid"], token=session["token"]
        )
        return bool(reply["valid"])

    def reset_code(self, accountid: str) -> str:
        code = unique("code").replace("-", "")  # the dashboard takes letters and digits only
        self.dashboard.call("create-reset-code", accountid=accountid, code=code)
        return code

    def metrics(self) -> dict[str, int]:
        return dict(self.dashboard.call("metrics", metric=RESET_CODES_USED)["values"])

    def cached(self, accountid: str) -> bool:
        return bool(self.dashboard.call("cached", key=accountid)["cached"])

    def account(self, accountid: str) -> dict[str, object]:
        """The account as the dashboard's API reads it (this caches it again)."""
        return self.dashboard.call("account", accountid=accountid)

    def outcome(self, command_id: str) -> CommandOutcome:
        return self.client.wait(command_id, timeout_s=OUTCOME_DEADLINE_S)


def _dashboard_env(
    setup: Setup, *, appid: str, database_url: str, redis_url: str
) -> dict[str, str]:
    env = {
        "APPID": appid,
        "STORAGE_CACHE": "redis",
        "STORAGE_CACHE_REDIS_URL": redis_url,
        **dashboard_storage_env(database_url),
    }
    if setup.keys == "keyed":
        env["DASHBOARD_ENCRYPTION_KEY"] = TEST_HASH_KEY
    if setup.metrics == "redis":
        env.update(STORAGE_METRICS="redis", STORAGE_METRICS_REDIS_URL=redis_url)
    return env


def _worker_env(setup: Setup, *, appid: str, database_url: str, redis_url: str) -> dict[str, str]:
    env = worker_env(redis_url=redis_url, database_url=database_url, ACCOUNT_RESET_APPID=appid)
    if setup.keys == "unkeyed":
        del env["ACCOUNT_RESET_HASH_KEY"]
        env["ACCOUNT_RESET_HASH_MODE"] = "unkeyed"
    if setup.metrics == "redis":
        env.update(
            ACCOUNT_RESET_DASHBOARD_METRICS="redis", ACCOUNT_RESET_DASHBOARD_METRICS_URL=redis_url
        )
    return env


@pytest.fixture(scope="module", params=SETUPS, ids=lambda setup: setup.name)
def stack(
    request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    setup: Setup = request.param
    appid = unique("dash").replace("-", "_")
    directory = tmp_path_factory.mktemp("dashboard")
    with databases.backend_database(setup.backend, directory) as database_url:
        urls = {"appid": appid, "database_url": database_url, "redis_url": redis_url}
        if setup.first == "worker-first":
            upgrade(database_url, appid=appid)
        dashboard = Dashboard(_dashboard_env(setup, **urls))
        if setup.first == "dashboard-first":
            upgrade(database_url, appid=appid)
        env = _worker_env(setup, **urls)
        worker = WorkerProcess(env=env, log_path=directory / "worker.log").start()
        client = AccountResetClient(
            ClientSettings(
                broker_url=redis_url,
                queue=env["ACCOUNT_RESET_QUEUE"],
                events_stream=env["ACCOUNT_RESET_EVENTS_STREAM"],
                sealing_public_key=TEST_SEALING_PUBLIC_KEY,
            )
        )
        connection = redis.Redis.from_url(redis_url)
        stack = Stack(setup, dashboard, worker, client, connection, appid)
        try:
            yield stack
        finally:
            _clean_up(stack, env)


def _clean_up(stack: Stack, env: dict[str, str]) -> None:
    stack.worker.stop()
    stack.dashboard.close()
    stack.client.close()
    markers = list(stack.redis.scan_iter(f"{COUNTED_MARKER_PREFIX}:*", count=1000))
    keys = [env["ACCOUNT_RESET_QUEUE"], env["ACCOUNT_RESET_EVENTS_STREAM"]]
    keys += [env["ACCOUNT_RESET_DEAD_LETTERS_KEY"], f"{stack.appid}/metrics"]
    stack.redis.delete(*keys, *stack.cached_keys, *markers)
    stack.redis.close()


def _recent(stamp: object) -> bool:
    assert isinstance(stamp, str), f"the dashboard read no date: {stamp!r}"
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return abs(datetime.now(UTC) - moment) < CLOCK_ALLOWANCE


def _each_plus(before: dict[str, int], after: dict[str, int], amount: int) -> bool:
    return set(before) == set(after) and all(after[k] == before[k] + amount for k in before)


def test_a_password_reset_holds_by_the_dashboards_own_checks(stack: Stack) -> None:
    user = stack.user()
    second_session = stack.sign_in(user["username"], user["password"])
    code = stack.reset_code(user["accountid"])
    stack.reset_code(user["accountid"])  # a second code, used up as well
    stack.account(user["accountid"])
    assert stack.cached(user["accountid"])
    counted_before = stack.metrics()
    new_password = unique("new-password")

    command_id = stack.client.reset_account_password(
        username=user["username"], secret_code=code, new_password=new_password
    )
    outcome = stack.outcome(command_id)

    assert (outcome.status, outcome.code) == (OutcomeStatus.SUCCESS, None)
    assert stack.sign_in(user["username"], new_password)["signedIn"]
    assert stack.sign_in(user["username"], user["password"]) == {
        "signedIn": False,
        "error": "invalid-password",
    }
    assert not stack.session_valid(user)
    assert not stack.session_valid(second_session)
    assert not stack.cached(user["accountid"])
    assert stack.dashboard.call("reset-codes-count", accountid=user["accountid"])["count"] == 0
    assert _each_plus(counted_before, stack.metrics(), 1), (counted_before, stack.metrics())
    account = stack.account(user["accountid"])
    assert account["sessionKeyNumber"] == 2
    dates = account["dates"]
    assert isinstance(dates, dict)
    for name in ("passwordLastChangedAt", "resetCodeLastUsedAt", "sessionKeyLastResetAt"):
        assert _recent(dates[name]), (name, dates[name])


def test_a_replayed_reset_counts_once_and_the_dashboards_own_reset_counts_the_same(
    stack: Stack,
) -> None:
    user = stack.user()
    code = stack.reset_code(user["accountid"])
    counted_before = stack.metrics()
    command = {"username": user["username"], "secret_code": code, "new_password": unique("pw")}
    command_id = stack.client.reset_account_password(**command)
    first = stack.outcome(command_id)
    stack.client.reset_account_password(**command, command_id=command_id)
    replayed = stack.client.wait(command_id, timeout_s=OUTCOME_DEADLINE_S)
    assert replayed.event_id == first.event_id
    # The replay's event is out: had it counted again, it would have done so before that.
    assert _each_plus(counted_before, stack.metrics(), 1)

    other = stack.user()
    other_code = stack.reset_code(other["accountid"])
    reply = stack.dashboard.call(
        "reset-account-password",
        username=other["username"], code=other_code, password=unique("pw"),
    )  # fmt: skip
    assert reply == {"ok": True}
    assert _each_plus(counted_before, stack.metrics(), 2)


def test_a_session_reset_ends_every_session_by_the_dashboards_own_check(stack: Stack) -> None:
    user = stack.user()
    second_session = stack.sign_in(user["username"], user["password"])
    stack.account(user["accountid"])

    outcome = stack.outcome(stack.client.reset_session_key(user["accountid"]))

    assert (outcome.status, outcome.code) == (OutcomeStatus.SUCCESS, None)
    assert not stack.session_valid(user)
    assert not stack.session_valid(second_session)
    assert not stack.cached(user["accountid"])
    account = stack.account(user["accountid"])
    assert account["sessionKeyNumber"] == 2
    dates = account["dates"]
    assert isinstance(dates, dict)
    assert _recent(dates["sessionKeyLastResetAt"])
    fresh = stack.sign_in(user["username"], user["password"])
    assert fresh["signedIn"]
    assert stack.session_valid(fresh)


def test_refusals_change_nothing_the_dashboard_sees(stack: Stack) -> None:
    user, other = stack.user(), stack.user()
    code = stack.reset_code(user["accountid"])
    others_code = stack.reset_code(other["accountid"])
    attempts = {
        "wrong code": {"username": user["username"], "secret_code": "wrongcode1"},
        "another account's code": {"username": user["username"], "secret_code": others_code},
        "unknown username": {"username": unique("nobody"), "secret_code": code},
    }
    codes = {}
    for name, attempt in attempts.items():
        command_id = stack.client.reset_account_password(**attempt, new_password=unique("pw"))
        codes[name] = stack.outcome(command_id).code
    assert {name: code and code.value for name, code in codes.items()} == {
        "wrong code": "invalid-reset-code",
        "another account's code": "invalid-reset-code",
        "unknown username": "invalid-username",
    }
    assert stack.sign_in(user["username"], user["password"])["signedIn"]
    assert stack.session_valid(user)
    assert stack.dashboard.call("reset-codes-count", accountid=user["accountid"])["count"] == 1


def test_the_dashboard_refuses_a_second_account_with_one_username(stack: Stack) -> None:
    """Worker-first used to make `usernameHash` without UNIQUE: the dashboard took both."""
    user = stack.user()
    with pytest.raises(DashboardError, match="duplicate-username"):
        stack.dashboard.call("create-user", username=user["username"], password=unique("pw"))


def test_the_worker_warns_when_it_starts_that_a_stock_dashboards_hashes_are_unkeyed(
    stack: Stack,
) -> None:
    warned = "ACCOUNT_RESET_HASH_MODE=unkeyed: the dashboard has no" in stack.worker.log()
    assert warned == (stack.setup.keys == "unkeyed")
